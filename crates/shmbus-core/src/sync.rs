//! The one door through which the ring protocol reaches atomics, fences,
//! futexes, clocks and spin hints, so that a model checker can replace them
//! (tokio's `loom/mod.rs`, crossbeam's `primitive`).
//!
//! In a normal build every item here is a plain re-export: `AtomicU32`,
//! `AtomicU64`, `fence` and `Ordering` are `std::sync::atomic`'s,
//! `AtomicU128` is `crate::atomic128`'s (portable-atomic, with a direct
//! `cmpxchg16b` for the compare-and-swap), `Instant` is `std::time`'s,
//! `spin_loop` is `std::hint`'s and `os::futex_*` are the shared-futex calls
//! of `crate::os`. Nothing is wrapped, so the shipped code compiles to exactly
//! the instructions it compiled to before this module existed.
//!
//! Under `--cfg loom` (the models in `tests/loom_real.rs`) the same names are
//! loom's, or emulations built on loom's, chosen so that loom explores the
//! weak-memory behaviours of the real `Producer` and `Consumer`:
//! - `AtomicU64` and `fence` are loom's. `Ordering` is std's (loom uses it too).
//! - `AtomicU32` is loom's for a word the layout declares as two 32-bit
//!   fields ([`HeapWords`]), and otherwise a view of one half of a loom
//!   `AtomicU64` (a frame's `len` and `meta` lie in bytes that were payload a
//!   lap earlier): its load is the word's load; its stores and
//!   read-modify-writes are compare-and-swap loops on the whole word, i.e.
//!   read-modify-writes of the word. That is stronger than hardware for a plain
//!   store (an RMW always reads the latest value and continues release
//!   sequences); it is documented where it matters in docs/reliability.md.
//! - `AtomicU128` (loom has none) is a loom `AtomicU64` holding the index of
//!   the current value in an append-only log of values: a load reads the
//!   index with the requested ordering, so loom explores stale 128-bit values
//!   exactly as it does 64-bit ones, and never a torn one (the hardware's
//!   `cmpxchg16b` is single-copy atomic). `compare_exchange` re-reads the
//!   latest index with a read-modify-write before it reports a failure, as a
//!   strong compare-and-swap must; like x86's locked `cmpxchg16b`, a failure
//!   is then a (value-preserving) write of the word.
//! - Loom treats `SeqCst` loads, stores and read-modify-writes as `AcqRel`
//!   (only `fence(SeqCst)` is modelled fully): a finding that needs the
//!   single total order of `SeqCst` accesses can be a false alarm; the report
//!   of each model says whether its counterexample does.
//! - `os::futex_wait` / `os::futex_wake_all` follow the kernel: one bucket
//!   lock (a loom `Mutex`) serialises the waiter's compare-and-sleep with the
//!   waker's wake; all futex words share the bucket (a hash collision, so a
//!   wake may be spurious, which callers tolerate). A park is *unbounded* in
//!   the model (its timeout is ignored), so a lost wake-up is a deadlock that
//!   loom reports instead of a 20 ms delay.
//! - `Instant` is a per-thread fake clock that advances one millisecond at
//!   every `now()`, so spin-then-park and park slices end deterministically.
//! - `spin_loop` is `loom::hint::spin_loop` (it yields to the other threads).

#[cfg(not(loom))]
pub(crate) use crate::atomic128::AtomicU128;
pub(crate) use std::sync::atomic::Ordering;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64};
#[cfg(not(loom))]
pub(crate) use std::{hint::spin_loop, time::Instant};

#[cfg(loom)]
pub(crate) use loom::hint::spin_loop;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU64};
#[cfg(loom)]
pub(crate) use model::{AtomicU128, AtomicU32, Head, HeapWords, Instant};

/// The futex calls of the wait protocol: `crate::os`'s shared futexes, or the
/// kernel-like emulation under loom.
pub(crate) mod os {
    #[cfg(loom)]
    pub(crate) use super::model::{futex_wait, futex_wake_all};
    #[cfg(not(loom))]
    pub(crate) use crate::os::{futex_wait, futex_wake_all};
}

#[cfg(loom)]
mod model {
    use std::cell::Cell;
    use std::ops::{Add, Sub};
    use std::sync::atomic::Ordering::{self, Relaxed};
    use std::time::Duration;

    use loom::sync::atomic::{AtomicU32 as LoomU32, AtomicU64};

