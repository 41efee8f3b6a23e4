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
use crate::sync::{fence, Ordering};

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
            self.slot(slot).u64(SLOT_ABANDONED).store(0, r);
            self.slot(slot).u32(SLOT_REVOKED).store(0, r);
            self.slot(slot).u32(SLOT_PARKED).store(0, r);
            self.slot(slot).u64(SLOT_BLOCKING_SINCE).store(0, r);
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

    /// With slot `slot`'s lock held by us (its owner is dead): finish its
    /// unfinished claim as abandoned so readers can pass it, take it out of
    /// the waiter accounting, and drop its hold.
    fn reap_locked(&self, slot: u32) {
        let state = self.slot(slot).u32(SLOT_STATE).load(Ordering::Acquire);
        if state != STATE_PUBLISHER && state != STATE_SUBSCRIBER {
            self.slot(slot).u32(SLOT_HOLD_FLAGS).store(0, Ordering::Release);
            return;
        }
        if state == STATE_PUBLISHER {
            // (An abandoned claim's quarantine ends here: the dead write nothing.)
            if let Some(a) = self.announced(slot) {
                if self.claim_is_real(slot, &a) {
                    self.abandon_claim(&a, slot);
                }
            }
        }
        self.forget_parked(slot);
        let s = self.slot(slot);
        s.u32(SLOT_HOLD_FLAGS).store(0, Ordering::Release);
        s.u32(SLOT_REVOKED).store(0, Ordering::Release);
        s.u64(SLOT_BLOCKING_SINCE).store(0, Ordering::Relaxed);
        // Whoever waited on the dead peer can go on.
        self.bump_epoch();
        self.wake_everyone();
    }

    /// Takes a slot (whose owner is gone) out of the waiter accounting.
    fn forget_parked(&self, slot: u32) {
        let parked = self.slot(slot).u32(SLOT_PARKED).swap(0, Ordering::AcqRel);
        if slot < 64 {
            self.mem.u64(OFF_DATA_MASK).fetch_and(!(1 << slot), Ordering::AcqRel);
            self.mem.u64(OFF_SPACE_MASK).fetch_and(!(1 << slot), Ordering::AcqRel);
        } else {
            let dec = |off: usize| {
                let _ = self.mem.u32(off).fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1));
            };
            if parked & PARKED_DATA != 0 {
                dec(OFF_DATA_WAITERS);
            }
            if parked & PARKED_SPACE != 0 {
                dec(OFF_SPACE_WAITERS);
            }
        }
    }

    /// Bumps the attach epoch: publishers drop their cached limits and
    /// quarantine lists before their next claim (and re-check a claim they
    /// made concurrently before writing into it).
    pub(crate) fn bump_epoch(&self) {
        // SYNC POINT with the SeqCst epoch loads in `Producer::try_claim`.
        fence(Ordering::SeqCst);
        self.mem.u64(OFF_ATTACH_EPOCH).fetch_add(1, Ordering::SeqCst);
    }

    /// Wakes every parked peer, publishers and subscribers.
    pub(crate) fn wake_everyone(&self) {
        crate::wait::wake(self.mem.u32(OFF_DATA_FUTEX));
        crate::wait::wake(self.mem.u32(OFF_SPACE_FUTEX));
    }

    /// The waiter accounting says peers are parked but wake calls keep
    /// finding nobody: reap the dead among the peers marked parked (a peer
    /// killed while parked), so wake syscalls stop.
    pub(crate) fn reap_dead_parked(&self, own: u32) {
        let mask =
            self.mem.u64(OFF_DATA_MASK).load(Ordering::Relaxed) | self.mem.u64(OFF_SPACE_MASK).load(Ordering::Relaxed);
        for slot in 0..self.scan_len() {
            let marked = if slot < 64 {
                mask & (1 << slot) != 0
            } else {
                self.slot(slot).u32(SLOT_PARKED).load(Ordering::Relaxed) != 0
            };
            if marked {
                self.try_reap(slot, own);
            }
        }
    }

    /// Reads publisher slot `slot`'s announced claim consistently (a seqlock
    /// on the hold flags, whose bits 8.. count announcements: odd while one
    /// is being written). `None` when nothing is announced.
    pub(crate) fn announced(&self, slot: u32) -> Option<Announced> {
        let s = self.slot(slot);
        for _ in 0..8 {
            // SYNC POINT with the Release store of the flags in `Producer::announce`.
            let f1 = s.u32(SLOT_HOLD_FLAGS).load(Ordering::Acquire);
            if f1 & HOLD_ACTIVE == 0 {
                return None;
            }
            if (f1 >> 8) & 1 == 1 {
                crate::sync::spin_loop();
                continue;
            }
            let start = s.u64(SLOT_HOLD).load(Ordering::Relaxed);
            let end = s.u64(SLOT_HOLD_END).load(Ordering::Relaxed);
            let frame = s.u64(SLOT_CLAIM_FRAME).load(Ordering::Relaxed);
            let seq = s.u64(SLOT_CLAIM_SEQ).load(Ordering::Relaxed);
            let count = s.u32(SLOT_CLAIM_COUNT).load(Ordering::Relaxed).max(1);
            fence(Ordering::Acquire);
            let f2 = s.u32(SLOT_HOLD_FLAGS).load(Ordering::Relaxed);
            if f1 >> 8 == f2 >> 8 {
                return Some(Announced { start, end, frame, seq, count, flags: f2 });
            }
        }
        None
    }

    /// Whether another publisher finished a claim that starts at `start`
    /// (its header there is stamped `start` and names another slot): then
    /// `slot`'s announcement of `start` is stale (its compare-and-swap
    /// failed). Only meaningful while the tail is within a lap of `start`.
    pub(crate) fn claimed_by_other(&self, slot: u32, start: u64) -> bool {
        let f = self.frame(start);
        f.stamp().load(Ordering::Acquire) == start && f.meta().load(Ordering::Relaxed) >> 16 != slot
    }

    /// Whether publisher `slot`'s announcement is a claim that happened, is
    /// not finished and was not abandoned yet: the tail passed its end but is
    /// within a lap of its start (an unfinished claim holds every publisher
    /// back there), nobody else finished a claim at its start, its frame is
    /// not stamped, and either it recorded the claim (`HOLD_CLAIMED`) or no
    /// other slot announces the same start (so the compare-and-swap from that
    /// tail was its own).
    pub(crate) fn claim_is_real(&self, slot: u32, a: &Announced) -> bool {
        let geo = self.geo;
        let span = distance(a.start, a.end);
        // Impossible values from a damaged slot: claims are aligned, span at
        // most a lap, and the frame lies inside the claim.
        if !a.start.is_multiple_of(FRAME_ALIGN)
            || !a.frame.is_multiple_of(FRAME_ALIGN)
            || !a.end.is_multiple_of(FRAME_ALIGN)
            || span < FRAME_HEADER as u64
            || span > geo.capacity
            || distance(a.start, a.frame) >= span
            || distance(a.frame, a.end) > geo.max_frame_len()
        {
            return false;
        }
        let revoked = self.slot(slot).u32(SLOT_REVOKED).load(Ordering::Acquire);
        if revoked & REVOKED_CLAIM != 0 && revoked >> 8 == a.flags >> 8 {
            return false; // already abandoned (and quarantined)
        }
        let tail = self.tail().0;
        if !at_or_before(a.end, tail) || distance(a.start, tail) > geo.capacity {
            return false;
        }
        if self.claimed_by_other(slot, a.start) || self.unfinished_frame(slot, a).is_none() {
            return false;
        }
        if a.flags & HOLD_CLAIMED != 0 {
            return true;
        }
        for other in 0..self.scan_len() {
            if other == slot || self.slot(other).u32(SLOT_STATE).load(Ordering::Acquire) != STATE_PUBLISHER {
                continue;
            }
            // SYNC POINT with the Release stores of another publisher's flags
            // (every one of them, the odd "writing" value included): if we see
            // its next announcement, we see the commit that came before it.
            let f = self.slot(other).u32(SLOT_HOLD_FLAGS).load(Ordering::Acquire);
            if f & HOLD_ACTIVE != 0 && self.slot(other).u64(SLOT_HOLD).load(Ordering::Acquire) == a.start {
                return false;
            }
        }
        // Again after the scan: a publisher that claimed the same start may
        // have committed and announced its next claim while we scanned (its
        // commit is visible now, by the sync point above).
        !self.claimed_by_other(slot, a.start)
    }

    /// Finishes claim `a` of publisher `slot` as abandoned: its frame becomes
    /// padding flagged `FRAME_ABANDONED` carrying the claim's sequence number,
    /// and its other padding is written as its owner would have. Every header
    /// is written with one compare-and-swap that succeeds only over an
    /// unwritten header, so of the owner's commit and this, exactly one wins.
    /// Returns whether this call won the frame.
    pub(crate) fn abandon_claim(&self, a: &Announced, slot: u32) -> bool {
        let meta = u32::from(FRAME_PAD | FRAME_ABANDONED) | (slot << 16);
        let mut won = false;
        // A batch claim's owner commits its frames in order: the abandoned
        // padding starts at the first frame it has not committed and stands
        // for the sequence numbers from there to the end of the claim.
        // Bounded: each round either wins, or finds one more frame committed.
        for _ in 0..=a.count {
            let Some((pos, done)) = self.unfinished_frame(slot, a) else { break };
            let f = self.frame(pos);
            // Before the header: a reader that sees the stamp sees the sequence
            // number and count. The owner stores the same sequence number.
            f.seq().store(a.seq.wrapping_add(u64::from(done)), Ordering::Relaxed);
            f.u32(FRAME_COUNT).store(a.count - done, Ordering::Relaxed);
            if self.write_header_guarded(pos, distance(pos, a.end) as u32, meta) {
                won = true;
                break;
            }
        }
        for (pos, len) in self.geo.padding_parts(a.start, a.frame) {
            self.write_header_guarded(pos, len as u32, u32::from(FRAME_PAD) | (slot << 16));
        }
        won
    }

    /// The first frame of claim `a` (of publisher `slot`) its owner has not
    /// committed, and how many it committed before it; `None` when the
    /// claim is finished (every frame committed, or abandoned already). The
    /// committed frames' headers are checked against the claim, so a damaged
    /// one ends the walk as finished.
    pub(crate) fn unfinished_frame(&self, slot: u32, a: &Announced) -> Option<(u64, u32)> {
        let mut pos = a.frame;
        for done in 0..a.count {
            if pos == a.end {
                return None;
            }
            let f = self.frame(pos);
            // SYNC POINT with the Release compare-and-swap of the owner's commit.
            if f.stamp().load(Ordering::Acquire) != pos {
                return Some((pos, done));
            }
            let len = f.len().load(Ordering::Relaxed);
            let meta = f.meta().load(Ordering::Relaxed);
            if meta & 0xffff != 0 || meta >> 16 != slot || len > self.geo.max_message {
                return None; // padding (abandoned already) or not this claim's
            }
            pos = pos.wrapping_add(self.geo.frame_len(len as usize));
            if distance(a.frame, pos) > distance(a.frame, a.end) {
                return None;
            }
        }
        None
    }

    /// Abandons live publisher `slot`'s unfinished claim (it was stopped, or
    /// is too slow, for longer than the caller's unblock timeout) and
    /// quarantines its bytes until it acknowledges. Returns whether the claim
    /// was abandoned (by us or just before us).
    pub(crate) fn unblock_publisher(&self, slot: u32, own: u32) -> bool {
        if self.try_reap(slot, own) {
            return true;
        }
        let Some(a) = self.announced(slot) else { return false };
        if !self.claim_is_real(slot, &a) {
            return false;
        }
        if self.abandon_claim(&a, slot) {
            // The quarantine: later claims skip [start, end) in every lap
            // until the owner clears this word (after its last write).
            self.slot(slot).u32(SLOT_REVOKED).store((a.flags & !0xff) | REVOKED_CLAIM, Ordering::Release);
            self.bump_epoch();
            self.wake_everyone();
            return true;
        }
        false
    }

    /// A subscriber waiting at `pos` for longer than its unblock timeout (or
    /// looking for dead publishers): finishes the claim that covers `pos` if
    /// its owner is dead, or, with `stalled`, abandons it.
    pub(crate) fn unblock_at(&self, own: u32, pos: u64, stalled: bool) {
        let (tail, _) = self.tail();
        let d = distance(pos, tail);
        if d == 0 || d >= 1 << 63 {
            return;
        }
        for slot in 0..self.scan_len() {
            if slot == own || self.slot(slot).u32(SLOT_STATE).load(Ordering::Acquire) != STATE_PUBLISHER {
                continue;
            }
            let Some(a) = self.announced(slot) else { continue };
            // `pos` is the claim's start, a lap boundary in its padding, or one
            // of its frames.
            if distance(a.start, pos) >= distance(a.start, a.end) {
                continue;
            }
            if stalled {
                self.unblock_publisher(slot, own);
            } else {
                self.try_reap(slot, own);
            }
        }
    }

    /// Writes a frame header (stamp `pos`, `len`, `meta`) with one
    /// compare-and-swap of its first 16 bytes, only while nobody stamped it
    /// `pos` (for a peer finishing someone else's claim, which it does only
    /// while that claim holds every publisher back, so the bytes are not
    /// reused). Returns whether this call wrote it.
    pub(crate) fn write_header_guarded(&self, pos: u64, len: u32, meta: u32) -> bool {
        let head = self.frame(pos).head();
        let new = u128::from(pos) | (u128::from(len) << 64) | (u128::from(meta) << 96);
        let mut cur = head.load(Ordering::Acquire);
        // Bounded: only a hostile peer rewrites an unfinished header forever.
        for _ in 0..64 {
            if cur as u64 == pos {
                return false;
            }
            // SYNC POINT with the Acquire load of the stamp in `Consumer::read_frame`:
            // the payload and sequence number written before are visible with the stamp.
            match head.compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
        false
    }

    /// The tail: (next claim position, next message sequence number).
    #[inline]
    pub(crate) fn tail(&self) -> (u64, u64) {
        let v = self.mem.u128(OFF_TAIL).load(Ordering::Acquire);
        (v as u64, (v >> 64) as u64)
    }
}

/// A publisher's announced claim, read consistently by `Region::announced`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Announced {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) frame: u64,
    pub(crate) seq: u64,
    /// Messages in the claim (sequence numbers `seq..seq + count`), at least 1.
    pub(crate) count: u32,
    pub(crate) flags: u32,
}
