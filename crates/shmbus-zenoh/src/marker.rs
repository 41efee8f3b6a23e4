//! How the bridge recognises what it wrote itself, so nothing loops.
//!
//! Two marks, one per side:
//!
//! - **On the bus**, the bridge remembers the sequence number of every message
//!   it publishes to a bus that it also forwards out ([`OwnWrites`]). The
//!   number is known when the space is claimed, before the commit that makes
//!   the message visible, so the bridge's own subscriber on that bus always
//!   finds it and skips it: a message that came in from Zenoh never goes back
//!   out through the bridge that wrote it.
//! - **On Zenoh**, every sample carries an attachment ([`Marker`]): the
//!   sending bridge's Zenoh id, which of its `--out` mappings sent it, and a
//!   counter per mapping. A bridge drops samples carrying its own id (its own
//!   subscribers also ignore same-session publications), and the counter lets
//!   a receiver count samples lost on the network.
//!
//! Together: with one bridge per host bridging bus `B` both ways on key `K`,
//! a message published on host 1 reaches `B` on every other host exactly once
//! and is never forwarded again.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// The attachment carried by every sample a bridge puts.
///
/// | offset | size | field                                           |
/// |--------|------|-------------------------------------------------|
/// | 0      | 4    | tag `SBZ1`                                      |
/// | 4      | 16   | the sending bridge's Zenoh id (little-endian)   |
/// | 20     | 4    | the `--out` mapping's index in that bridge (LE) |
/// | 24     | 8    | the sample's counter in that mapping, from 0 (LE) |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker {
    /// The sending bridge's Zenoh id.
    pub origin: [u8; 16],
    /// The `--out` mapping within the sending bridge.
    pub stream: u32,
    /// The sample's number within that mapping.
    pub counter: u64,
}

const TAG: [u8; 4] = *b"SBZ1";
/// Length of an encoded marker.
pub const MARKER_LEN: usize = 32;

impl Marker {
    /// The bytes of the attachment.
    pub fn encode(&self) -> [u8; MARKER_LEN] {
        let mut b = [0u8; MARKER_LEN];
        b[..4].copy_from_slice(&TAG);
        b[4..20].copy_from_slice(&self.origin);
        b[20..24].copy_from_slice(&self.stream.to_le_bytes());
        b[24..].copy_from_slice(&self.counter.to_le_bytes());
        b
    }

    /// Reads an attachment; `None` for anything that is not a bridge's marker
    /// (samples from other Zenoh applications are forwarded without one).
    pub fn decode(b: &[u8]) -> Option<Marker> {
        let b: &[u8; MARKER_LEN] = b.try_into().ok()?;
        if b[..4] != TAG {
            return None;
        }
        let mut origin = [0u8; 16];
        origin.copy_from_slice(&b[4..20]);
        let stream = u32::from_le_bytes(b[20..24].try_into().ok()?);
        let counter = u64::from_le_bytes(b[24..].try_into().ok()?);
        Some(Marker { origin, stream, counter })
    }
}

/// Sequence numbers of messages this bridge published to one bus, waiting to
/// be recognised (and skipped) by its own subscriber on that bus.
///
/// Publish side: [`insert`](Self::insert) the claim's sequence number before
/// committing it. Subscribe side: [`is_own`](Self::is_own) for every message,
/// in bus order. Numbers below the one asked about are forgotten then (the
/// subscriber has passed them, or lost them to overwrite), so the set holds
/// at most what the subscriber has not read yet.
#[derive(Debug, Default)]
pub struct OwnWrites {
    seqs: Mutex<BTreeSet<u64>>,
}

impl OwnWrites {
    /// Remembers that this bridge is about to commit message `seq`.
    pub fn insert(&self, seq: u64) {
        // The lock's release, then the commit's Release store of the frame
        // stamp, then the subscriber's Acquire of that stamp and its lock here:
        // a subscriber that can read message `seq` also sees this insertion.
        self.seqs.lock().unwrap_or_else(|p| p.into_inner()).insert(seq);
    }

    /// Whether message `seq` (read in bus order) was published by this bridge.
    pub fn is_own(&self, seq: u64) -> bool {
        let mut s = self.seqs.lock().unwrap_or_else(|p| p.into_inner());
        let rest = s.split_off(&seq);
        *s = rest;
        s.remove(&seq)
    }

    /// How many numbers are held (for tests).
    pub fn len(&self) -> usize {
        self.seqs.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trips_and_rejects_foreign_attachments() {
        let m = Marker { origin: [7; 16], stream: 3, counter: u64::MAX - 1 };
        assert_eq!(Marker::decode(&m.encode()), Some(m));
        assert_eq!(Marker::decode(b"hello"), None);
        let mut wrong = m.encode();
        wrong[0] = b'X';
        assert_eq!(Marker::decode(&wrong), None);
        assert_eq!(Marker::decode(&[0u8; MARKER_LEN + 1]), None);
    }

    #[test]
    fn own_writes_are_recognised_once_and_passed_ones_forgotten() {
        let w = OwnWrites::default();
        // Two writer threads may insert out of order.
        for s in [5, 3, 9] {
            w.insert(s);
        }
        assert!(!w.is_own(2));
        assert!(w.is_own(3));
        assert!(!w.is_own(3));
        assert!(!w.is_own(4));
        // 5 was skipped over (lost to overwrite, say): forgotten, not kept forever.
        assert!(!w.is_own(6));
        assert_eq!(w.len(), 1);
        assert!(w.is_own(9));
        assert!(w.is_empty());
    }
}
