//! The publishing side of the ring protocol: claim, write, commit.
//!
//! A claim advances the shared 128-bit tail `(position, sequence)` with one
//! compare-and-swap, so every message gets its place in the byte stream and
//! its global sequence number atomically: all subscribers see one total order,
//! and a lagging subscriber learns exactly how many messages it lost from the
//! sequence numbers alone. Before the CAS the publisher announces the claim in
//! its peer slot (`hold`, `hold_end`), so that other publishers never lap a
//! frame still being written and a reader can repair the frame if this
//! process dies before committing it.

use crate::bus::Bus;
use crate::config::{Overflow, PeerKind, WaitStrategy};
use crate::error::{Error, Result};
use crate::layout::*;
use crate::region::Region;
use crate::ring::{at_or_before, distance, Placement};
use crate::sync::{fence, Instant, Ordering};

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
    /// The bus file is damaged.
    Bus(Error),
}

/// A claimed, not yet committed frame.
#[derive(Debug, Clone, Copy)]
pub struct Claim {
    placement: Placement,
    seq: u64,
    len: usize,
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

/// The raw publisher over a bus handle.
#[derive(Debug)]
pub struct Producer {
    bus: Bus,
    /// Claims may end at or before this position (cached; see `scan_limit`).
    limit: u64,
    limit_valid: bool,
    epoch: u64,
    overwrite: bool,
    wait: WaitStrategy,
    /// The tail as last seen (the first CAS of a claim expects it).
    guess: Option<u128>,
    messages: u64,
    bytes: u64,
    /// A claim not committed yet: published as padding if we are dropped first.
    inflight: Option<Claim>,
}

impl Producer {
    /// Wraps a bus handle attached as a publisher.
    pub fn new(bus: Bus, wait: WaitStrategy) -> Producer {
        assert_eq!(bus.kind, PeerKind::Publisher, "Producer::new needs a publisher handle");
        let overwrite = bus.region.info.overflow == Overflow::Overwrite;
        Producer {
            bus,
            limit: 0,
            limit_valid: false,
            epoch: u64::MAX,
            overwrite,
            wait,
            guess: None,
            messages: 0,
            bytes: 0,
            inflight: None,
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

    /// Largest payload.
    pub fn max_message(&self) -> usize {
        self.bus.region.info.max_message as usize
    }

    fn region(&self) -> &Region {
        &self.bus.region
    }

    /// Publishes `bytes`, waiting for space until `deadline` (`None`: for
    /// ever; a past deadline: do not wait).
    pub fn send(&mut self, bytes: &[u8], deadline: Option<Instant>) -> Result<u64, ClaimError> {
        let claim = self.claim(bytes.len(), deadline)?;
        let off = self.region().data_off(claim.placement.frame_start) + FRAME_HEADER;
        self.region().mem.copy_in(off, bytes);
        let seq = claim.seq;
        self.commit(claim, false);
        Ok(seq)
    }

    /// Claims a frame for `len` payload bytes, waiting for space until `deadline`.
    pub fn claim(&mut self, len: usize, deadline: Option<Instant>) -> Result<Claim, ClaimError> {
        if len > self.max_message() {
            return Err(ClaimError::TooLarge { len, max: self.max_message() });
        }
        loop {
            if let Some(c) = self.try_claim(len) {
                return Ok(c);
            }
            let tail = self.bus.region.tail().0;
            if !tail.is_multiple_of(FRAME_ALIGN) {
                let what = format!("its tail position {tail:#x} is not frame-aligned (the header was damaged)");
                return Err(ClaimError::Bus(self.bus.region.corrupt(what)));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(ClaimError::Full);
            }
            self.wait_for_space(len, deadline);
        }
    }

    /// Parks until a claim of `len` bytes would fit (or the deadline), reaping
    /// a dead peer that holds us back.
    fn wait_for_space(&mut self, len: usize, deadline: Option<Instant>) {
        let region = &self.bus.region;
        let (slot, overwrite) = (self.bus.slot, self.overwrite);
        // Hysteresis: once the ring is full, wait until an eighth of it is free
        // (or the deadline), not just room for one frame. Resuming for every
        // single freed frame makes the publisher rescan the subscribers' slots
        // after each message, pulling the cache line each subscriber writes per
        // message away from it and slowing the very reader it waits for. A
        // final `try_claim` in `claim` still takes whatever room there is at
        // the deadline.
        let slack = region.geo.capacity / 8;
        crate::wait::wait_until(
            self.wait,
            32,
            deadline,
            region.mem.u32(OFF_SPACE_FUTEX),
            region.mem.u32(OFF_SPACE_WAITERS),
            || {
                let tail = region.tail().0;
                let need = region.geo.place(tail, len).claim_end.wrapping_add(slack);
                at_or_before(need, scan_limit(region, slot, overwrite, tail).0)
            },
            || {
                let tail = region.tail().0;
                if let (_, Some(gating)) = scan_limit(region, slot, overwrite, tail) {
                    region.try_reap(gating, slot);
                }
            },
        );
        self.limit_valid = false;
    }

    /// One attempt to claim without waiting for space.
    pub fn try_claim(&mut self, len: usize) -> Option<Claim> {
        let region = &self.bus.region;
        let own = region.slot(self.bus.slot);
        let tail_word = region.mem.u128(OFF_TAIL);
        // SeqCst (a plain load on x86): pairs with the SeqCst epoch increment of
        // an attaching subscriber; see `Consumer::place`.
        let epoch = region.mem.u64(OFF_ATTACH_EPOCH).load(Ordering::SeqCst);
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
            None => tail_word.load(Ordering::SeqCst),
        };
        // Bounded: each failed CAS means another publisher made progress.
        for _ in 0..1_000_000 {
            let (pos, seq) = (cur as u64, (cur >> 64) as u64);
            if pos % FRAME_ALIGN != 0 {
                // A damaged tail (a frame must start on the alignment): `claim` reports it.
                self.guess = None;
                return None;
            }
            let p = region.geo.place(pos, len);
            if !self.limit_valid || !at_or_before(p.claim_end, self.limit) {
                // SYNC POINT with the CAS (AcqRel) of other publishers: the tail
                // we scan against was read with Acquire, so every claim that
                // started before it has its announcement visible to the scan.
                let fresh = tail_word.load(Ordering::SeqCst);
                self.limit = scan_limit(region, self.bus.slot, self.overwrite, fresh as u64).0;
                self.limit_valid = true;
                if fresh != cur {
                    cur = fresh;
                    continue;
                }
                if !at_or_before(p.claim_end, self.limit) {
                    self.guess = Some(cur);
                    return None;
                }
            }
            // Announce the claim before making it (published by the CAS's
            // Release half: whoever sees the tail past `pos` sees this).
            own.u64(SLOT_HOLD_END).store(p.claim_end, Ordering::Relaxed);
            own.u64(SLOT_HOLD).store(pos, Ordering::Relaxed);
            own.u32(SLOT_HOLD_FLAGS).store(HOLD_ACTIVE, Ordering::Relaxed);
            let next = u128::from(p.claim_end) | (u128::from(seq.wrapping_add(1)) << 64);
            // SYNC POINT with the Acquire loads of the tail by other publishers
            // (`scan_limit` callers), reapers and overwrite-mode readers.
            // SeqCst (the same `lock cmpxchg16b` on x86): every tail update sits in
            // the single total order with the attach handshake of `Consumer::place`.
            match tail_word.compare_exchange(cur, next, Ordering::SeqCst, Ordering::SeqCst) {
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
            own.u32(SLOT_HOLD_FLAGS).store(HOLD_ACTIVE | HOLD_CLAIMED, Ordering::Relaxed);
            if region.geo.claim_crosses_boundary(&p) {
                for (b, first) in region.geo.hints_for(&p) {
                    // SYNC POINT with the Acquire load of a hint in `Consumer::oldest_frame`.
                    region.mem.u64(OFF_HINTS + region.geo.hint_index(b) * 8).store(first, Ordering::Release);
                }
            }
            if p.padding() > 0 {
                region.write_padding(p.claim_start, p.padding(), self.bus.slot);
            }
            let claim = Claim { placement: p, seq, len };
            self.inflight = Some(claim);
            return Some(claim);
        }
        self.guess = None;
        None
    }

    /// The payload bytes of a claim, to be written before `commit`.
    pub fn payload_ptr(&self, claim: &Claim) -> *mut u8 {
        let off = self.region().data_off(claim.placement.frame_start) + FRAME_HEADER;
        self.region().mem.ptr(off, claim.len)
    }

    /// Commits a claim: stamps the frame with its own position (Release), then
    /// drops the hold and wakes parked subscribers if any. With `as_padding`
    /// the frame is published as padding (an abandoned loan).
    pub fn commit(&mut self, claim: Claim, as_padding: bool) {
        self.inflight = None;
        let region = &self.bus.region;
        let own = region.slot(self.bus.slot);
        let pos = claim.placement.frame_start;
        if as_padding {
            region.write_padding(pos, claim.placement.frame_len, self.bus.slot);
        } else {
            let f = region.frame(pos);
            f.len().store(claim.len as u32, Ordering::Relaxed);
            f.meta().store(self.bus.slot << 16, Ordering::Relaxed);
            f.seq().store(claim.seq, Ordering::Relaxed);
            // SYNC POINT with the Acquire load of the stamp in `Consumer::read_frame`:
            // a subscriber that sees its position here sees the payload and header.
            f.stamp().store(pos, Ordering::Release);
            self.messages = self.messages.wrapping_add(1);
            self.bytes = self.bytes.wrapping_add(claim.len as u64);
            own.u64(SLOT_MESSAGES).store(self.messages, Ordering::Relaxed);
            own.u64(SLOT_BYTES).store(self.bytes, Ordering::Relaxed);
        }
        // After the stamp: a reaper that sees the hold gone sees the stamp.
        own.u32(SLOT_HOLD_FLAGS).store(0, Ordering::Release);
        // SYNC POINT with the SeqCst increment of `data_waiters` / `space_waiters`
        // by a peer about to park (the handshake in wait.rs).
        fence(Ordering::SeqCst);
        let m = &region.mem;
        crate::wait::wake_if_waiting(m.u32(OFF_DATA_FUTEX), m.u32(OFF_DATA_WAITERS));
        // Publishers parked behind this one's in-flight claim (same cache line).
        crate::wait::wake_if_waiting(m.u32(OFF_SPACE_FUTEX), m.u32(OFF_SPACE_WAITERS));
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
        // it as padding.
        if let Some(c) = self.inflight.take() {
            self.commit(c, true);
        }
    }
}

/// Computes how far the tail may advance: a full lap past the peer furthest
/// behind `tail` among those holding publishers back (live subscribers in
/// block mode, and every publisher's in-flight claim). Returns the limit and
/// the slot furthest behind, if any holds back.
pub(crate) fn scan_limit(region: &Region, own: u32, overwrite: bool, tail: u64) -> (u64, Option<u32>) {
    let cap = region.geo.capacity;
    let mut behind_max = 0u64;
    let mut gating = None;
    for slot in 0..region.scan_len() {
        if slot == own {
            continue;
        }
        // SYNC POINT with the Release store of `state` in `alloc_slot`.
        let state = region.slot(slot).u32(SLOT_STATE).load(Ordering::Acquire);
        let holds = match state {
            STATE_PUBLISHER => true,
            STATE_SUBSCRIBER => !overwrite,
            _ => false,
        };
        if !holds || region.slot(slot).u32(SLOT_HOLD_FLAGS).load(Ordering::Acquire) & HOLD_ACTIVE == 0 {
            continue;
        }
        // SYNC POINT with the Release store of a subscriber's hold after it has
        // read the bytes before it: we may overwrite them once we see it.
        let hold = region.slot(slot).u64(SLOT_HOLD).load(Ordering::Acquire);
        let behind = distance(hold, tail);
        // A live peer never holds more than a lap behind the tail (publishers
        // cannot pass it by more), nor ahead of it: such a hold was written by
        // a damaged or hostile peer, and honouring it would block publishers
        // for ever. Ignore it.
        if behind > cap {
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
