//! The subscribing side of the ring protocol: read, validate, advance.
//!
//! A subscriber trusts a frame only when its stamp equals the position it
//! expects (Acquire, pairing with the publisher's Release commit). In block
//! mode the bytes then stay put until our cursor (published as our `hold`)
//! passes them. In overwrite mode, and for the first lap after attaching at
//! `Oldest`, a publisher may overwrite the frame while we copy it, so the copy
//! is validated afterwards against the tail (a seqlock): if any claim reached
//! a lap past the frame, the copy is discarded and we resynchronise.

use crate::bus::Bus;
use crate::config::{Overflow, PeerKind, StartAt, WaitStrategy};
use crate::error::Result;
use crate::layout::*;
use crate::region::Region;
use crate::ring::{at_or_before, distance, FrameKind};
use crate::sync::{fence, Instant, Ordering};

/// The outcome of one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// A message of `len` bytes was copied into the buffer.
    Message {
        /// Its global sequence number.
        seq: u64,
        /// Its length.
        len: usize,
    },
    /// Nothing to read (yet, or before the deadline).
    Empty,
    /// We were overrun (overwrite mode) and lost exactly `lost` messages; the
    /// next read returns the oldest intact message.
    Lagged {
        /// Messages lost.
        lost: u64,
    },
}

/// A frame borrowed in place (block mode).
#[derive(Debug, Clone, Copy)]
pub struct Borrowed {
    ptr: *const u8,
    len: usize,
    next: u64,
    seq: u64,
}

impl Borrowed {
    /// Payload pointer; valid until the frame is released.
    pub fn ptr(&self) -> *const u8 {
        self.ptr
    }
    /// Payload length.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

enum Frame {
    NotReady,
    Skipped,
    Resynced,
    Message { seq: u64, len: usize },
}

/// The raw subscriber over a bus handle.
#[derive(Debug)]
pub struct Consumer {
    bus: Bus,
    cursor: u64,
    expected_seq: Option<u64>,
    lag_pending: bool,
    /// Positions before this one are read with overrun validation even in block mode.
    validate_until: u64,
    overwrite: bool,
    wait: WaitStrategy,
    stash: Option<(Vec<u8>, u64)>,
    lost_total: u64,
    messages: u64,
    bytes: u64,
}

impl Consumer {
    /// Wraps a bus handle attached as a subscriber and places its cursor.
    pub fn new(bus: Bus, start: StartAt, wait: WaitStrategy) -> Consumer {
        assert_eq!(bus.kind, PeerKind::Subscriber, "Consumer::new needs a subscriber handle");
        let overwrite = bus.region.info.overflow == Overflow::Overwrite;
        let mut c = Consumer {
            bus,
            cursor: 0,
            expected_seq: None,
            lag_pending: false,
            validate_until: 0,
            overwrite,
            wait,
            stash: None,
            lost_total: 0,
            messages: 0,
            bytes: 0,
        };
        c.place(start);
        c
    }

    fn region(&self) -> &Region {
        &self.bus.region
    }

