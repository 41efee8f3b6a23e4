//! The publishing side of the ring protocol: announce, claim, write, commit.
//!
//! A claim advances the shared 128-bit tail `(position, sequence)` with one
//! compare-and-swap, so every message gets its place in the byte stream and
//! its global sequence number atomically: all subscribers see one total order,
//! and a lagging subscriber learns exactly how many messages it lost from the
//! sequence numbers alone. Before the CAS the publisher announces the claim in
//! its peer slot (`hold`, `hold_end`, frame start, sequence number, under a
//! seqlock in the hold flags), so that other publishers never lap a frame
//! still being written, and a peer that waits on it can finish it as
//! abandoned if this process dies or is stopped before committing it.
//!
//! Every header a publisher writes (its frame, its padding) is written at
//! commit with one 16-byte compare-and-swap that succeeds only over an
//! unwritten header: a peer that abandoned the claim meanwhile wins instead,
//! and `commit` reports [`ClaimError::Abandoned`]. An abandoned claim's bytes
//! are quarantined (every later claim skips them, in every lap) until its
//! owner returns from `commit` or dies, so a stopped publisher that resumes
//! writes nowhere that matters.

use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::bus::Bus;
use crate::config::{Overflow, PeerKind, WaitStrategy, DEFAULT_UNBLOCK_TIMEOUT};
use crate::error::{Error, Result};
use crate::layout::*;
use crate::region::Region;
use crate::ring::{at_or_before, distance, Placement};
use crate::sync::{fence, Instant, Ordering};
use crate::wait::{Parking, Waited};

/// Why a message could not be claimed.
#[derive(Debug)]
pub enum ClaimError {
    /// The payload is larger than the bus's `max_message`.
    TooLarge {
        /// Payload length.
        len: usize,
        /// The bus's limit.
        max: usize,
    },
    /// No space before the deadline (block mode: a subscriber is a lap behind).
    Full,
    /// The bus file is damaged (or was removed).
    Bus(Error),
    /// The claim was abandoned by a peer that waited on it longer than its
    /// unblock timeout (this process was stopped or too slow between claim
    /// and commit): the message was not published; subscribers count its
    /// sequence number as abandoned.
    Abandoned {
        /// The sequence number the claim had taken.
        seq: u64,
    },
    /// A claim of this publisher is still open: commit it (or cancel it with
    /// `commit(claim, true)`) first.
    Pending,
    /// A signal interrupted the wait (only with `set_interruptible(true)`).
    Interrupted,
}

/// A claimed, not yet committed frame: a linear token (neither `Copy` nor
/// `Clone`) consumed by [`Producer::commit`]. A producer has at most one open
/// claim; a second `try_claim` is refused until it is committed.
///
/// A claim cannot be committed twice:
/// ```compile_fail
/// # fn f(p: &mut shmbus_core::Producer) {
/// let c = p.try_claim(8).unwrap();
/// let again = c;
/// p.commit(c, false).unwrap();
/// # }
/// ```
#[derive(Debug, PartialEq, Eq)]
pub struct Claim {
    frame_start: u64,
    seq: u64,
    len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClaimInfo {
    frame_start: u64,
    /// Bytes of the frame (of the whole batch, for a batch claim).
    frame_len: u32,
    len: u32,
    seq: u64,
    /// Messages in the claim (a batch claim when more than one: their
    /// lengths are in `batch_lens`).
    count: u32,
    /// The frame header's first 16 bytes as they were right after the claim:
    /// the commit replaces exactly this value, so it fails if a peer
    /// abandoned the claim (or, after a quarantine, reused a header) meanwhile.
    before: u128,
}

impl Claim {
    /// Payload length.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The message's global sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// A peer that has held this publisher back (see [`Producer::blocked_by`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    /// Its peer slot.
    pub slot: u32,
    /// Its process id.
    pub pid: u32,
    /// A subscriber (block mode: it has not read far enough) or a publisher
    /// (its claim is not committed).
    pub kind: PeerKind,
    /// How many bytes it is behind the tail.
    pub behind: u64,
    /// How long this publisher has been waiting on it.
    pub waited: Duration,
}

/// How long a publisher waits on the same peer before it tells who (and
/// `shmbus pub` says so on stderr).
pub const BLOCKED_REPORT_AFTER: Duration = Duration::from_secs(1);

/// The raw publisher over a bus handle.
#[derive(Debug)]
pub struct Producer {
    /// The waiter-thread registration for space (async sends); disarmed in
    /// `drop`, before the bus (and its mapping) goes.
    #[cfg(not(loom))]
    armed: Option<crate::notify::Armed>,
    bus: Bus,
    /// Claims may end at or before this position (cached; see `scan_limit`).
    limit: u64,
    limit_valid: bool,
    epoch: u64,
    overwrite: bool,
    wait: WaitStrategy,
    unblock: Duration,
    interruptible: bool,
    /// The tail as last seen (the first CAS of a claim expects it).
    guess: Option<u128>,
    messages: u64,
    bytes: u64,
    /// Announcements made (bits 8.. of the hold flags; even when complete).
    version: u32,
    /// The claim count last stored in our slot (stored again only on a change).
    claim_count: u32,
    /// The payload lengths of the batch being claimed (`send_batch`).
    batch_lens: Vec<u32>,
    /// Abandoned claims of other publishers whose bytes nobody may write.
    quarantine: Vec<(u64, u64)>,
    /// The open claim, if any: published as abandoned if we are dropped first.
    inflight: Option<ClaimInfo>,
    blocked: Option<Blocker>,
    /// Wake calls in a row that found nobody parked.
    empty_wakes: u32,
    /// The peer our waits for space have been held back by, and since when
    /// (kept across waits with deadlines, cleared by a successful claim).
    gate: Option<(u32, Instant)>,
}

impl Producer {
    /// Wraps a bus handle attached as a publisher.
    pub fn new(bus: Bus, wait: WaitStrategy) -> Producer {
        assert_eq!(bus.kind, PeerKind::Publisher, "Producer::new needs a publisher handle");
        let overwrite = bus.region.info.overflow == Overflow::Overwrite;
        Producer {
            #[cfg(not(loom))]
            armed: None,
            bus,
            limit: 0,
            limit_valid: false,
            epoch: u64::MAX,
            overwrite,
            wait,
            unblock: DEFAULT_UNBLOCK_TIMEOUT,
            interruptible: false,
            guess: None,
            messages: 0,
            bytes: 0,
            version: 0,
            claim_count: u32::MAX,
            batch_lens: Vec::new(),
            quarantine: Vec::new(),
            inflight: None,
            blocked: None,
            empty_wakes: 0,
            gate: None,
        }
    }

