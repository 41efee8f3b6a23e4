//! The subscribing side of the ring protocol: read, validate, advance.
//!
//! A subscriber trusts a frame only when its stamp equals the position it
//! expects (Acquire, pairing with the publisher's Release commit). In block
//! mode the bytes then stay put until our cursor (published as our `hold`)
//! passes them: the attach handshake (`place`) makes the hold binding on
//! every publisher before the first read, so no validation is needed. In
//! overwrite mode a publisher may overwrite the frame while we copy it, so the
//! copy is validated afterwards against the tail (a seqlock): if any claim
//! reached a lap past the frame, the copy is discarded and we resynchronise.
//! On a bus with an eviction policy, a block-mode copy is validated against
//! our own slot's eviction mark the same way.

use std::time::Duration;

use crate::bus::Bus;
use crate::config::{Overflow, PeerKind, StartAt, WaitStrategy, DEFAULT_UNBLOCK_TIMEOUT};
use crate::error::Result;
use crate::layout::*;
use crate::region::Region;
use crate::ring::{at_or_before, distance, FrameKind};
use crate::sync::{fence, Instant, Ordering};
use crate::wait::{Parking, Waited};

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

/// What one [`Consumer::try_drain`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Drained {
    /// Messages passed to the callback, in order.
    pub messages: usize,
    /// Messages lost on the way (overwrite-mode overruns, an eviction, or a
    /// gap before an abandoned frame), counted exactly as `Poll::Lagged`
    /// would have reported them.
    pub lost: u64,
}

/// A frame borrowed in place (block mode): a linear token (neither `Copy`
/// nor `Clone`) consumed by [`Consumer::release`]. Releasing a token that no
/// longer names the frame at the cursor does nothing.
///
/// A borrow cannot be released twice:
/// ```compile_fail
/// # fn f(c: &mut shmbus_core::Consumer) {
/// let b = c.try_borrow().unwrap().unwrap();
/// c.release(b);
/// c.release(b);
/// # }
/// ```
#[derive(Debug)]
pub struct Borrowed {
    ptr: *const u8,
    len: usize,
    pos: u64,
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

/// Ends a drain (`Consumer::try_drain`): stops deferring and publishes the
/// progress made since `start`, on return and on unwinding alike.
struct DrainEnd<'a> {
    c: &'a mut Consumer,
    start: u64,
}

impl Drop for DrainEnd<'_> {
    fn drop(&mut self) {
        self.c.deferring = false;
        if let Some(next) = self.c.expected_seq {
            self.c.bus.own().u64(SLOT_NEXT_SEQ).store(next, Ordering::Relaxed);
        }
        self.c.publish_progress(self.start, true);
    }
}

/// The raw subscriber over a bus handle.
#[derive(Debug)]
pub struct Consumer {
    /// The waiter-thread registration (async and eventfd waiting); disarmed
    /// in `drop`, before the bus (and its mapping) goes.
    #[cfg(not(loom))]
    armed: Option<crate::notify::Armed>,
    bus: Bus,
    cursor: u64,
    expected_seq: Option<u64>,
    lag_pending: bool,
    /// Messages known lost while a `Lagged` report is pending (abandoned
    /// frames passed on the way carried their sequence numbers).
    pending_lost: u64,
    overwrite: bool,
    /// Block mode on a bus with an eviction policy: copies are validated
    /// against our slot's eviction mark, and nothing is borrowed in place.
    evictable: bool,
    wait: WaitStrategy,
    unblock: Duration,
    interruptible: bool,
    /// Where we started waiting on an outstanding claim, and when.
    stall: Option<(u64, Instant)>,
    stash: Option<(Vec<u8>, u64)>,
    lost_total: u64,
    abandoned_total: u64,
    messages: u64,
    bytes: u64,
    /// Wake calls in a row that found nobody parked.
    empty_wakes: u32,
    /// Inside `try_drain`: progress (cursor, hold, counters) is kept here and
    /// published to the slot once, at the end.
    deferring: bool,
}