    fn place(&mut self, start: StartAt) {
        let region = &self.bus.region;
        let m = &region.mem;
        let slot = self.bus.slot;
        let cap = region.geo.capacity;
        let (t0, _) = region.tail();
        if !self.overwrite {
            // Hold publishers back (a full lap behind the tail when starting at
            // the oldest frame) until the real cursor is known.
            let hold = if start == StartAt::Oldest { t0.wrapping_sub(cap) } else { t0 };
            region.slot(slot).u64(SLOT_HOLD).store(hold, Ordering::Relaxed);
            region.slot(slot).u32(SLOT_HOLD_FLAGS).store(HOLD_ACTIVE, Ordering::Relaxed);
        }
        // SYNC POINT with `Producer::try_claim` (SeqCst epoch load, SeqCst tail
        // loads and CAS): in the single total order, either a publisher's epoch
        // load sees our increment (and its rescan, acquiring through it, sees
        // our hold), or its cached limit was computed from a tail no newer than
        // the `t1` we read next, so it never claims past `t1 + capacity`.
        fence(Ordering::SeqCst);
        m.u64(OFF_ATTACH_EPOCH).fetch_add(1, Ordering::SeqCst);
        let v = m.u128(OFF_TAIL).load(Ordering::SeqCst);
        let (t1, s1) = (v as u64, (v >> 64) as u64);
        match start {
            StartAt::Latest => {
                self.cursor = t1;
                self.expected_seq = Some(s1);
                self.validate_until = t1;
            }
            StartAt::Oldest => {
                self.cursor = self.oldest_frame(t1);
                // Publishers that cached their limit before our hold was visible
                // may still overwrite up to t1 - so validate until there.
                self.validate_until = t1;
                self.expected_seq = self.peek_first_seq();
            }
        }
        region.slot(slot).u64(SLOT_CURSOR).store(self.cursor, Ordering::Relaxed);
        region.slot(slot).u64(SLOT_NEXT_SEQ).store(self.expected_seq.unwrap_or(s1), Ordering::Relaxed);
        if !self.overwrite {
            region.slot(slot).u64(SLOT_HOLD).store(self.cursor, Ordering::Release);
        }
    }

    /// The oldest frame start still in the ring when the tail is `t`.
    fn oldest_frame(&self, t: u64) -> u64 {
        let region = self.region();
        let geo = region.geo;
        let initial = region.info.initial_position;
        if distance(initial, t) < geo.capacity {
            return initial;
        }
        let target = t.wrapping_sub(geo.capacity);
        let mut b = geo.next_boundary(target);
        for _ in 0..=HINTS {
            if !at_or_before(b, t) || b == t {
                break;
            }
            // SYNC POINT with the Release store of the hint in `Producer::try_claim`.
            let h = region.mem.u64(OFF_HINTS + geo.hint_index(b) * 8).load(Ordering::Acquire);
            if geo.hint_plausible(b, h) && at_or_before(h, t) {
                return h;
            }
            b = b.wrapping_add(geo.segment());
        }
        let lap = geo.next_lap(target);
        if at_or_before(lap, t) {
            lap
        } else {
            t
        }
    }

    /// The sequence number of the first message at or after the cursor, if it
    /// can be read now (used as the reference for loss accounting).
    fn peek_first_seq(&self) -> Option<u64> {
        let region = self.region();
        let mut pos = self.cursor;
        for _ in 0..4 {
            if !pos.is_multiple_of(FRAME_ALIGN) {
                return None;
            }
            let f = region.frame(pos);
            if f.stamp().load(Ordering::Acquire) != pos {
                return if pos == region.tail().0 { Some(region.tail().1) } else { None };
            }
            let meta = f.meta().load(Ordering::Relaxed);
            let len = f.len().load(Ordering::Relaxed);
            let seq = f.seq().load(Ordering::Relaxed);
            if self.overrun(pos) {
                return None;
            }
            match region.geo.classify(pos, len, meta & 0xffff) {
                Ok(FrameKind::Message { .. }) => return Some(seq),
                Ok(FrameKind::Padding { len }) => pos = pos.wrapping_add(len),
                Err(_) => return None,
            }
        }
        None
    }

    /// The bus handle.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }
    /// The next position this subscriber reads.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }
    /// Total messages reported lost so far.
    pub fn lost_total(&self) -> u64 {
        self.lost_total
    }
    /// Sets the wait strategy.
    pub fn set_wait_strategy(&mut self, wait: WaitStrategy) {
        self.wait = wait;
    }
    /// The wait strategy.
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.wait
    }

    #[inline]
    fn validating(&self, pos: u64) -> bool {
        self.overwrite || (pos != self.validate_until && at_or_before(pos, self.validate_until))
    }