    /// The bus handle.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Sets the wait strategy.
    pub fn set_wait_strategy(&mut self, wait: WaitStrategy) {
        self.wait = wait;
    }

    /// The wait strategy.
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.wait
    }

    /// How long to wait on another publisher's unfinished claim before
    /// abandoning it (see [`crate::BusConfig::unblock_timeout`]).
    pub fn set_unblock_timeout(&mut self, timeout: Duration) {
        self.unblock = timeout.max(Duration::from_millis(1));
    }

    /// With `true`, a signal that interrupts a park ends the wait with
    /// [`ClaimError::Interrupted`] (for programs that handle SIGINT/SIGTERM
    /// themselves and must not wait for their next deadline).
    pub fn set_interruptible(&mut self, on: bool) {
        self.interruptible = on;
    }

    /// Largest payload.
    pub fn max_message(&self) -> usize {
        self.bus.region.info.max_message as usize
    }

    /// The peer that has held this publisher back for at least
    /// [`BLOCKED_REPORT_AFTER`] in its current wait for space, if any (a
    /// stopped or slow subscriber in block mode, or a publisher whose claim
    /// is not committed). Cleared when a claim succeeds.
    pub fn blocked_by(&self) -> Option<&Blocker> {
        self.blocked.as_ref()
    }

    fn region(&self) -> &Region {
        &self.bus.region
    }

    /// Publishes `bytes`, waiting for space until `deadline` (`None`: for
    /// ever; a past deadline: do not wait).
    pub fn send(&mut self, bytes: &[u8], deadline: Option<Instant>) -> Result<u64, ClaimError> {
        // The first attempt inline; `claim` waits (and reports why not).
        let claim = match self.try_claim_span(bytes.len(), 1) {
            Some(c) => c,
            None => self.claim(bytes.len(), deadline)?,
        };
        let off = self.region().data_off(claim.frame_start) + FRAME_HEADER;
        self.region().mem.copy_in(off, bytes);
        self.commit(claim, false)
    }

    /// Publishes the longest prefix of `msgs` that fits in one claim (frames
    /// taking together at most `max_message` + 32 bytes, and at most 65,536
    /// messages; always at least the first message) with one claim, one
    /// commit and at most one wake call, waiting for space until `deadline`.
    /// The messages get consecutive sequence numbers, in order. Returns how
    /// many were published (0 only for an empty slice).
    ///
    /// A batch commits as a whole. If a peer abandons the claim (this
    /// process was stopped, or too slow, between claim and commit for longer
    /// than its unblock timeout), none of it was published:
    /// [`ClaimError::Abandoned`] names its first message, and every message
    /// of the batch counts as abandoned at every subscriber.
    pub fn send_batch<M: AsRef<[u8]>>(&mut self, msgs: &[M], deadline: Option<Instant>) -> Result<usize, ClaimError> {
        let Some(first) = msgs.first() else { return Ok(0) };
        let max = self.max_message();
        // The batch is claimed as one frame of `total - FRAME_HEADER` bytes.
        let max_total = (max + FRAME_HEADER) as u64;
        self.batch_lens.clear();
        let mut total = 0u64;
        for m in msgs.iter().take(1 << 16) {
            let len = m.as_ref().len();
            if len > max {
                if self.batch_lens.is_empty() {
                    return Err(ClaimError::TooLarge { len, max });
                }
                break;
            }
            let frame = self.bus.region.geo.frame_len(len);
            // The first message always goes (alone, as `send` would send it:
            // a frame of a message near max_message may be longer than a
            // batch may be).
            if total + frame > max_total && !self.batch_lens.is_empty() {
                break;
            }
            total += frame;
            self.batch_lens.push(len as u32);
        }
        let n = self.batch_lens.len();
        if n == 1 {
            return self.send(first.as_ref(), deadline).map(|_| 1);
        }
        let claim = self.claim_span(total as usize - FRAME_HEADER, n as u32, deadline)?;
        self.copy_batch(claim.frame_start, &msgs[..n]);
        self.commit(claim, false).map(|_| n)
    }