    /// A 32-bit atomic: loom's own, or one half of a loom 64-bit word.
    #[derive(Debug)]
    pub struct AtomicU32(U32);

    #[derive(Debug)]
    enum U32 {
        Own(LoomU32),
        /// Bits `shift..shift + 32` of the word (little-endian byte order).
        Half {
            word: *const AtomicU64,
            shift: u32,
        },
    }

    // SAFETY: `word` points into the `HeapWords` that owns this value (a boxed
    // slice that never moves), and loom's atomics are Sync.
    unsafe impl Send for AtomicU32 {}
    // SAFETY: as above.
    unsafe impl Sync for AtomicU32 {}

    impl AtomicU32 {
        /// A free-standing 32-bit atomic.
        pub fn new(v: u32) -> AtomicU32 {
            AtomicU32(U32::Own(LoomU32::new(v)))
        }

        fn half(&self) -> Option<(&AtomicU64, u32)> {
            match &self.0 {
                U32::Own(_) => None,
                // SAFETY: see the `Send` impl: the word outlives this view.
                U32::Half { word, shift } => Some((unsafe { &**word }, *shift)),
            }
        }

        /// Read-modify-write of the half as a compare-and-swap loop on the
        /// word; returns the previous value of the half.
        fn update(w: &AtomicU64, shift: u32, order: Ordering, f: impl Fn(u32) -> u32) -> u32 {
            let mask = 0xffff_ffffu64 << shift;
            let mut cur = w.load(Relaxed);
            loop {
                let old = (cur >> shift) as u32;
                let new = (cur & !mask) | (u64::from(f(old)) << shift);
                match w.compare_exchange(cur, new, order, Relaxed) {
                    Ok(_) => return old,
                    Err(actual) => cur = actual,
                }
            }
        }

        pub fn load(&self, order: Ordering) -> u32 {
            match (&self.0, self.half()) {
                (U32::Own(a), _) => a.load(order),
                (_, Some((w, shift))) => (w.load(order) >> shift) as u32,
                _ => unreachable!(),
            }
        }

        pub fn store(&self, v: u32, order: Ordering) {
            match (&self.0, self.half()) {
                (U32::Own(a), _) => a.store(v, order),
                (_, Some((w, shift))) => {
                    Self::update(w, shift, order, |_| v);
                }
                _ => unreachable!(),
            }
        }

        pub fn fetch_add(&self, v: u32, order: Ordering) -> u32 {
            match (&self.0, self.half()) {
                (U32::Own(a), _) => a.fetch_add(v, order),
                (_, Some((w, shift))) => Self::update(w, shift, order, |x| x.wrapping_add(v)),
                _ => unreachable!(),
            }
        }

        pub fn fetch_sub(&self, v: u32, order: Ordering) -> u32 {
            match (&self.0, self.half()) {
                (U32::Own(a), _) => a.fetch_sub(v, order),
                (_, Some((w, shift))) => Self::update(w, shift, order, |x| x.wrapping_sub(v)),
                _ => unreachable!(),
            }
        }

        pub fn swap(&self, v: u32, order: Ordering) -> u32 {
            match (&self.0, self.half()) {
                (U32::Own(a), _) => a.swap(v, order),
                (_, Some((w, shift))) => Self::update(w, shift, order, |_| v),
                _ => unreachable!(),
            }
        }

        pub fn fetch_or(&self, v: u32, order: Ordering) -> u32 {
            match (&self.0, self.half()) {
                (U32::Own(a), _) => a.fetch_or(v, order),
                (_, Some((w, shift))) => Self::update(w, shift, order, |x| x | v),
                _ => unreachable!(),
            }
        }

        pub fn fetch_and(&self, v: u32, order: Ordering) -> u32 {
            match (&self.0, self.half()) {
                (U32::Own(a), _) => a.fetch_and(v, order),
                (_, Some((w, shift))) => Self::update(w, shift, order, |x| x & v),
                _ => unreachable!(),
            }
        }

        pub fn fetch_update(
            &self,
            set: Ordering,
            fetch: Ordering,
            f: impl FnMut(u32) -> Option<u32>,
        ) -> Result<u32, u32> {
            match (&self.0, self.half()) {
                (U32::Own(a), _) => a.fetch_update(set, fetch, f),
                (_, Some(_)) => {
                    let mut f = f;
                    let mut cur = self.load(fetch);
                    loop {
                        let Some(new) = f(cur) else { return Err(cur) };
                        match self.compare_exchange(cur, new, set, fetch) {
                            Ok(v) => return Ok(v),
                            Err(actual) => cur = actual,
                        }
                    }
                }
                _ => unreachable!(),
            }
        }