impl Consumer {
    /// Wraps a bus handle attached as a subscriber and places its cursor.
    pub fn new(bus: Bus, start: StartAt, wait: WaitStrategy) -> Consumer {
        assert_eq!(bus.kind, PeerKind::Subscriber, "Consumer::new needs a subscriber handle");
        let overwrite = bus.region.info.overflow == Overflow::Overwrite;
        let evictable = !overwrite && bus.region.info.evict_after_ms != 0;
        let mut c = Consumer {
            #[cfg(not(loom))]
            armed: None,
            bus,
            cursor: 0,
            expected_seq: None,
            lag_pending: false,
            pending_lost: 0,
            overwrite,
            evictable,
            wait,
            unblock: DEFAULT_UNBLOCK_TIMEOUT,
            interruptible: false,
            stall: None,
            stash: None,
            lost_total: 0,
            abandoned_total: 0,
            messages: 0,
            bytes: 0,
            empty_wakes: 0,
            deferring: false,
        };
        c.place(start);
        c
    }

    fn region(&self) -> &Region {
        &self.bus.region
    }

    /// Places the cursor. In block mode this is the attach handshake that
    /// makes our hold binding before anything is read:
    ///
    /// 1. read the tail `t0`; store the hold `h` (`t0`, or the oldest frame
    ///    still in the ring at `t0`) with `HOLD_ACTIVE`;
    /// 2. `fence(SeqCst)`, increment `attach_epoch` (SeqCst), read the tail
    ///    `t1` with a read-modify-write (a CAS of the value with itself).
    ///
    /// Every publisher loads the epoch after each successful claim
    /// compare-and-swap and, when it changed, rescans the holds before
    /// writing a byte, waiting if its claim reaches past a hold plus the
    /// capacity. In the tail's modification order a claim either precedes our
    /// tail RMW (so it ends at or before `t1` and overwrites only positions
    /// before `t1 - capacity`) or follows it, and then our RMW synchronises
    /// with the claim CAS, so our epoch increment happens before the
    /// publisher's epoch re-check (it honours `h`). Positions at or after `max(h, t1 - capacity)` are
    /// therefore never overwritten before we pass them, and that is where we
    /// start: lossless from the moment we return, for either start.
    fn place(&mut self, start: StartAt) {
        self.place_from(start, None);
    }