    /// Copies the payloads of a batch into its frames, from `frame_start`.
    #[inline]
    fn copy_batch<M: AsRef<[u8]>>(&self, frame_start: u64, msgs: &[M]) {
        let region = &self.bus.region;
        let mut pos = frame_start;
        for m in msgs {
            let bytes = m.as_ref();
            region.mem.copy_in(region.data_off(pos) + FRAME_HEADER, bytes);
            pos = pos.wrapping_add(region.geo.frame_len(bytes.len()));
        }
    }

    /// Writes the headers of frames `1..end` of the batch claimed at
    /// `frame_start` (lengths in `batch_lens`, first sequence number `seq`)
    /// with plain stores, as its commit does before the first frame's
    /// compare-and-swap publishes them. Returns the payload bytes of frames
    /// `0..end`.
    #[inline]
    fn write_later_headers(&self, frame_start: u64, seq: u64, end: usize) -> u64 {
        let region = &self.bus.region;
        let meta = u64::from(self.bus.slot << 16) << 32;
        let len0 = self.batch_lens.first().copied().unwrap_or(0);
        let mut pos = frame_start.wrapping_add(region.geo.frame_len(len0 as usize));
        let mut bytes = u64::from(len0);
        let later = self.batch_lens.get(1..end.min(self.batch_lens.len())).unwrap_or(&[]);
        for (i, &len) in later.iter().enumerate().map(|(i, l)| (i + 1, l)) {
            let f = region.frame(pos);
            f.seq().store(seq.wrapping_add(i as u64), Ordering::Relaxed);
            f.u64(FRAME_LEN).store(u64::from(len) | meta, Ordering::Relaxed);
            f.stamp().store(pos, Ordering::Relaxed);
            bytes += u64::from(len);
            pos = pos.wrapping_add(region.geo.frame_len(len as usize));
        }
        bytes
    }

    /// Test support for crashes in the middle of a batch commit: claims
    /// every message of `msgs` as one batch (they must fit in one), writes
    /// every payload and the headers of frames 1..=k as the commit does
    /// before its final compare-and-swap, and returns the claim still open
    /// (finish it with `commit`).
    #[doc(hidden)]
    pub fn claim_batch_stopping(&mut self, msgs: &[&[u8]], k: usize) -> Result<Claim, ClaimError> {
        let geo = self.bus.region.geo;
        self.batch_lens = msgs.iter().map(|m| m.len() as u32).collect();
        let total: u64 = msgs.iter().map(|m| geo.frame_len(m.len())).sum();
        if msgs.len() < 2 || total > (self.max_message() + FRAME_HEADER) as u64 {
            return Err(ClaimError::TooLarge { len: total as usize, max: self.max_message() });
        }
        let claim = self.claim_span(total as usize - FRAME_HEADER, msgs.len() as u32, None)?;
        self.copy_batch(claim.frame_start, msgs);
        self.write_later_headers(claim.frame_start, claim.seq, k + 1);
        Ok(claim)
    }

    /// Claims a frame for `len` payload bytes, waiting for space until `deadline`.
    pub fn claim(&mut self, len: usize, deadline: Option<Instant>) -> Result<Claim, ClaimError> {
        self.claim_span(len, 1, deadline)
    }

    /// `claim` of `count` messages taking the bytes of one frame of `len`
    /// payload bytes (a batch: `batch_lens` holds their lengths).
    fn claim_span(&mut self, len: usize, count: u32, deadline: Option<Instant>) -> Result<Claim, ClaimError> {
        if len > self.max_message() {
            return Err(ClaimError::TooLarge { len, max: self.max_message() });
        }
        if self.inflight.is_some() {
            return Err(ClaimError::Pending);
        }
        loop {
            if let Some(c) = self.try_claim_span(len, count) {
                return Ok(c);
            }
            let region = &self.bus.region;
            let tail = region.tail().0;
            if !tail.is_multiple_of(FRAME_ALIGN) {
                let what = format!("its tail position {tail:#x} is not frame-aligned (the header was damaged)");
                return Err(ClaimError::Bus(region.corrupt(what)));
            }
            if region.mem.u32(OFF_REMOVED).load(Ordering::Relaxed) != 0 {
                return Err(ClaimError::Bus(region.removed()));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(ClaimError::Full);
            }
            if self.wait_for_space(Some(len), None, deadline) == Waited::Interrupted {
                return Err(ClaimError::Interrupted);
            }
        }
    }