    /// Whether a publisher has claimed a full lap past `pos` (so `pos` may be overwritten).
    #[inline]
    fn overrun(&self, pos: u64) -> bool {
        let d = distance(pos, self.region().tail().0);
        d > self.region().geo.capacity && d < 1 << 63
    }

    /// Reads the next message into `buf` without waiting.
    pub fn try_read(&mut self, buf: &mut Vec<u8>) -> Result<Poll> {
        if let Some((data, seq)) = self.stash.take() {
            *buf = data;
            return Ok(Poll::Message { seq, len: buf.len() });
        }
        // Bounded: padding frames and resynchronisations per call.
        for _ in 0..64 {
            match self.read_frame(buf)? {
                Frame::NotReady => {
                    if !self.overwrite {
                        // Dry: a publisher parked for space must not wait for
                        // our next checkpoint (see `advance`).
                        self.wake_parked_publishers();
                    }
                    return Ok(Poll::Empty);
                }
                Frame::Skipped | Frame::Resynced => continue,
                Frame::Message { seq, len } => {
                    if std::mem::take(&mut self.lag_pending) {
                        if let Some(exp) = self.expected_seq {
                            let lost = seq.wrapping_sub(exp);
                            if lost > 0 && lost < 1 << 62 {
                                self.set_expected(seq.wrapping_add(1));
                                self.lost_total += lost;
                                let region = &self.bus.region;
                                region.slot(self.bus.slot).u64(SLOT_LOST).store(self.lost_total, Ordering::Relaxed);
                                self.stash = Some((std::mem::take(buf), seq));
                                return Ok(Poll::Lagged { lost });
                            }
                        }
                    }
                    self.set_expected(seq.wrapping_add(1));
                    return Ok(Poll::Message { seq, len });
                }
            }
        }
        Ok(Poll::Empty)
    }

