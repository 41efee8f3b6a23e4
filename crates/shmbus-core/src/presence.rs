//! Who else is on the bus: waiting for peers to come, and for the present
//! subscribers to read everything (so a non-persistent bus is not removed
//! with unread messages when its last publisher leaves).
//!
//! These look at the peer table of the handle's own mapping: no reopening,
//! no remapping. Waiting polls it (every 1 ms at first, backing off to
//! 10 ms): attaching and reading publish nothing a waiter could park on
//! without adding wake-ups to the hot path, and these waits are rare.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::bus::Bus;
use crate::config::PeerKind;
use crate::layout::*;
use crate::ring::at_or_before;

/// What [`Bus::linger`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Linger {
    /// Every live subscriber has read everything published before the call
    /// (or a subscriber came and went meanwhile), or the bus is persistent
    /// and keeps its messages anyway.
    Delivered,
    /// The timeout passed first.
    TimedOut,
}

/// Whether subscriber slot `s` has placed its cursor (finished attaching):
/// only then does it count as present, so a publisher that waited for it
/// does not publish before the message it starts at.
pub(crate) fn subscriber_placed(region: &crate::region::Region, s: u32) -> bool {
    // SYNC POINT with the Release fetch_or in `Consumer::place_from`.
    region.slot(s).u32(SLOT_HOLD_FLAGS).load(Ordering::Acquire) & HOLD_PLACED != 0
}

impl Bus {
    /// Live peers of `kind` other than this handle; subscribers only once
    /// they have placed their cursor (a subscriber handle that has taken its
    /// slot but not yet made its `Consumer` does not count: a message
    /// published after this count includes a subscriber reaches it).
    pub fn live_peers(&self, kind: PeerKind) -> usize {
        let want = match kind {
            PeerKind::Publisher => STATE_PUBLISHER,
            PeerKind::Subscriber => STATE_SUBSCRIBER,
        };
        let region = &self.region;
        (0..region.scan_len())
            .filter(|&s| s != self.slot)
            // SYNC POINT with the Release store of `state` in `alloc_slot`.
            .filter(|&s| region.slot(s).u32(SLOT_STATE).load(Ordering::Acquire) == want)
            .filter(|&s| want != STATE_SUBSCRIBER || subscriber_placed(region, s))
            .filter(|&s| region.slot_locked_by_other(s))
            .count()
    }

    /// Waits until at least `n` peers of `kind` other than this handle are
    /// attached and alive, at most until `deadline` (`None`: as long as it
    /// takes). Returns how many there are, or `None` on timeout.
    pub fn wait_for_peers(&self, kind: PeerKind, n: usize, deadline: Option<Instant>) -> Option<usize> {
        let mut pause = Duration::from_millis(1);
        loop {
            let live = self.live_peers(kind);
            if live >= n {
                return Some(live);
            }
            if !sleep_until(deadline, &mut pause) {
                return None;
            }
        }
    }

    /// (live subscribers other than this handle, how many of them have read
    /// everything before position `pos`).
    fn subscribers_at(&self, pos: u64) -> (usize, usize) {
        let region = &self.region;
        let (mut live, mut done) = (0, 0);
        for s in 0..region.scan_len() {
            if s == self.slot || region.slot(s).u32(SLOT_STATE).load(Ordering::Acquire) != STATE_SUBSCRIBER {
                continue;
            }
            if !region.slot_locked_by_other(s) {
                continue;
            }
            live += 1;
            if at_or_before(pos, region.slot(s).u64(SLOT_CURSOR).load(Ordering::Acquire)) {
                done += 1;
            }
        }
        (live, done)
    }

    /// Waits, at most until `deadline`, until the subscribers present have
    /// read everything published on the bus so far (or left). With none present, a
    /// non-persistent bus waits for one to come and read everything (or to
    /// come and go: it attached after the messages were sent, and `Oldest`
    /// saw them); a persistent bus returns at once, since its file keeps them.
    pub fn linger(&self, deadline: Option<Instant>) -> Linger {
        let target = self.region.tail().0;
        let epoch = || self.region.mem.u64(OFF_ATTACH_EPOCH).load(Ordering::Acquire);
        let first_epoch = epoch();
        let present_at_start = self.subscribers_at(target).0 > 0;
        let mut pause = Duration::from_millis(1);
        loop {
            let (live, done) = self.subscribers_at(target);
            if live > 0 && done == live {
                return Linger::Delivered;
            }
            // None left: those present at the start have gone (there is no
            // one to wait for), or one came and went, or the file keeps the messages.
            if live == 0 && (present_at_start || self.region.info.persistent || epoch() != first_epoch) {
                return Linger::Delivered;
            }
            if !sleep_until(deadline, &mut pause) {
                return Linger::TimedOut;
            }
        }
    }
}

/// Sleeps `pause` (doubling it up to 10 ms), never past `deadline`; false
/// when the deadline has passed.
fn sleep_until(deadline: Option<Instant>, pause: &mut Duration) -> bool {
    let now = Instant::now();
    let nap = match deadline {
        Some(d) if now >= d => return false,
        Some(d) => (*pause).min(d - now),
        None => *pause,
    };
    std::thread::sleep(nap);
    *pause = (*pause * 2).min(Duration::from_millis(10));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BusConfig, Consumer, Producer, StartAt, WaitStrategy};

    #[test]
    fn counts_and_linger_over_files() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BusConfig::default().dir(dir.path()).capacity(1 << 16);
        let mut p = Producer::new(Bus::open_or_create("b", &cfg, PeerKind::Publisher).unwrap(), WaitStrategy::Park);
        assert_eq!(p.bus().live_peers(PeerKind::Subscriber), 0);
        assert_eq!(p.bus().wait_for_peers(PeerKind::Subscriber, 1, Some(Instant::now())), None);
        let mut c =
            Consumer::new(Bus::attach("b", &cfg, PeerKind::Subscriber).unwrap(), StartAt::Latest, WaitStrategy::Park);
        assert_eq!(p.bus().live_peers(PeerKind::Subscriber), 1);
        assert_eq!(c.bus().live_peers(PeerKind::Publisher), 1);
        assert_eq!(c.bus().live_peers(PeerKind::Subscriber), 0, "a handle does not count itself");
        p.send(b"one", None).unwrap();
        assert_eq!(p.bus().linger(Some(Instant::now())), Linger::TimedOut, "unread");
        let mut buf = Vec::new();
        c.try_read(&mut buf).unwrap();
        assert_eq!(p.bus().linger(Some(Instant::now() + Duration::from_secs(10))), Linger::Delivered);
        drop(c);
        assert_eq!(p.bus().live_peers(PeerKind::Subscriber), 0);
    }
}