    fn parking(&self) -> Parking<'_> {
        let m = &self.bus.region.mem;
        Parking {
            futex: m.u32(OFF_SPACE_FUTEX),
            mask: m.u64(OFF_SPACE_MASK),
            count: m.u32(OFF_SPACE_WAITERS),
            parked: self.bus.own().u32(SLOT_PARKED),
            bit: PARKED_SPACE,
            slot: self.bus.slot,
        }
    }

    /// Parks until a claim of `len` bytes would fit (or, with `end`, until
    /// the claim ending there is within the limit), or the deadline. While
    /// waiting, it reaps a dead peer that holds it back, abandons another
    /// publisher's claim that stays unfinished longer than the unblock
    /// timeout, records how long a subscriber has held it back, and evicts
    /// that subscriber when the bus has an eviction policy.
    fn wait_for_space(&mut self, len: Option<usize>, end: Option<u64>, deadline: Option<Instant>) -> Waited {
        let region = &self.bus.region;
        let (slot, overwrite) = (self.bus.slot, self.overwrite);
        // Hysteresis: once the ring is full, wait until an eighth of it is free
        // (or the deadline), not just room for one frame. Resuming for every
        // single freed frame makes the publisher rescan the subscribers' slots
        // after each message, pulling the cache line each subscriber writes per
        // message away from it and slowing the very reader it waits for. A
        // final `try_claim` in `claim` still takes whatever room there is at
        // the deadline.
        let slack = if end.is_some() { 0 } else { region.geo.capacity / 8 };
        let unblock = self.unblock;
        let quarantine = std::cell::RefCell::new(std::mem::take(&mut self.quarantine));
        let gate: Cell<Option<(u32, Instant)>> = Cell::new(self.gate);
        let blocked: std::cell::RefCell<Option<Blocker>> = std::cell::RefCell::new(None);
        let waited = crate::wait::wait_until(
            self.wait,
            32,
            deadline,
            &self.parking(),
            self.interruptible,
            || {
                let tail = region.tail().0;
                let mut q = quarantine.borrow_mut();
                let (limit, _) = scan_limit(region, slot, overwrite, tail, &mut q);
                let need = match (end, len) {
                    (Some(e), _) => e,
                    (None, Some(len)) => region.geo.place_avoiding(tail, len, &q).claim_end.wrapping_add(slack),
                    (None, None) => tail,
                };
                at_or_before(need, limit) || region.mem.u32(OFF_REMOVED).load(Ordering::Relaxed) != 0
            },
            || true,
            || {
                let mut g = gate.get();
                if let Some(b) = look_around(region, slot, overwrite, unblock, &mut quarantine.borrow_mut(), &mut g) {
                    *blocked.borrow_mut() = Some(b);
                }
                gate.set(g);
            },
        );
        self.quarantine = quarantine.into_inner();
        self.gate = gate.get();
        if let Some(b) = blocked.into_inner() {
            self.blocked = Some(b);
        }
        self.limit_valid = false;
        waited
    }

    /// Rescans the peer table: the claim limit and the quarantined ranges.
    fn rescan(&mut self, tail: u64) -> Option<u32> {
        let (limit, gating) = scan_limit(&self.bus.region, self.bus.slot, self.overwrite, tail, &mut self.quarantine);
        self.limit = limit;
        self.limit_valid = true;
        gating
    }

    /// Announces a claim in our slot (a seqlock: bits 8.. of the hold flags
    /// count announcements and are odd while one is written).
    #[inline]
    fn announce(&mut self, p: &Placement, seq: u64, count: u32) {
        let own = self.bus.own();
        let flags = own.u32(SLOT_HOLD_FLAGS);
        self.version = self.version.wrapping_add(1) & 0x00ff_ffff;
        // Release (a plain store on x86): whoever reads this value sees our
        // last commit (see `Region::claim_is_real`).
        flags.store(self.version << 8, Ordering::Release);
        // SYNC POINT with the fence(Acquire) of a reader in `Region::announced`.
        fence(Ordering::Release);
        if count != self.claim_count {
            self.claim_count = count;
            own.u32(SLOT_CLAIM_COUNT).store(count, Ordering::Relaxed);
        }
        own.u64(SLOT_HOLD_END).store(p.claim_end, Ordering::Relaxed);
        own.u64(SLOT_CLAIM_FRAME).store(p.frame_start, Ordering::Relaxed);
        own.u64(SLOT_CLAIM_SEQ).store(seq, Ordering::Relaxed);
        own.u64(SLOT_HOLD).store(p.claim_start, Ordering::Relaxed);
        self.version = self.version.wrapping_add(1) & 0x00ff_ffff;
        // SYNC POINT with the Acquire load of the flags in `Region::announced` and `scan_limit`.
        flags.store((self.version << 8) | HOLD_ACTIVE, Ordering::Release);
    }

    /// One attempt to claim without waiting for space. `None` when there is
    /// no room, or a claim of ours is still open.
    pub fn try_claim(&mut self, len: usize) -> Option<Claim> {
        self.try_claim_span(len, 1)
    }

    /// `try_claim` of `count` messages in the bytes of one frame of `len`
    /// payload bytes (see `claim_span`).
    #[inline(always)]
    fn try_claim_span(&mut self, len: usize, count: u32) -> Option<Claim> {
        if self.inflight.is_some() || len > self.max_message() {
            return None;
        }
        // SeqCst (a plain load on x86): pairs with the SeqCst epoch increment of
        // an attaching subscriber; see `Consumer::place`.
        let epoch = self.bus.region.mem.u64(OFF_ATTACH_EPOCH).load(Ordering::SeqCst);
        if epoch != self.epoch {
            self.epoch = epoch;
            self.limit_valid = false;
        }
        // The first CAS expects the tail as we last saw it (our own last claim
        // when we are the only publisher): no load on the fast path. A stale
        // guess only costs a failed CAS, which returns the current value.
        let mut cur = match self.guess {
            Some(g) => g,
            // SYNC POINT with the CAS (AcqRel) of other publishers below.
            None => self.bus.region.mem.u128(OFF_TAIL).load(Ordering::SeqCst),
        };
        let cap = self.bus.region.geo.capacity;
        // Bounded: each failed CAS means another publisher made progress.
        for _ in 0..1_000_000 {
            let (pos, seq) = (cur as u64, (cur >> 64) as u64);
            if pos % FRAME_ALIGN != 0 {
                // A damaged tail (a frame must start on the alignment): `claim` reports it.
                self.guess = None;
                return None;
            }
            let mut p = self.bus.region.geo.place_avoiding(pos, len, &self.quarantine);
            if !self.limit_valid || !at_or_before(p.claim_end, self.limit) {
                // SYNC POINT with the CAS (AcqRel) of other publishers: the tail
                // we scan against was read with Acquire, so every claim that
                // started before it has its announcement visible to the scan.
                let fresh = self.bus.region.mem.u128(OFF_TAIL).load(Ordering::SeqCst);
                if self.bus.region.mem.u32(OFF_REMOVED).load(Ordering::Relaxed) != 0 {
                    return None; // `claim` reports it
                }
                self.epoch = self.bus.region.mem.u64(OFF_ATTACH_EPOCH).load(Ordering::SeqCst);
                self.rescan(fresh as u64);
                if fresh != cur {
                    cur = fresh;
                    continue;
                }
                p = self.bus.region.geo.place_avoiding(pos, len, &self.quarantine);
                if !at_or_before(p.claim_end, self.limit) || distance(pos, p.claim_end) > cap {
                    self.guess = Some(cur);
                    return None;
                }
            }
            // Announce the claim before making it (published by the CAS's
            // Release half: whoever sees the tail past `pos` sees this).
            self.announce(&p, seq, count);
            // Snapshot the headers this claim will write (its frame and its
            // padding parts) *before* the CAS: nobody writes those bytes
            // between now and the CAS (they lie a lap behind every
            // unfinished claim and outside every quarantined range), and
            // after it only a peer abandoning this claim (or, once it is
            // quarantined, a claim skipping it) does. Each header is then
            // written with a CAS from its snapshot, which fails if that
            // happened, however long this process was stopped in between.
            let region = &self.bus.region;
            let snap = |pos: u64| {
                let f = region.frame(pos);
                u128::from(f.stamp().load(Ordering::Relaxed))
                    | (u128::from(f.u64(FRAME_LEN).load(Ordering::Relaxed)) << 64)
            };
            // (A batch claim commits its other frames with plain stores
            // before this one: see `finish`.)
            let before = snap(p.frame_start);
            let mut pads = [(0u64, 0u64, 0u128); 4];
            let mut npads = 0;
            if p.frame_start != p.claim_start {
                for (pos, n) in region.geo.padding_parts(p.claim_start, p.frame_start) {
                    if npads < pads.len() {
                        pads[npads] = (pos, n, snap(pos));
                    }
                    npads += 1;
                }
            }
            let next = u128::from(p.claim_end) | (u128::from(seq.wrapping_add(u64::from(count))) << 64);
            // SYNC POINT with the Acquire loads of the tail by other publishers
            // (`scan_limit` callers), reapers and overwrite-mode readers.
            // SeqCst (the same `lock cmpxchg16b` on x86): every tail update sits in
            // the single total order with the attach handshake of `Consumer::place`.
            match self.bus.region.mem.u128(OFF_TAIL).compare_exchange(cur, next, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => {}
                Err(actual) => {
                    cur = actual;
                    continue;
                }
            }
            self.guess = Some(next);
            // SYNC POINT with the fence(Acquire) an overwrite-mode (or validating)
            // reader issues after copying a frame, before re-reading the tail: a
            // reader that copied any byte we write below (a lap after the frame
            // it expected) then sees this claim and discards its copy. The CAS's
            // own Release half orders only what comes before it; without this
            // fence the payload stores may become visible before the new tail
            // (allowed by the language model and by Arm), and a torn frame
            // would be delivered (the loom model in tests/reliability_loom.rs
            // finds it). A compiler barrier only on x86.
            fence(Ordering::Release);
            let own = self.bus.own();
            own.u32(SLOT_HOLD_FLAGS).store((self.version << 8) | HOLD_ACTIVE | HOLD_CLAIMED, Ordering::Release);
            // SYNC POINT with the SeqCst epoch increment (after a hold store) of
            // an attaching subscriber, an abandoner or an evictor: if it came
            // after our limit was computed, our claim may reach bytes its hold
            // protects. Rescan, and wait before writing anything if so.
            let epoch = self.bus.region.mem.u64(OFF_ATTACH_EPOCH).load(Ordering::SeqCst);
            if epoch != self.epoch {
                self.epoch = epoch;
                let tail = self.bus.region.tail().0;
                self.rescan(tail);
                while !at_or_before(p.claim_end, self.limit) {
                    self.wait_for_space(None, Some(p.claim_end), None);
                    let tail = self.bus.region.tail().0;
                    self.epoch = self.bus.region.mem.u64(OFF_ATTACH_EPOCH).load(Ordering::SeqCst);
                    self.rescan(tail);
                }
            }
            let region = &self.bus.region;
            let meta = u32::from(FRAME_PAD) | (self.bus.slot << 16);
            for &(pos, n, was) in &pads[..npads.min(pads.len())] {
                let new = u128::from(pos) | (u128::from(n as u32) << 64) | (u128::from(meta) << 96);
                let _ = region.frame(pos).head().compare_exchange(was, new, Ordering::AcqRel, Ordering::Relaxed);
            }
            if npads > pads.len() {
                // More padding parts than snapshots (never with sane sizes).
                for (pos, n) in region.geo.padding_parts(p.claim_start, p.frame_start).skip(pads.len()) {
                    region.write_header_guarded(pos, n as u32, meta);
                }
            }
            if region.geo.claim_crosses_boundary(&p) {
                for (b, first) in region.geo.hints_for(&p) {
                    // SYNC POINT with the Acquire load of a hint in `Consumer::oldest_frame`.
                    region.mem.u64(OFF_HINTS + region.geo.hint_index(b) * 8).store(first, Ordering::Release);
                }
            }
            let info = ClaimInfo {
                frame_start: p.frame_start,
                frame_len: p.frame_len as u32,
                len: len as u32,
                seq,
                count,
                before,
            };
            self.inflight = Some(info);
            self.blocked = None;
            self.gate = None;
            return Some(Claim { frame_start: p.frame_start, seq, len });
        }
        self.guess = None;
        None
    }

    /// The payload bytes of a claim, to be written before `commit`.
    pub fn payload_ptr(&self, claim: &Claim) -> *mut u8 {
        let off = self.region().data_off(claim.frame_start) + FRAME_HEADER;
        self.region().mem.ptr(off, claim.len)
    }

    /// Commits a claim: writes its padding and its frame header (the stamp,
    /// its own position, with Release), drops the hold and wakes parked
    /// subscribers if any. With `as_padding` the frame is published as an
    /// abandoned claim (a cancelled loan: subscribers count its sequence
    /// number as abandoned). Returns the sequence number, or
    /// [`ClaimError::Abandoned`] when a peer abandoned the claim first, or
    /// [`ClaimError::Pending`] for a claim that is not this producer's open one.
    pub fn commit(&mut self, claim: Claim, as_padding: bool) -> Result<u64, ClaimError> {
        match self.inflight {
            Some(info) if info.seq == claim.seq && info.frame_start == claim.frame_start => {
                self.finish(info, as_padding)
            }
            _ => Err(ClaimError::Pending),
        }
    }

    #[inline(always)]
    fn finish(&mut self, info: ClaimInfo, as_padding: bool) -> Result<u64, ClaimError> {
        self.inflight = None;
        let region = &self.bus.region;
        let slot = self.bus.slot;
        let own = region.slot(slot);
        let p = info;
        let f = region.frame(p.frame_start);
        f.seq().store(info.seq, Ordering::Relaxed);
        // (published, bytes, the first sequence number not published)
        let (won, published, bytes, stopped_at) = if info.count > 1 && !as_padding {
            // A batch commits as a whole: every frame after the first gets its
            // header with plain stores, then the first frame's header is
            // written with the compare-and-swap from its snapshot, whose
            // Release half publishes them all. No reader reaches a later frame
            // of the batch without passing the first (frames are read in
            // order, and hints inside a batch name its end); a peer that
            // abandons the claim does so at the first frame, over the whole
            // batch, and whatever we wrote after it lies inside that padding.
            let len0 = self.batch_lens.first().copied().unwrap_or(0);
            let bytes = self.write_later_headers(p.frame_start, info.seq, self.batch_lens.len());
            let new = u128::from(p.frame_start) | (u128::from(len0) << 64) | (u128::from(slot << 16) << 96);
            // SYNC POINT with the Acquire load of the stamp in `Consumer::read_frame`:
            // a reader that sees the first frame committed sees every frame of the batch.
            let won = f.head().compare_exchange(info.before, new, Ordering::AcqRel, Ordering::Relaxed).is_ok();
            (won, if won { info.count } else { 0 }, if won { bytes } else { 0 }, info.seq)
        } else {
            let (len, meta) = if as_padding {
                // The sequence numbers the claim took, all abandoned.
                f.u32(FRAME_COUNT).store(info.count, Ordering::Relaxed);
                (p.frame_len, u32::from(FRAME_PAD | FRAME_ABANDONED) | (slot << 16))
            } else {
                (info.len, slot << 16)
            };
            // SYNC POINT with the Acquire load of the stamp in `Consumer::read_frame`:
            // a subscriber that sees its position here sees the payload and header.
            let new = u128::from(p.frame_start) | (u128::from(len) << 64) | (u128::from(meta) << 96);
            let won = f.head().compare_exchange(info.before, new, Ordering::AcqRel, Ordering::Relaxed).is_ok();
            let n = u32::from(won && !as_padding);
            (won, n, if n == 1 { u64::from(info.len) } else { 0 }, info.seq)
        };
        // After the stamps: a reaper that sees the hold gone sees them.
        own.u32(SLOT_HOLD_FLAGS).store(self.version << 8, Ordering::Release);
        if published > 0 {
            self.messages = self.messages.wrapping_add(u64::from(published));
            self.bytes = self.bytes.wrapping_add(bytes);
            own.u64(SLOT_MESSAGES).store(self.messages, Ordering::Relaxed);
            own.u64(SLOT_BYTES).store(self.bytes, Ordering::Relaxed);
        }
        if !won {
            // Abandoned by a peer while we were stopped (or too slow): we will
            // write nothing more, so our bytes need no quarantine any longer.
            own.u32(SLOT_REVOKED).store(0, Ordering::Release);
            region.bump_epoch();
            region.wake_everyone();
            return Err(ClaimError::Abandoned { seq: stopped_at });
        }
        // SYNC POINT with the SeqCst announcement of a peer about to park (the
        // handshake in wait.rs).
        fence(Ordering::SeqCst);
        let m = &region.mem;
        let woke = crate::wait::wake_if_waiting(m.u32(OFF_DATA_FUTEX), m.u64(OFF_DATA_MASK), m.u32(OFF_DATA_WAITERS));
        // Publishers parked behind this one's in-flight claim (same cache line).
        crate::wait::wake_if_waiting(m.u32(OFF_SPACE_FUTEX), m.u64(OFF_SPACE_MASK), m.u32(OFF_SPACE_WAITERS));
        if woke == Some(0) {
            // Accounted as parked, yet nobody was woken: usually a peer between
            // announcing itself and its futex_wait; after 64 such calls in a
            // row, look for a peer killed while parked.
            self.empty_wakes += 1;
            if self.empty_wakes >= 64 {
                self.empty_wakes = 0;
                self.bus.region.reap_dead_parked(self.bus.slot);
            }
        } else if woke.is_some() {
            self.empty_wakes = 0;
        }
        Ok(info.seq)
    }

    /// Cancels the open claim whose token was lost (dropped without commit):
    /// it is published as abandoned. No-op without an open claim.
    pub fn cancel_open_claim(&mut self) {
        if let Some(info) = self.inflight {
            let _ = self.finish(info, true);
        }
    }

    /// msync the mapping.
    pub fn flush(&self) -> Result<()> {
        self.bus.flush()
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // A claim that was never committed would stop every subscriber at it
        // (our slot is about to be freed, so nobody could repair it): publish
        // it as abandoned.
        self.cancel_open_claim();
        #[cfg(not(loom))]
        self.disarm_space();
    }
}