    /// `place`, for a rejoin after an eviction: never before `from` (the
    /// cursor we had), so nothing is delivered twice; from there when those
    /// bytes are still intact, else from the oldest frame.
    fn place_from(&mut self, start: StartAt, from: Option<u64>) {
        let region = &self.bus.region;
        let m = &region.mem;
        let slot = self.bus.slot;
        let cap = region.geo.capacity;
        let own = region.slot(slot);
        let (t0, _) = region.tail();
        let mut hold = t0;
        if !self.overwrite {
            if start == StartAt::Oldest {
                hold = match from {
                    Some(c) if distance(c, t0) <= cap => c,
                    _ => self.oldest_frame(t0),
                };
            }
            own.u64(SLOT_HOLD).store(hold, Ordering::Relaxed);
            // (A rejoin keeps counting as placed.)
            let placed = own.u32(SLOT_HOLD_FLAGS).load(Ordering::Relaxed) & HOLD_PLACED;
            own.u32(SLOT_HOLD_FLAGS).store(HOLD_ACTIVE | placed, Ordering::Relaxed);
            own.u32(SLOT_REVOKED).store(0, Ordering::Relaxed);
        }
        // SYNC POINT with `Producer::try_claim` (its SeqCst epoch load after
        // the claim CAS, and the SeqCst tail CAS): see above.
        fence(Ordering::SeqCst);
        m.u64(OFF_ATTACH_EPOCH).fetch_add(1, Ordering::SeqCst);
        // Read the tail with a read-modify-write (a compare-and-swap of the
        // value with itself), not a load: in the tail's modification order a
        // publisher's claim CAS then either comes before it (we read that
        // claim's end) or after it (our RMW synchronises with the claim, so
        // our epoch increment happens before the publisher's epoch re-check,
        // which then rescans and sees our hold). No single-total-order
        // argument is needed (loom, which weakens SeqCst accesses, checks it).
        let tail = m.u128(OFF_TAIL);
        let mut v = tail.load(Ordering::Acquire);
        for _ in 0..1_000_000 {
            match tail.compare_exchange(v, v, Ordering::SeqCst, Ordering::Acquire) {
                Ok(_) => break,
                Err(actual) => v = actual,
            }
        }
        let (t1, s1) = (v as u64, (v >> 64) as u64);
        match start {
            StartAt::Latest => {
                self.cursor = t1;
                self.expected_seq = Some(s1);
            }
            StartAt::Oldest => {
                self.cursor = if self.overwrite || distance(hold, t1) > cap { self.oldest_frame(t1) } else { hold };
                self.expected_seq = self.peek_first_seq();
            }
        }
        own.u64(SLOT_CURSOR).store(self.cursor, Ordering::Relaxed);
        own.u64(SLOT_NEXT_SEQ).store(self.expected_seq.unwrap_or(s1), Ordering::Relaxed);
        if !self.overwrite {
            // Forward only (the cursor is at or after the hold): always safe.
            own.u64(SLOT_HOLD).store(self.cursor, Ordering::Release);
        }
        // SYNC POINT with the Acquire load of the flags in `Bus::live_peers`
        // and `inspect`: we count as present once our cursor is placed.
        own.u32(SLOT_HOLD_FLAGS).fetch_or(HOLD_PLACED, Ordering::Release);
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
                Ok(FrameKind::Abandoned { .. }) => return Some(seq),
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

    /// Total abandoned messages seen so far: sequence numbers whose claim
    /// was never committed (the publisher died, was stopped longer than an
    /// unblock timeout, or cancelled a loan).
    pub fn abandoned_total(&self) -> u64 {
        self.abandoned_total
    }
    /// How long to wait on a publisher's unfinished claim before abandoning
    /// it (see [`crate::BusConfig::unblock_timeout`]).
    pub fn set_unblock_timeout(&mut self, timeout: Duration) {
        self.unblock = timeout.max(Duration::from_millis(1));
    }
    /// With `true`, a signal that interrupts a park ends `read` with
    /// `Poll::Empty` before its deadline (for programs that handle
    /// SIGINT/SIGTERM themselves).
    pub fn set_interruptible(&mut self, on: bool) {
        self.interruptible = on;
    }

    #[inline]
    fn validating(&self, _pos: u64) -> bool {
        self.overwrite
    }

    /// Whether a publisher evicted us (block mode, eviction policy).
    #[inline]
    fn evicted(&self) -> bool {
        self.evictable && self.bus.own().u32(SLOT_REVOKED).load(Ordering::Acquire) & REVOKED_EVICTED != 0
    }

    /// After an eviction: attach again (the handshake of `place`) at the
    /// oldest frame still in the ring, and report what was lost there.
    fn rejoin(&mut self) {
        let expected = self.expected_seq;
        self.place_from(StartAt::Oldest, Some(self.cursor));
        // `place` cleared the mark with our new hold, before its epoch increment.
        self.expected_seq = expected;
        self.lag_pending = true;
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
                    self.ran_dry(true)?;
                    return Ok(Poll::Empty);
                }
                Frame::Skipped | Frame::Resynced => continue,
                Frame::Message { seq, len } => {
                    self.stall = None;
                    let lost = self.take_loss(seq);
                    self.set_expected(seq.wrapping_add(1));
                    if lost > 0 {
                        self.stash = Some((std::mem::take(buf), seq));
                        return Ok(Poll::Lagged { lost });
                    }
                    return Ok(Poll::Message { seq, len });
                }
            }
        }
        Ok(Poll::Empty)
    }

    /// The messages lost before message `seq` (pending since an overrun, an
    /// eviction or an abandoned frame after a gap), added to the totals.
    #[inline]
    fn take_loss(&mut self, seq: u64) -> u64 {
        if !std::mem::take(&mut self.lag_pending) {
            return 0;
        }
        let gap = self.expected_seq.map_or(0, |exp| seq.wrapping_sub(exp));
        let lost = std::mem::take(&mut self.pending_lost) + if gap < 1 << 62 { gap } else { 0 };
        if lost > 0 {
            self.lost_total += lost;
            self.bus.own().u64(SLOT_LOST).store(self.lost_total, Ordering::Relaxed);
        }
        lost
    }

    /// Passes every message that can be read now, up to `max`, to `f` (its
    /// sequence number and payload), in order, and publishes our progress
    /// (cursor, hold, counters) once at the end instead of after each
    /// message. Loss is counted in the result instead of being reported as
    /// `Poll::Lagged`. Does not wait.
    ///
    /// In block mode on a bus without an eviction policy the payload slices
    /// are the ring's own bytes (no copy; our hold keeps cooperating
    /// publishers off them until we return: see `Borrowed` for what a
    /// hostile writer can still do); otherwise each message is copied into
    /// `scratch` and validated first, as `try_read` does.
    ///
    /// If `f` panics, the message it failed on counts as read, and the
    /// progress up to it is published as the panic unwinds.
    pub fn try_drain<F: FnMut(u64, &[u8])>(&mut self, max: usize, scratch: &mut Vec<u8>, mut f: F) -> Result<Drained> {
        let mut out = Drained::default();
        if max == 0 {
            return Ok(out);
        }
        if let Some((data, seq)) = self.stash.take() {
            // A message kept back by a `Poll::Lagged` of `try_read`.
            f(seq, &data);
            out.messages += 1;
            *scratch = data;
        }
        let start = self.cursor;
        self.deferring = true;
        // Publishes our progress when the drain ends, also when `f` panics.
        let guard = DrainEnd { c: self, start };
        let drained = guard.c.drain_frames(max, scratch, &mut f, &mut out);
        drop(guard);
        if drained? {
            self.ran_dry(out.messages == 0)?;
        }
        Ok(out)
    }

    /// Nothing more to read now: with `report_removed`, a removed bus is an
    /// error; in block mode, publishers parked for space are woken, so that
    /// they need not wait for our next checkpoint (see `publish_progress`).
    fn ran_dry(&mut self, report_removed: bool) -> Result<()> {
        let region = &self.bus.region;
        if report_removed && region.mem.u32(OFF_REMOVED).load(Ordering::Relaxed) != 0 {
            return Err(region.removed());
        }
        if !self.overwrite {
            self.wake_parked_publishers();
        }
        Ok(())
    }

    /// The loop of `try_drain`; returns whether it stopped for want of a
    /// committed frame (rather than at `max`).
    fn drain_frames<F: FnMut(u64, &[u8])>(
        &mut self,
        max: usize,
        scratch: &mut Vec<u8>,
        f: &mut F,
        out: &mut Drained,
    ) -> Result<bool> {
        let in_place = !self.overwrite && !self.evictable;
        // Bounded: each round passes a frame or a resynchronisation.
        let mut rounds = 0usize;
        while out.messages < max {
            rounds += 1;
            if rounds > max.saturating_add(64) {
                return Ok(false);
            }
            if in_place && !self.lag_pending {
                let pos = self.cursor;
                let region = &self.bus.region;
                if !pos.is_multiple_of(FRAME_ALIGN) {
                    return Err(
                        region.corrupt(format!("read position {pos:#x} is not frame-aligned (a damaged tail or hint)"))
                    );
                }
                let fr = region.frame(pos);
                // SYNC POINT with the Release compare-and-swap of the header in
                // `Producer::finish` / `Region::write_header_guarded`.
                if fr.stamp().load(Ordering::Acquire) != pos {
                    return Ok(true);
                }
                let len = fr.len().load(Ordering::Relaxed);
                let flags = fr.meta().load(Ordering::Relaxed) & 0xffff;
                let seq = fr.seq().load(Ordering::Relaxed);
                let room = region.geo.room_to_lap_end(pos);
                let frame_len = region.geo.frame_len(len as usize);
                if flags == 0 && len <= region.info.max_message && frame_len <= room {
                    let ptr = region.mem.ptr(region.data_off(pos) + FRAME_HEADER, len as usize);
                    // SAFETY: block mode without an eviction policy: the frame
                    // was committed (stamp seen with Acquire), its length was
                    // checked against the frame and the lap (the slice is
                    // inside the mapping), and our hold, binding on every
                    // cooperating publisher since the attach handshake and not
                    // moved until this drain ends, keeps them from reusing
                    // these bytes while `f` runs. A hostile writer can change
                    // the bytes, never the slice's bounds.
                    let payload = unsafe { std::slice::from_raw_parts(ptr, len as usize) };
                    self.stall = None;
                    self.set_expected(seq.wrapping_add(1));
                    // Before `f` (as `read_frame` does for a copy): the hold is
                    // published only when the drain ends, after `f` returned or
                    // unwound, so the slice stays protected while `f` runs.
                    self.advance(pos.wrapping_add(frame_len), Some(len as usize));
                    out.messages += 1;
                    f(seq, payload);
                    continue;
                }
            }
            match self.read_frame(scratch)? {
                Frame::NotReady => return Ok(true),
                Frame::Skipped | Frame::Resynced => continue,
                Frame::Message { seq, len } => {
                    self.stall = None;
                    out.lost += self.take_loss(seq);
                    self.set_expected(seq.wrapping_add(1));
                    f(seq, &scratch[..len]);
                    out.messages += 1;
                }
            }
        }
        Ok(false)
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
            if self.wait_for_data(deadline) == Waited::Interrupted {
                return Ok(Poll::Empty);
            }
        }
    }

    fn parking(&self) -> Parking<'_> {
        let m = &self.bus.region.mem;
        Parking {
            futex: m.u32(OFF_DATA_FUTEX),
            mask: m.u64(OFF_DATA_MASK),
            count: m.u32(OFF_DATA_WAITERS),
            parked: self.bus.own().u32(SLOT_PARKED),
            bit: PARKED_DATA,
            slot: self.bus.slot,
        }
    }

    /// Parks until the frame at the cursor is committed (or overrun, or we
    /// were evicted or the bus removed), or the deadline passes. While a
    /// claim is outstanding at the cursor (the tail is past it) it wakes
    /// every 20 ms to finish a dead publisher's claim, and abandons a claim
    /// that stays unfinished longer than the unblock timeout; with nothing
    /// outstanding it parks until a publisher wakes it.
    pub(crate) fn wait_for_data(&mut self, deadline: Option<Instant>) -> Waited {
        let region = &self.bus.region;
        let pos = self.cursor;
        if !pos.is_multiple_of(FRAME_ALIGN) {
            return Waited::Ready; // damaged: the next read reports it
        }
        let validating = self.validating(pos);
        let own = self.bus.slot;
        let line = (region.data_off(pos) & !63) + 64;
        let next_line = (line + 8 <= region.info.file_len as usize).then_some(line);
        let unblock = self.unblock;
        let stall = std::cell::Cell::new(self.stall);
        let waited = crate::wait::wait_until(
            self.wait,
            1,
            deadline,
            &self.parking(),
            self.interruptible,
            || {
                // Also touch the line after the frame header: the payload of a
                // small frame lives there, and loading it while we spin lets
                // its miss overlap with the stamp's instead of following it.
                if let Some(off) = next_line {
                    let _ = region.mem.u64(off).load(Ordering::Relaxed);
                }
                region.frame(pos).stamp().load(Ordering::Acquire) == pos
                    || (validating && self.overrun(pos))
                    || self.evicted()
                    || region.mem.u32(OFF_REMOVED).load(Ordering::Relaxed) != 0
            },
            || region.tail().0 != pos,
            || {
                let now = Instant::now();
                let since = match stall.get() {
                    Some((p, t)) if p == pos => t,
                    _ => {
                        stall.set(Some((pos, now)));
                        now
                    }
                };
                region.unblock_at(own, pos, now.duration_since(since) >= unblock);
            },
        );
        self.stall = stall.get();
        waited
    }

    /// Parks like `read` until a message may be ready (for callers that
    /// drive `try_read`/`try_borrow` themselves). Returns false when the
    /// deadline passed or a signal interrupted it (with `set_interruptible`).
    pub fn wait(&mut self, deadline: Option<Instant>) -> bool {
        self.wait_for_data(deadline) == Waited::Ready
    }

    #[inline(always)]
    fn read_frame(&mut self, buf: &mut Vec<u8>) -> Result<Frame> {
        if self.evicted() {
            self.rejoin();
            return Ok(Frame::Resynced);
        }
        let pos = self.cursor;
        let validating = self.validating(pos);
        let region = &self.bus.region;
        if !pos.is_multiple_of(FRAME_ALIGN) {
            return Err(region.corrupt(format!("read position {pos:#x} is not frame-aligned (a damaged tail or hint)")));
        }
        let f = region.frame(pos);
        // SYNC POINT with the Release compare-and-swap of the header in
        // `Region::write_header_guarded` (commit, padding, abandonment):
        // header, sequence number and payload are visible.
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
            // Read before the overrun check, like every other header field.
            let count = f.u32(FRAME_COUNT).load(Ordering::Relaxed);
            if validating && self.overrun(pos) {
                self.resync();
                return Ok(Frame::Resynced);
            }
            match kind.map_err(|what| region.corrupt(what))? {
                FrameKind::Padding { len } => {
                    self.advance(pos.wrapping_add(len), None);
                    return Ok(Frame::Skipped);
                }
                FrameKind::Abandoned { len } => {
                    self.note_abandoned(seq, count, len);
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
        } else if self.evictable {
            // SYNC POINT with the evicting publisher's compare-and-swap of our
            // mark, which comes before its claim (and the fence after it): if
            // we copied any byte it wrote, we see the mark.
            fence(Ordering::Acquire);
            if self.evicted() {
                buf.clear();
                self.rejoin();
                return Ok(Frame::Resynced);
            }
        }
        self.advance(pos.wrapping_add(frame_len), Some(len));
        Ok(Frame::Message { seq, len })
    }

    /// Counts an abandoned frame's sequence numbers: `count` of them from
    /// `seq` (0 and 1: one; more for the rest of an abandoned batch claim,
    /// never more frames than `len` bytes could hold).
    fn note_abandoned(&mut self, seq: u64, count: u32, len: u64) {
        let count = u64::from(count).clamp(1, (len / FRAME_ALIGN).max(1));
        if let Some(exp) = self.expected_seq {
            let gap = seq.wrapping_sub(exp);
            if gap >= 1 << 62 {
                return; // older than what we expect: a damaged header
            }
            if gap > 0 {
                self.pending_lost += gap;
                self.lag_pending = true;
            }
        }
        self.abandoned_total += count;
        let own = self.bus.own();
        own.u64(SLOT_ABANDONED).store(self.abandoned_total, Ordering::Relaxed);
        self.set_expected(seq.wrapping_add(count));
        self.stall = None;
    }

    /// Borrows the next frame in place without waiting (block mode only,
    /// and not on a bus with an eviction policy, where an evicted reader's
    /// bytes may be reused under it). `Ok(None)` when nothing is ready or the
    /// frame must be copied instead.
    pub fn try_borrow(&mut self) -> Result<Option<Borrowed>> {
        if self.stash.is_some() || self.evictable || self.lag_pending {
            return Ok(None);
        }
        for _ in 0..64 {
            let pos = self.cursor;
            if self.validating(pos) || !pos.is_multiple_of(FRAME_ALIGN) {
                return Ok(None); // a misaligned cursor is reported by `try_read`
            }
            let region = &self.bus.region;
            let f = region.frame(pos);
            // SYNC POINT with the Release compare-and-swap of the header in `Region::write_header_guarded`.
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
                FrameKind::Abandoned { .. } => return Ok(None), // accounted by `try_read`
                FrameKind::Message { frame_len, .. } => frame_len,
            };
            let off = region.data_off(pos) + FRAME_HEADER;
            let ptr = region.mem.ptr(off, len as usize);
            return Ok(Some(Borrowed { ptr, len: len as usize, pos, next: pos.wrapping_add(frame_len), seq }));
        }
        Ok(None)
    }

    /// Releases a borrowed frame: the cursor moves past it. A token that
    /// does not name the frame at the cursor (released before, or borrowed
    /// before another read moved on) is ignored.
    pub fn release(&mut self, b: Borrowed) {
        if b.pos != self.cursor || self.stash.is_some() {
            return;
        }
        self.set_expected(b.seq.wrapping_add(1));
        self.advance(b.next, Some(b.len));
    }

    fn set_expected(&mut self, next: u64) {
        self.expected_seq = Some(next);
        if !self.deferring {
            self.bus.own().u64(SLOT_NEXT_SEQ).store(next, Ordering::Relaxed);
        }
    }

    fn advance(&mut self, next: u64, msg_len: Option<usize>) {
        let prev = self.cursor;
        self.cursor = next;
        if let Some(len) = msg_len {
            self.messages = self.messages.wrapping_add(1);
            self.bytes = self.bytes.wrapping_add(len as u64);
        }
        if !self.deferring {
            self.publish_progress(prev, msg_len.is_some());
        }
    }

    /// Publishes our progress since the cursor was at `prev`: the cursor and
    /// the counters in our slot and, in block mode, the hold (Release, after
    /// the reads it covers), waking parked publishers when the cursor crossed
    /// a checkpoint.
    fn publish_progress(&mut self, prev: u64, counters: bool) {
        let next = self.cursor;
        let region = &self.bus.region;
        let own = self.bus.own();
        own.u64(SLOT_CURSOR).store(next, Ordering::Relaxed);
        if counters {
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
                // We moved on: whatever stall a publisher recorded is over.
                if own.u64(SLOT_BLOCKING_SINCE).load(Ordering::Relaxed) != 0 {
                    own.u64(SLOT_BLOCKING_SINCE).store(0, Ordering::Relaxed);
                }
                self.wake_parked_publishers();
            }
        }
    }

    /// Wakes publishers parked waiting for space, if any (block mode).
    fn wake_parked_publishers(&mut self) {
        let m = &self.bus.region.mem;
        // SYNC POINT with the SeqCst announcement (and the fence after it) of
        // a parking publisher: the handshake in wait.rs.
        fence(Ordering::SeqCst);
        match crate::wait::wake_if_waiting(m.u32(OFF_SPACE_FUTEX), m.u64(OFF_SPACE_MASK), m.u32(OFF_SPACE_WAITERS)) {
            // Accounted as parked, yet nobody woken, 64 times in a row: look
            // for a publisher killed while parked.
            Some(0) => {
                self.empty_wakes += 1;
                if self.empty_wakes >= 64 {
                    self.empty_wakes = 0;
                    self.bus.region.reap_dead_parked(self.bus.slot);
                }
            }
            Some(_) => self.empty_wakes = 0,
            None => {}
        }
    }

    /// After an overrun: jump to the oldest intact frame and remember to report the loss.
    fn resync(&mut self) {
        let (t, _) = self.region().tail();
        let new = self.oldest_frame(t);
        self.lag_pending = true;
        self.advance(new, None);
    }
}

