//! Counters per mapping, shared by the forwarding threads and the stats line.
//!
//! Every message a bridge does not forward lands in exactly one counter, so
//! `read = forwarded + own + unmatched` on the way out and
//! `received = written + too_large` (plus `net_lost` for samples that never
//! arrived) on the way in.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one `--out BUS=KEYEXPR` mapping.
#[derive(Debug, Default)]
pub struct OutStats {
    /// Messages read from the bus.
    pub read: AtomicU64,
    /// Messages put on Zenoh while a remote subscriber matched.
    pub forwarded: AtomicU64,
    /// Messages this bridge had itself written to the bus (from Zenoh): not sent back.
    pub own: AtomicU64,
    /// Messages put while no Zenoh subscriber matched the key (nobody received them).
    pub unmatched: AtomicU64,
    /// Messages the bus overwrote before the bridge read them (overwrite mode, `Lagged`).
    pub lagged: AtomicU64,
}

/// Counters of one `--in KEYEXPR=BUS` mapping.
#[derive(Debug, Default)]
pub struct InStats {
    /// Samples received from Zenoh (other than the bridge's own).
    pub received: AtomicU64,
    /// Messages published on the bus.
    pub written: AtomicU64,
    /// Samples larger than the bus's max_message: dropped.
    pub too_large: AtomicU64,
    /// Samples missing from a sending bridge's counter: lost on the way.
    pub net_lost: AtomicU64,
    /// Samples that arrived after a later one of the same sender (should stay 0).
    pub reordered: AtomicU64,
    /// Samples carrying this bridge's own id (should stay 0: own samples are not delivered).
    pub own: AtomicU64,
    /// Bytes of samples waiting in memory for space on the bus now.
    pub queued_bytes: AtomicU64,
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Adds one to a counter.
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to a counter.
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl fmt::Display for OutStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "read={} forwarded={} own={} unmatched={} lagged={}",
            get(&self.read),
            get(&self.forwarded),
            get(&self.own),
            get(&self.unmatched),
            get(&self.lagged)
        )
    }
}

impl fmt::Display for InStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received={} written={} too_large={} net_lost={} reordered={} own={} queued_bytes={}",
            get(&self.received),
            get(&self.written),
            get(&self.too_large),
            get(&self.net_lost),
            get(&self.reordered),
            get(&self.own),
            get(&self.queued_bytes)
        )
    }
}