/// Waiting for space through the process's waiter thread (crate::notify),
/// for futures that must not block a thread. (Not in the loom models, which
/// have no waiter thread.)
#[cfg(not(loom))]
impl Producer {
    /// Arms this handle with the waiter thread for space: announces it to
    /// subscribers as a publisher parked for space does and wakes `waker`
    /// when the space futex word changes, or after 20 ms at the latest
    /// (an async send re-tries then, and looks after the peer holding it
    /// back with [`Producer::look_around`]). The caller re-tries its claim
    /// after arming (the re-check of the handshake in wait.rs) and disarms
    /// when it succeeds.
    pub fn arm_space(&mut self, waker: &std::task::Waker) {
        let mut armed = match self.armed.take() {
            Some(a) => a,
            None => crate::notify::Armed::new(),
        };
        let deadline = Instant::now() + crate::config::PARK_SLICE;
        armed.arm(&self.parking(), Some(waker), Some(deadline), || false);
        self.armed = Some(armed);
    }

    /// Withdraws an arm for space: no bit or count is left in the bus's
    /// waiter accounting.
    pub fn disarm_space(&mut self) {
        if let Some(mut a) = self.armed.take() {
            a.disarm(&self.parking());
            self.armed = Some(a);
        }
    }

    /// Looks after the peer holding our claims back, as a blocking wait for
    /// space does every 20 ms (the same function): an async send calls it
    /// about as often while it waits. The gating peer and since when it has
    /// held us back are kept in the handle until a claim succeeds, so the
    /// unblock timeout and the bus's `evict_after` count from when that peer
    /// first held us back, across polls and cancelled sends; a peer holding
    /// us back for [`BLOCKED_REPORT_AFTER`] is named by [`Producer::blocked_by`].
    pub fn look_around(&mut self) {
        let (region, slot) = (&self.bus.region, self.bus.slot);
        if let Some(b) = look_around(region, slot, self.overwrite, self.unblock, &mut self.quarantine, &mut self.gate) {
            self.blocked = Some(b);
        }
        // The quarantine changed and the peer table may have: rescan before claiming.
        self.limit_valid = false;
    }