    /// Reads the next message, waiting until `deadline` (`None`: for ever).
    pub fn read(&mut self, buf: &mut Vec<u8>, deadline: Option<Instant>) -> Result<Poll> {
        loop {
            match self.try_read(buf)? {
                Poll::Empty => {}
                other => return Ok(other),
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Poll::Empty);
            }
            self.wait_for_data(deadline);
        }
    }

    /// Parks until the frame at the cursor is committed (or overrun), the
    /// deadline passes, or a park slice ends; repairs a dead publisher's hole.
    pub fn wait_for_data(&self, deadline: Option<Instant>) {
        let region = &self.bus.region;
        let pos = self.cursor;
        if !pos.is_multiple_of(FRAME_ALIGN) {
            return; // damaged: the next read reports it
        }
        let validating = self.validating(pos);
        let own = self.bus.slot;
        let line = (region.data_off(pos) & !63) + 64;
        let next_line = (line + 8 <= region.info.file_len as usize).then_some(line);
        crate::wait::wait_until(
            self.wait,
            1,
            deadline,
            region.mem.u32(OFF_DATA_FUTEX),
            region.mem.u32(OFF_DATA_WAITERS),
            || {
                // Also touch the line after the frame header: the payload of a
                // small frame lives there, and loading it while we spin lets
                // its miss overlap with the stamp's instead of following it.
                if let Some(off) = next_line {
                    let _ = region.mem.u64(off).load(Ordering::Relaxed);
                }
                region.frame(pos).stamp().load(Ordering::Acquire) == pos || (validating && self.overrun(pos))
            },
            || repair_hole_at(region, own, pos),
        );
    }

    fn read_frame(&mut self, buf: &mut Vec<u8>) -> Result<Frame> {
        let pos = self.cursor;
        let validating = self.validating(pos);
        let region = &self.bus.region;
        if !pos.is_multiple_of(FRAME_ALIGN) {
            return Err(region.corrupt(format!("read position {pos:#x} is not frame-aligned (a damaged tail or hint)")));
        }
        let f = region.frame(pos);
        // SYNC POINT with the Release store of the stamp in `Producer::commit`
        // (and `Region::write_padding`): header and payload are visible.
        let stamp = f.stamp().load(Ordering::Acquire);
        if stamp != pos {
            if validating && self.overrun(pos) {
                self.resync();
                return Ok(Frame::Resynced);
            }
            return Ok(Frame::NotReady);
        }
        let len = f.len().load(Ordering::Relaxed);
        let meta = f.meta().load(Ordering::Relaxed);
        let seq = f.seq().load(Ordering::Relaxed);
        let flags = meta & 0xffff;
        let room = region.geo.room_to_lap_end(pos);
        let mut frame_len = region.geo.frame_len(len as usize);
        // Fast path: an ordinary frame that fits, outside any validation window.
        let ordinary = flags == 0 && len <= region.info.max_message && frame_len <= room;
        if !ordinary || validating {
            let kind = region.geo.classify(pos, len, flags);
            if validating && self.overrun(pos) {
                self.resync();
                return Ok(Frame::Resynced);
            }
            match kind.map_err(|what| region.corrupt(what))? {
                FrameKind::Padding { len } => {
                    self.advance(pos.wrapping_add(len), None);
                    return Ok(Frame::Skipped);
                }
                FrameKind::Message { frame_len: f, .. } => frame_len = f,
            }
        }
        let len = len as usize;
        buf.clear();
        buf.reserve(len);
        let off = region.data_off(pos) + FRAME_HEADER;
        // Copy into the spare capacity without zeroing it first.
        {
            let spare = &mut buf.spare_capacity_mut()[..len];
            // SAFETY: MaybeUninit<u8> and u8 have the same layout; we only write
            // through this slice (copy_out fills all `len` bytes) before reading.
            let dst = unsafe { &mut *(spare as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) };
            region.mem.copy_out(off, dst);
        }
        // SAFETY: the first `len` bytes of spare capacity were initialised just above.
        unsafe { buf.set_len(len) };
        if validating {
            // SYNC POINT with the publisher's CAS of the tail (AcqRel) before it
            // writes a frame a lap later: if we copied any of its bytes, this
            // load sees its claim, and the copy is discarded.
            fence(Ordering::Acquire);
            if self.overrun(pos) {
                buf.clear();
                self.resync();
                return Ok(Frame::Resynced);
            }
        }
        self.advance(pos.wrapping_add(frame_len), Some(len));
        Ok(Frame::Message { seq, len })
    }

    /// Borrows the next frame in place without waiting (block mode only,
    /// outside the validation window). `Ok(None)` when nothing is ready or the
    /// frame must be copied instead.
    pub fn try_borrow(&mut self) -> Result<Option<Borrowed>> {
        if self.stash.is_some() {
            return Ok(None);
        }
        for _ in 0..64 {
            let pos = self.cursor;
            if self.validating(pos) || !pos.is_multiple_of(FRAME_ALIGN) {
                return Ok(None); // a misaligned cursor is reported by `try_read`
            }
            let region = &self.bus.region;
            let f = region.frame(pos);
            // SYNC POINT with the Release store of the stamp in `Producer::commit`.
            if f.stamp().load(Ordering::Acquire) != pos {
                return Ok(None);
            }
            let len = f.len().load(Ordering::Relaxed);
            let meta = f.meta().load(Ordering::Relaxed);
            let seq = f.seq().load(Ordering::Relaxed);
            let frame_len = match region.geo.classify(pos, len, meta & 0xffff).map_err(|what| region.corrupt(what))? {
                FrameKind::Padding { len } => {
                    self.advance(pos.wrapping_add(len), None);
                    continue;
                }
                FrameKind::Message { frame_len, .. } => frame_len,
            };
            let off = region.data_off(pos) + FRAME_HEADER;
            let ptr = region.mem.ptr(off, len as usize);
            return Ok(Some(Borrowed { ptr, len: len as usize, next: pos.wrapping_add(frame_len), seq }));
        }
        Ok(None)
    }

    /// Releases a borrowed frame: the cursor moves past it.
    pub fn release(&mut self, b: Borrowed) {
        self.set_expected(b.seq.wrapping_add(1));
        self.advance(b.next, Some(b.len));
    }

    fn set_expected(&mut self, next: u64) {
        self.expected_seq = Some(next);
        let region = &self.bus.region;
        region.slot(self.bus.slot).u64(SLOT_NEXT_SEQ).store(next, Ordering::Relaxed);
    }

    fn advance(&mut self, next: u64, msg_len: Option<usize>) {
        let prev = self.cursor;
        self.cursor = next;
        let region = &self.bus.region;
        let own = region.slot(self.bus.slot);
        own.u64(SLOT_CURSOR).store(next, Ordering::Relaxed);
        if let Some(len) = msg_len {
            self.messages = self.messages.wrapping_add(1);
            self.bytes = self.bytes.wrapping_add(len as u64);
            own.u64(SLOT_MESSAGES).store(self.messages, Ordering::Relaxed);
            own.u64(SLOT_BYTES).store(self.bytes, Ordering::Relaxed);
        }
        if !self.overwrite {
            // SYNC POINT with the Acquire load of holds in `scan_limit`: our reads
            // of the bytes before `next` happen before a publisher reuses them.
            own.u64(SLOT_HOLD).store(next, Ordering::Release);
            // A publisher parked on a full ring waits until an eighth of it is
            // free (the hysteresis in `Producer::wait_for_space`), so we need
            // not look for one after every message: at every sixteenth of the
            // ring we pass, and whenever we run dry (`try_read` finding
            // nothing), is enough for it to be woken without waiting out a park
            // slice. That keeps a full fence off the per-message path.
            let checkpoint_mask = !(region.geo.capacity / 16 - 1); // a power of two: no division
            if prev & checkpoint_mask != next & checkpoint_mask {
                self.wake_parked_publishers();
            }
        }
    }

    /// Wakes publishers parked waiting for space, if any (block mode).
    fn wake_parked_publishers(&self) {
        let m = &self.bus.region.mem;
        // SYNC POINT with the SeqCst increment of `space_waiters` (and the fence
        // after it) by a parking publisher: the handshake in wait.rs.
        fence(Ordering::SeqCst);
        crate::wait::wake_if_waiting(m.u32(OFF_SPACE_FUTEX), m.u32(OFF_SPACE_WAITERS));
    }

    /// After an overrun: jump to the oldest intact frame and remember to report the loss.
    fn resync(&mut self) {
        let (t, _) = self.region().tail();
        let new = self.oldest_frame(t);
        self.lag_pending = true;
        self.advance(new, None);
    }
}

/// A subscriber waiting at `pos`: if the tail is past `pos`, the frame there
/// was claimed; if the publisher that claimed it is dead, turn it into padding.
fn repair_hole_at(region: &Region, own: u32, pos: u64) {
    let (tail, _) = region.tail();
    let d = distance(pos, tail);
    if d == 0 || d >= 1 << 63 {
        return;
    }
    for slot in 0..region.scan_len() {
        if slot == own || region.slot(slot).u32(SLOT_STATE).load(Ordering::Acquire) != STATE_PUBLISHER {
            continue;
        }
        if region.slot(slot).u32(SLOT_HOLD_FLAGS).load(Ordering::Acquire) & HOLD_ACTIVE == 0 {
            continue;
        }
        let hold = region.slot(slot).u64(SLOT_HOLD).load(Ordering::Acquire);
        let end = region.slot(slot).u64(SLOT_HOLD_END).load(Ordering::Acquire);
        if hold == pos || (at_or_before(hold, pos) && distance(pos, end) < distance(hold, end)) {
            region.try_reap(slot, own);
        }
    }
}