        pub fn fetch_max(&self, v: u32, order: Ordering) -> u32 {
            match (&self.0, self.half()) {
                (U32::Own(a), _) => a.fetch_max(v, order),
                (_, Some((w, shift))) => Self::update(w, shift, order, |x| x.max(v)),
                _ => unreachable!(),
            }
        }

        pub fn compare_exchange(
            &self,
            current: u32,
            new: u32,
            success: Ordering,
            failure: Ordering,
        ) -> Result<u32, u32> {
            match (&self.0, self.half()) {
                (U32::Own(a), _) => a.compare_exchange(current, new, success, failure),
                (_, Some((w, shift))) => {
                    let mask = 0xffff_ffffu64 << shift;
                    let mut cur = w.load(failure);
                    loop {
                        let old = (cur >> shift) as u32;
                        let target = if old == current { (cur & !mask) | (u64::from(new) << shift) } else { cur };
                        // A mismatch is confirmed against the latest value (a
                        // strong compare-and-swap never fails on a stale read).
                        let order = if old == current { success } else { failure };
                        match w.compare_exchange(cur, target, order, failure) {
                            Ok(_) if old == current => return Ok(old),
                            Ok(_) => return Err(old),
                            Err(actual) => cur = actual,
                        }
                    }
                }
                _ => unreachable!(),
            }
        }
    }

    /// A 128-bit atomic over a loom `AtomicU64` holding the index of the
    /// current value in an append-only log (see the module documentation).
    #[derive(Debug)]
    pub struct AtomicU128 {
        index: AtomicU64,
        log: std::sync::Mutex<Vec<u128>>,
    }

    impl AtomicU128 {
        pub fn new(v: u128) -> AtomicU128 {
            AtomicU128 { index: AtomicU64::new(0), log: std::sync::Mutex::new(vec![v]) }
        }

        fn value(&self, i: u64) -> u128 {
            self.log.lock().unwrap()[i as usize]
        }

        fn push(&self, v: u128) -> u64 {
            let mut log = self.log.lock().unwrap();
            log.push(v);
            (log.len() - 1) as u64
        }

        pub fn load(&self, order: Ordering) -> u128 {
            self.value(self.index.load(order))
        }

        pub fn store(&self, v: u128, order: Ordering) {
            let i = self.push(v);
            self.index.store(i, order);
        }

        pub fn compare_exchange(
            &self,
            current: u128,
            new: u128,
            success: Ordering,
            failure: Ordering,
        ) -> Result<u128, u128> {
            let mut i = self.index.load(failure);
            loop {
                let v = self.value(i);
                if v != current {
                    // Confirm the mismatch against the latest value.
                    match self.index.compare_exchange(i, i, failure, failure) {
                        Ok(_) => return Err(v),
                        Err(actual) => {
                            i = actual;
                            continue;
                        }
                    }
                }
                let j = self.push(new);
                match self.index.compare_exchange(i, j, success, failure) {
                    Ok(_) => return Ok(current),
                    Err(actual) => i = actual,
                }
            }
        }
    }

    /// One 8-byte word of a heap region under loom.
    struct Word {
        /// The word as one 64-bit atomic (absent for a word of two 32-bit fields).
        whole: Option<AtomicU64>,
        /// Its two halves: views of `whole`, or two loom 32-bit atomics.
        halves: [AtomicU32; 2],
    }

    /// The bytes of a heap region under loom: one loom atomic per 8-byte
    /// word (two 32-bit ones for a word the layout declares as two 32-bit
    /// fields, so that, say, `data_waiters` and `space_waiters` are
    /// independent atomics as they are in hardware), plus the 128-bit atomics
    /// at the offsets given. A 64-bit access to a split word, or a copy over
    /// a 128-bit atomic's bytes, is outside the model.
    pub struct HeapWords {
        words: Box<[Word]>,
        wide: Vec<(usize, AtomicU128)>,
        heads: loom::sync::Mutex<()>,
    }