    /// Reaps the peer holding our claims back if it is dead (its slot's
    /// lock is free), so that its hold stops counting. Returns whether it
    /// did. (Kept for callers of the earlier API: [`Producer::look_around`]
    /// does this and everything else a waiting publisher looks after.)
    pub fn reap_gating(&mut self) -> bool {
        let tail = self.bus.region.tail().0;
        match self.rescan(tail) {
            Some(g) => self.bus.region.try_reap(g, self.bus.slot),
            None => false,
        }
    }
}

/// One look around by a publisher waiting for space, shared by the blocking
/// wait (`Producer::wait_for_space`) and async sends
/// ([`Producer::look_around`]): finds the peer holding claims back (the one
/// furthest behind the tail; `quarantine` is refreshed on the way) and
///
/// - reaps it if it is dead (its slot's lock is free);
/// - keeps in `gate` that peer and since when it has held us back (reset
///   when another peer or nobody holds us back);
/// - for a subscriber, records since when in its `blocking_since` word
///   (what `inspect` shows as `holding_back_ns`);
/// - abandons a publisher's claim unfinished for `unblock`, and evicts a
///   subscriber after the bus's `evict_after` (when the bus has one).
///
/// Returns the peer when it has held us back for [`BLOCKED_REPORT_AFTER`].
fn look_around(
    region: &Region,
    own: u32,
    overwrite: bool,
    unblock: Duration,
    quarantine: &mut Vec<(u64, u64)>,
    gate: &mut Option<(u32, Instant)>,
) -> Option<Blocker> {
    let tail = region.tail().0;
    let (_, g) = scan_limit(region, own, overwrite, tail, quarantine);
    let Some(g) = g else {
        *gate = None;
        return None;
    };
    if region.try_reap(g, own) {
        *gate = None;
        return None;
    }
    let now = Instant::now();
    let since = match *gate {
        Some((s, t)) if s == g => t,
        _ => {
            *gate = Some((g, now));
            now
        }
    };
    let waited = now.duration_since(since);
    let gs = region.slot(g);
    let kind = match gs.u32(SLOT_STATE).load(Ordering::Acquire) {
        STATE_PUBLISHER => PeerKind::Publisher,
        _ => PeerKind::Subscriber,
    };
    if kind == PeerKind::Subscriber {
        let _ = gs.u64(SLOT_BLOCKING_SINCE).compare_exchange(
            0,
            wall_ns().saturating_sub(waited.as_nanos() as u64).max(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    let blocker = (waited >= BLOCKED_REPORT_AFTER).then(|| {
        let behind = distance(gs.u64(SLOT_HOLD).load(Ordering::Relaxed), tail);
        let pid = gs.u32(SLOT_PID).load(Ordering::Relaxed);
        Blocker { slot: g, pid, kind, behind, waited }
    });
    let evict_after = match region.info.evict_after_ms {
        0 => None,
        ms => Some(Duration::from_millis(u64::from(ms))),
    };
    match kind {
        PeerKind::Publisher if waited >= unblock => {
            region.unblock_publisher(g, own);
        }
        PeerKind::Subscriber
            if evict_after.is_some_and(|e| waited >= e)
                && gs
                    .u32(SLOT_REVOKED)
                    .compare_exchange(0, REVOKED_EVICTED, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok() =>
        {
            region.bump_epoch();
            region.wake_everyone();
        }
        _ => {}
    }
    blocker
}

fn wall_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Computes how far the tail may advance: a full lap past the peer furthest
/// behind `tail` among those holding publishers back (live, not evicted
/// subscribers in block mode, and every publisher's unfinished claim), and
/// collects into `quarantine` the abandoned claims whose owners may still
/// write into them. Returns the limit and the slot furthest behind, if any
/// holds back.
pub(crate) fn scan_limit(
    region: &Region,
    own: u32,
    overwrite: bool,
    tail: u64,
    quarantine: &mut Vec<(u64, u64)>,
) -> (u64, Option<u32>) {
    let cap = region.geo.capacity;
    let mut behind_max = 0u64;
    let mut gating = None;
    quarantine.clear();
    for slot in 0..region.scan_len() {
        if slot == own {
            continue;
        }
        let s = region.slot(slot);
        // SYNC POINT with the Release store of `state` in `alloc_slot`.
        let state = s.u32(SLOT_STATE).load(Ordering::Acquire);
        let hold = match state {
            STATE_PUBLISHER => {
                let flags = s.u32(SLOT_HOLD_FLAGS).load(Ordering::Acquire);
                if flags & HOLD_ACTIVE == 0 {
                    continue;
                }
                let revoked = s.u32(SLOT_REVOKED).load(Ordering::Acquire);
                if revoked & REVOKED_CLAIM != 0 && revoked >> 8 == flags >> 8 {
                    if let Some(a) = region.announced(slot) {
                        if a.flags >> 8 == revoked >> 8 && distance(a.start, a.end) < cap && quarantine.len() < 1024 {
                            quarantine.push((a.start, a.end));
                        }
                    }
                    continue;
                }
                let hold = s.u64(SLOT_HOLD).load(Ordering::Acquire);
                // An announcement whose compare-and-swap failed (the process
                // stopped before announcing again) is stale once another
                // publisher finished the claim at that position, or the tail
                // is more than a lap past it (an unfinished claim would have
                // held everyone there); a recorded claim always holds.
                if flags & HOLD_CLAIMED == 0 && (distance(hold, tail) > cap || region.claimed_by_other(slot, hold)) {
                    continue;
                }
                hold
            }
            STATE_SUBSCRIBER if !overwrite => {
                if s.u32(SLOT_HOLD_FLAGS).load(Ordering::Acquire) & HOLD_ACTIVE == 0
                    || s.u32(SLOT_REVOKED).load(Ordering::Acquire) & REVOKED_EVICTED != 0
                {
                    continue;
                }
                // SYNC POINT with the Release store of a subscriber's hold after it has
                // read the bytes before it: we may overwrite them once we see it.
                s.u64(SLOT_HOLD).load(Ordering::Acquire)
            }
            _ => continue,
        };
        let behind = distance(hold, tail);
        // A hold ahead of the tail holds nothing back yet (or was written by a
        // damaged peer). A hold more than a lap behind is honoured: only a
        // damaged or hostile peer writes one, and it then shows as the peer
        // that blocks (and, for a subscriber, can be evicted).
        if behind >= 1 << 63 {
            continue;
        }
        if gating.is_none() || behind > behind_max {
            behind_max = behind;
            gating = Some(slot);
        }
    }
    (tail.wrapping_sub(behind_max).wrapping_add(cap), gating)
}

impl From<Error> for ClaimError {
    fn from(e: Error) -> Self {
        ClaimError::Bus(e)
    }
}
