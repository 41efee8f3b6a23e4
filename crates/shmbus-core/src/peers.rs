//! Peer slots: allocation, liveness and reaping of dead peers.
//!
//! A slot is alive while byte `LOCK_SLOT_BASE + slot` of the bus file is
//! write-locked by an open file description (an OFD lock). The kernel drops
//! the lock when the owning process dies, however it dies, so liveness never
//! depends on PIDs (which are reused, and which zombies still answer).
//! Whoever takes a slot's lock while its state is not free owns a dead peer's
//! slot: it first repairs what that peer left behind (a claimed but
//! uncommitted frame becomes padding) and then clears it.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::PeerKind;
use crate::error::{Error, Result};
use crate::layout::*;
use crate::os::{self, LockKind};
use crate::region::Region;
use crate::ring::{at_or_before, distance};
use crate::sync::Ordering;

impl Region {
    /// Tries to take slot `slot`'s liveness lock. Heap regions have no locks:
    /// there a slot is taken by moving its state away from free.
    pub(crate) fn try_lock_slot(&self, slot: u32) -> Result<bool> {
        match &self.file {
            Some(f) => os::ofd_try_lock(f, LOCK_SLOT_BASE + i64::from(slot), LockKind::Exclusive)
                .map_err(|e| Error::io(&self.bus, &self.path, "lock a peer slot of", e)),
            None => Ok(self.slot(slot).u32(SLOT_STATE).load(Ordering::Acquire) == STATE_FREE),
        }
    }

    pub(crate) fn unlock_slot(&self, slot: u32) {
        if let Some(f) = &self.file {
            os::ofd_unlock(f, LOCK_SLOT_BASE + i64::from(slot));
        }
    }

    /// Whether another handle holds slot `slot`'s liveness lock (display only:
    /// decisions take the lock instead, which cannot race).
    pub(crate) fn slot_locked_by_other(&self, slot: u32) -> bool {
        match &self.file {
            Some(f) => os::ofd_is_locked(f, LOCK_SLOT_BASE + i64::from(slot)).unwrap_or(true),
            None => self.slot(slot).u32(SLOT_STATE).load(Ordering::Acquire) != STATE_FREE,
        }
    }

    /// Number of slots worth scanning (1 + highest slot ever used), bounded by the table.
    #[inline]
    pub(crate) fn scan_len(&self) -> u32 {
        self.mem.u32(OFF_PEER_HIGH_WATER).load(Ordering::Acquire).min(self.info.peer_slots)
    }

    /// Takes a free (or dead) slot for a new peer of `kind`.
    pub(crate) fn alloc_slot(&self, kind: PeerKind) -> Result<u32> {
        for slot in 0..self.info.peer_slots {
            if !self.try_lock_slot(slot)? {
                continue;
            }
            let state = self.slot(slot).u32(SLOT_STATE);
            if self.file.is_none()
                && state.compare_exchange(STATE_FREE, u32::MAX, Ordering::AcqRel, Ordering::Relaxed).is_err()
            {
                continue;
            }
            // The lock is ours, so any previous owner is dead: repair, then reuse.
            self.reap_locked(slot);
            let r = Ordering::Relaxed;
            let m = &self.mem;
            self.slot(slot).u32(SLOT_PID).store(os::getpid(), r);
            self.slot(slot).u64(SLOT_GENERATION).fetch_add(1, r);
            self.slot(slot).u32(SLOT_HOLD_FLAGS).store(0, r);
            self.slot(slot).u64(SLOT_CURSOR).store(0, r);
            self.slot(slot).u64(SLOT_MESSAGES).store(0, r);
            self.slot(slot).u64(SLOT_BYTES).store(0, r);
            self.slot(slot).u64(SLOT_LOST).store(0, r);
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
            self.slot(slot).u64(SLOT_ATTACHED_NS).store(now, r);
            let st = match kind {
                PeerKind::Publisher => STATE_PUBLISHER,
                PeerKind::Subscriber => STATE_SUBSCRIBER,
            };
            // SYNC POINT with the Acquire loads of `state` in scans (`Producer::scan_limit`,
            // `inspect`): the fields above are initialised before the slot is seen as taken.
            state.store(st, Ordering::Release);
            m.u32(OFF_PEER_HIGH_WATER).fetch_max(slot + 1, Ordering::AcqRel);
            return Ok(slot);
        }
        Err(Error::PeersFull { bus: self.bus.clone(), path: self.path.clone(), slots: self.info.peer_slots })
    }

    /// Frees our own slot on detach.
    pub(crate) fn free_slot(&self, slot: u32) {
        self.slot(slot).u32(SLOT_HOLD_FLAGS).store(0, Ordering::Release);
        self.slot(slot).u32(SLOT_STATE).store(STATE_FREE, Ordering::Release);
        self.unlock_slot(slot);
    }