    /// A frame header's first 16 bytes (stamp; len and meta) as one atomic:
    /// the hardware's 16-byte compare-and-swap over the two 64-bit words the
    /// rest of the code reads separately. Emulated with one lock for every
    /// header (stronger than hardware: these operations are serialised among
    /// themselves); a write stores the second word, then the stamp with
    /// Release, so a reader that loads the stamp (Acquire) without the lock
    /// sees the rest.
    pub struct Head<'a> {
        stamp: &'a AtomicU64,
        rest: &'a AtomicU64,
        lock: &'a loom::sync::Mutex<()>,
    }

    impl Head<'_> {
        pub fn load(&self, _order: Ordering) -> u128 {
            let _g = self.lock.lock().unwrap();
            u128::from(self.stamp.load(Ordering::Acquire)) | (u128::from(self.rest.load(Ordering::Acquire)) << 64)
        }
        pub fn compare_exchange(
            &self,
            current: u128,
            new: u128,
            _success: Ordering,
            _failure: Ordering,
        ) -> Result<u128, u128> {
            let _g = self.lock.lock().unwrap();
            let v =
                u128::from(self.stamp.load(Ordering::Acquire)) | (u128::from(self.rest.load(Ordering::Acquire)) << 64);
            if v != current {
                return Err(v);
            }
            self.rest.store((new >> 64) as u64, Relaxed);
            self.stamp.store(new as u64, Ordering::Release);
            Ok(v)
        }
    }

    impl HeapWords {
        /// `len` zero bytes; `split(off)` says whether the word at `off` holds
        /// two 32-bit fields; `wide` lists the offsets of 128-bit atomics.
        pub fn new(len: usize, split: impl Fn(usize) -> bool, wide: &[usize]) -> HeapWords {
            let dangling = || AtomicU32(U32::Half { word: std::ptr::null(), shift: 0 });
            let mut words: Box<[Word]> = (0..len.div_ceil(8))
                .map(|w| {
                    if split(w * 8) {
                        Word { whole: None, halves: [AtomicU32::new(0), AtomicU32::new(0)] }
                    } else {
                        Word { whole: Some(AtomicU64::new(0)), halves: [dangling(), dangling()] }
                    }
                })
                .collect();
            for word in words.iter_mut() {
                if let Some(whole) = &word.whole {
                    let p: *const AtomicU64 = whole;
                    word.halves =
                        [AtomicU32(U32::Half { word: p, shift: 0 }), AtomicU32(U32::Half { word: p, shift: 32 })];
                }
            }
            let wide = wide.iter().map(|&off| (off, AtomicU128::new(0))).collect();
            HeapWords { words, wide, heads: loom::sync::Mutex::new(()) }
        }

        /// The frame header at `off` as one 16-byte atomic (see [`Head`]).
        pub fn head(&self, off: usize) -> Head<'_> {
            Head { stamp: self.u64(off), rest: self.u64(off + 8), lock: &self.heads }
        }

        pub fn u32(&self, off: usize) -> &AtomicU32 {
            &self.words[off / 8].halves[(off % 8) / 4]
        }

        pub fn u64(&self, off: usize) -> &AtomicU64 {
            self.words[off / 8]
                .whole
                .as_ref()
                .unwrap_or_else(|| panic!("loom model: 64-bit access at {off} to a word declared as two 32-bit fields"))
        }

        pub fn u128(&self, off: usize) -> &AtomicU128 {
            match self.wide.iter().find(|(o, _)| *o == off) {
                Some((_, a)) => a,
                None => panic!("loom model: no 128-bit atomic declared at {off}"),
            }
        }

        fn check_not_wide(&self, off: usize, len: usize) {
            for (o, _) in &self.wide {
                assert!(off + len <= *o || *o + 16 <= off, "loom model: a copy over the 128-bit atomic at {o}");
            }
        }

        /// Copies out word by word with Relaxed loads (a concurrent writer
        /// makes the copy torn, never undefined).
        pub fn copy_out(&self, off: usize, dst: &mut [u8]) {
            self.check_not_wide(off, dst.len());
            let mut done = 0;
            while done < dst.len() {
                let at = off + done;
                let (w, in_word) = (at / 8, at % 8);
                let n = (8 - in_word).min(dst.len() - done);
                let word = &self.words[w];
                let bytes = match &word.whole {
                    Some(a) => a.load(Relaxed).to_le_bytes(),
                    None => {
                        let lo = if in_word < 4 { word.halves[0].load(Relaxed) } else { 0 };
                        let hi = if in_word + n > 4 { word.halves[1].load(Relaxed) } else { 0 };
                        (u64::from(lo) | u64::from(hi) << 32).to_le_bytes()
                    }
                };
                dst[done..done + n].copy_from_slice(&bytes[in_word..in_word + n]);
                done += n;
            }
        }

        /// Copies in word by word with Relaxed stores (a partial word is
        /// merged with a compare-and-swap loop).
        pub fn copy_in(&self, off: usize, src: &[u8]) {
            self.check_not_wide(off, src.len());
            let mut done = 0;
            while done < src.len() {
                let at = off + done;
                let (w, in_word) = (at / 8, at % 8);
                let n = (8 - in_word).min(src.len() - done);
                let mut bytes = [0u8; 8];
                bytes[in_word..in_word + n].copy_from_slice(&src[done..done + n]);
                let v = u64::from_le_bytes(bytes);
                let mask = if n == 8 { u64::MAX } else { ((1u64 << (8 * n)) - 1) << (8 * in_word) };
                let word = &self.words[w];
                match &word.whole {
                    Some(a) if mask == u64::MAX => a.store(v, Relaxed),
                    Some(a) => {
                        let mut cur = a.load(Relaxed);
                        while let Err(actual) = a.compare_exchange(cur, (cur & !mask) | v, Relaxed, Relaxed) {
                            cur = actual;
                        }
                    }
                    None => {
                        for (h, half) in word.halves.iter().enumerate() {
                            let m = (mask >> (32 * h)) as u32;
                            let hv = (v >> (32 * h)) as u32;
                            if m == u32::MAX {
                                half.store(hv, Relaxed);
                            } else if m != 0 {
                                let mut cur = half.load(Relaxed);
                                while let Err(actual) = half.compare_exchange(cur, (cur & !m) | hv, Relaxed, Relaxed) {
                                    cur = actual;
                                }
                            }
                        }
                    }
                }
                done += n;
            }
        }
    }

    /// A fake clock: per thread, advancing one millisecond at every `now()`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct Instant(Duration);

    loom::thread_local! {
        static CLOCK: Cell<Duration> = Cell::new(Duration::ZERO);
    }

    impl Instant {
        pub fn now() -> Instant {
            CLOCK.with(|c| {
                let t = c.get() + Duration::from_millis(1);
                c.set(t);
                Instant(t)
            })
        }
        pub fn duration_since(&self, earlier: Instant) -> Duration {
            self.0.saturating_sub(earlier.0)
        }
        pub fn elapsed(&self) -> Duration {
            Instant::now().duration_since(*self)
        }
    }

    impl Add<Duration> for Instant {
        type Output = Instant;
        fn add(self, d: Duration) -> Instant {
            Instant(self.0 + d)
        }
    }

    impl Sub<Instant> for Instant {
        type Output = Duration;
        fn sub(self, other: Instant) -> Duration {
            self.duration_since(other)
        }
    }

    struct Bucket {
        lock: loom::sync::Mutex<()>,
        sleepers: loom::sync::Condvar,
    }

    loom::lazy_static! {
        static ref BUCKET: Bucket = Bucket { lock: loom::sync::Mutex::new(()), sleepers: loom::sync::Condvar::new() };
    }

    /// `FUTEX_WAIT`: under the bucket lock, sleep if the word still holds
    /// `expected`. A park of a waiter nobody owes anything (no timeout, or
    /// the hour-long one) is unbounded, so a lost wake-up is a deadlock; a
    /// bounded park (20 ms slices while a claim is outstanding, so the waiter
    /// can look for dead or stopped peers) returns at once after a yield, as
    /// if it had timed out, so the look-around runs in the model too.
    pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
        if timeout.is_some_and(|t| t < Duration::from_secs(60)) {
            loom::thread::yield_now();
            return false;
        }
        let guard = BUCKET.lock.lock().unwrap();
        if word.load(Relaxed) == expected {
            drop(BUCKET.sleepers.wait(guard).unwrap());
        }
        false
    }

    /// `FUTEX_WAKE` of everyone: under the bucket lock, wake every sleeper.
    /// Returns 1: the model does not count sleepers (a 0 would make
    /// publishers look for dead parked peers, which heap regions have none of).
    pub fn futex_wake_all(_word: &AtomicU32) -> i32 {
        let _guard = BUCKET.lock.lock().unwrap();
        BUCKET.sleepers.notify_all();
        1
    }
}