/// Waiting through the process's waiter thread (crate::notify): for futures
/// and event loops that must not block a thread. (Not in the loom
/// models, which have no waiter thread.)
#[cfg(not(loom))]
impl Consumer {
    /// Whether the frame at the cursor can be read now (or the wait must end
    /// for another reason: overrun, evicted, bus removed), as the blocking
    /// wait checks it.
    fn data_ready(&self) -> bool {
        let region = &self.bus.region;
        let pos = self.cursor;
        !pos.is_multiple_of(FRAME_ALIGN)
            || region.frame(pos).stamp().load(Ordering::Acquire) == pos
            || (self.validating(pos) && self.overrun(pos))
            || self.evicted()
            || region.mem.u32(OFF_REMOVED).load(Ordering::Relaxed) != 0
    }

    /// Arms this handle with the process's waiter thread (started on first
    /// use): `waker` is woken (or, with `None`, the handle's eventfd from
    /// [`Consumer::event_fd`] becomes readable) when a message may be ready.
    /// Returns `true` when one may be ready now: nothing was armed, read
    /// again. Call it after a read returned `Poll::Empty`.
    ///
    /// It announces the handle to publishers as a parked subscriber does,
    /// then re-checks, so no wake-up is lost. While a publisher's claim is
    /// outstanding at the cursor the arm lasts at most 20 ms, and arming
    /// again runs the look-around of the blocking wait (finishing a dead
    /// publisher's claim, abandoning one stalled past the unblock timeout).
    /// An arm fires once; the handle stays announced until it is read
    /// from and armed again, or [`Consumer::disarm`]ed, or dropped.
    pub fn arm(&mut self, waker: Option<&std::task::Waker>) -> bool {
        if self.data_ready() {
            self.disarm();
            return true;
        }
        let mut armed = match self.armed.take() {
            Some(a) => a,
            None => crate::notify::Armed::new(),
        };
        let pos = self.cursor;
        let outstanding = self.bus.region.tail().0 != pos;
        let now = Instant::now();
        if outstanding {
            if armed.last_look.is_some_and(|t| now.duration_since(t) >= crate::config::PARK_SLICE) {
                let since = match self.stall {
                    Some((p, t)) if p == pos => t,
                    _ => {
                        self.stall = Some((pos, now));
                        now
                    }
                };
                self.bus.region.unblock_at(self.bus.slot, pos, now.duration_since(since) >= self.unblock);
                armed.last_look = Some(now);
            } else if armed.last_look.is_none() {
                armed.last_look = Some(now);
            }
        } else {
            armed.last_look = None;
        }
        let deadline = outstanding.then(|| now + crate::config::PARK_SLICE);
        let ready = armed.arm(&self.parking(), waker, deadline, || self.data_ready());
        self.armed = Some(armed);
        ready
    }

    /// Withdraws an arm: the waiter thread forgets this handle and the bus's
    /// waiter accounting no longer counts it (no bit or count left behind).
    pub fn disarm(&mut self) {
        if let Some(mut a) = self.armed.take() {
            a.disarm(&self.parking());
            self.armed = Some(a);
        }
    }

    /// This handle's eventfd (created on first use, closed with the
    /// handle): readable once an [`Consumer::arm`] with `None` fires. See
    /// [`Consumer::arm`] for the re-arm rule.
    pub fn event_fd(&mut self) -> Result<std::os::fd::RawFd> {
        let armed = self.armed.get_or_insert_with(crate::notify::Armed::new);
        let region = &self.bus.region;
        armed.event_fd().map_err(|e| crate::error::Error::io(&region.bus, &region.path, "create an eventfd for", e))
    }
}

#[cfg(not(loom))]
impl Drop for Consumer {
    fn drop(&mut self) {
        // Before the bus field (and its mapping) is dropped.
        self.disarm();
    }
}