    /// If slot `slot` (not our own) belongs to a dead peer, repairs and frees it.
    /// Returns true when it was dead (or already free).
    pub(crate) fn try_reap(&self, slot: u32, own: u32) -> bool {
        if slot == own || self.file.is_none() {
            return false;
        }
        match self.try_lock_slot(slot) {
            Ok(true) => {
                self.reap_locked(slot);
                self.slot(slot).u32(SLOT_STATE).store(STATE_FREE, Ordering::Release);
                self.unlock_slot(slot);
                true
            }
            _ => false,
        }
    }

    /// With slot `slot`'s lock held by us: turn a dead publisher's unfinished
    /// claim into padding so readers can pass it, and drop its hold.
    fn reap_locked(&self, slot: u32) {
        let state = self.slot(slot).u32(SLOT_STATE).load(Ordering::Acquire);
        let flags = self.slot(slot).u32(SLOT_HOLD_FLAGS).load(Ordering::Acquire);
        if state == STATE_PUBLISHER && flags & HOLD_ACTIVE != 0 {
            let start = self.slot(slot).u64(SLOT_HOLD).load(Ordering::Acquire);
            let end = self.slot(slot).u64(SLOT_HOLD_END).load(Ordering::Acquire);
            self.pad_dead_claim(slot, start, end, flags & HOLD_CLAIMED != 0);
        }
        self.slot(slot).u32(SLOT_HOLD_FLAGS).store(0, Ordering::Release);
    }

    /// A dead publisher announced the claim `[start, end)`. If the claim really
    /// happened and its frames were not committed, write padding over them.
    fn pad_dead_claim(&self, dead: u32, start: u64, end: u64, claimed: bool) {
        let geo = self.geo;
        let len = distance(start, end);
        // Reject impossible values from a damaged slot: a claim is aligned and
        // spans at most the end-of-lap padding plus one frame.
        if !start.is_multiple_of(FRAME_ALIGN)
            || !end.is_multiple_of(FRAME_ALIGN)
            || len == 0
            || len > 2 * geo.max_frame_len()
        {
            return;
        }
        let tail = self.tail().0;
        // The claim happened only if the tail reached its end; and once it is a
        // full lap behind the tail nobody can read it any more.
        if !at_or_before(end, tail) || distance(start, tail) > geo.capacity {
            return;
        }
        if !claimed {
            // It may have died just before its CAS (someone else claimed `start`)
            // or just after it. A live publisher announcing the same start owns
            // it; so does a dead one that had recorded the claim.
            for other in 0..self.scan_len() {
                if other == dead {
                    continue;
                }
                if self.slot(other).u32(SLOT_STATE).load(Ordering::Acquire) != STATE_PUBLISHER {
                    continue;
                }
                let f = self.slot(other).u32(SLOT_HOLD_FLAGS).load(Ordering::Acquire);
                if f & HOLD_ACTIVE != 0 && self.slot(other).u64(SLOT_HOLD).load(Ordering::Acquire) == start {
                    return;
                }
            }
        }
        // Order matters: the scan above comes before the stamp checks below. A
        // live owner stores its stamp before it clears its hold, so if the scan
        // missed it, its stamp is visible now.
        let room = geo.room_to_lap_end(start);
        let frame_start = if room < len { start.wrapping_add(room) } else { start };
        if frame_start != start {
            self.pad_if_uncommitted(start, distance(start, frame_start), dead);
        }
        self.pad_if_uncommitted(frame_start, distance(frame_start, end), dead);
    }

    fn pad_if_uncommitted(&self, pos: u64, len: u64, slot: u32) {
        if len < FRAME_HEADER as u64 || len > self.geo.room_to_lap_end(pos) {
            return;
        }
        let stamp = self.frame(pos).stamp();
        if stamp.load(Ordering::Acquire) == pos {
            return;
        }
        self.write_padding(pos, len, slot);
    }

    /// Writes a committed padding frame of `len` bytes at `pos`.
    pub(crate) fn write_padding(&self, pos: u64, len: u64, slot: u32) {
        let f = self.frame(pos);
        f.len().store(len as u32, Ordering::Relaxed);
        f.meta().store(u32::from(FRAME_PAD) | (slot << 16), Ordering::Relaxed);
        f.seq().store(0, Ordering::Relaxed);
        // SYNC POINT with the Acquire load of the stamp in `Consumer::read_frame`.
        f.stamp().store(pos, Ordering::Release);
    }

    /// The tail: (next claim position, next message sequence number).
    #[inline]
    pub(crate) fn tail(&self) -> (u64, u64) {
        let v = self.mem.u128(OFF_TAIL).load(Ordering::Acquire);
        (v as u64, (v >> 64) as u64)
    }
}
