//! Waiting for a condition on the shared memory: spin, then park on a shared
//! futex word, always in a loop that re-checks the condition. A park is
//! bounded (so a dead or stopped peer is found) while another peer owes the
//! waiter progress; a waiter that nobody owes anything parks until woken.
//!
//! The handshake with the waker (no lost wake-up):
//! ```text
//! waiter                              waker
//! v = futex.load()                    make condition true
//! mask.fetch_or(1 << slot) (SeqCst)   fence(SeqCst)
//! fence(SeqCst)                       if mask.load() != 0 || count.load() != 0:
//! if condition: return                    futex.fetch_add(1); futex_wake(all)
//! futex_wait(futex, v, slice)
//! ```
//! The two fences are ordered in the single SeqCst order. If the waker's
//! comes after the waiter's, it sees the waiter's increment and bumps the
//! futex word (so a `futex_wait` still expecting `v` returns at once); if it
//! comes before, the waiter's re-check sees the condition. The waiter's fence
//! is needed in the language model: a SeqCst read-modify-write followed by an
//! Acquire load of the condition is not ordered against the waker's fence
//! (the loom model in tests/reliability_loom.rs loses the wake-up without
//! it); on x86 the locked add already is a full barrier, so it costs little,
//! and only on the way to a futex_wait.

use std::time::Duration;

use crate::sync::{fence, os, spin_loop, AtomicU32, AtomicU64, Instant, Ordering};

use crate::config::{WaitStrategy, PARK_SLICE};

/// How long [`WaitStrategy::SpinThenPark`] spins before parking. Measured by
/// the clock, not by pause instructions, whose length varies tenfold between
/// CPUs (4096 pauses took 109 µs on this machine's AMD EPYC).
const SPIN_TIME: Duration = Duration::from_micros(20);

/// The longest park of a waiter that nobody owes anything (it is woken by a
/// publisher, or a signal, long before).
const LONG_PARK: Duration = Duration::from_secs(3600);

/// Where a peer parks and how wakers learn that it is there. Waiting is
/// accounted per peer: a peer in slot `i < 64` parks by setting bit `i` of
/// the header's `mask` (one atomic operation, undone exactly by whoever reaps
/// the slot if the peer dies while parked); a peer in a higher slot counts
/// itself in the header's `count` and marks its slot's `parked` word, which a
/// reaper uses to take it back out.
pub(crate) struct Parking<'a> {
    pub(crate) futex: &'a AtomicU32,
    pub(crate) mask: &'a AtomicU64,
    pub(crate) count: &'a AtomicU32,
    pub(crate) parked: &'a AtomicU32,
    pub(crate) bit: u32,
    pub(crate) slot: u32,
}

impl Parking<'_> {
    fn announce(&self) {
        if self.slot < 64 {
            self.mask.fetch_or(1 << self.slot, Ordering::SeqCst);
        } else {
            // Counted first, marked second: a peer that dies in between leaves
            // the count one too high (an extra wake syscall per message), never
            // too low (a lost wake-up).
            self.count.fetch_add(1, Ordering::SeqCst);
            self.parked.fetch_or(self.bit, Ordering::Relaxed);
        }
    }
    fn withdraw(&self) {
        if self.slot < 64 {
            self.mask.fetch_and(!(1 << self.slot), Ordering::Relaxed);
        } else {
            self.parked.fetch_and(!self.bit, Ordering::Relaxed);
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The outcome of a wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waited {
    /// The condition holds.
    Ready,
    /// The deadline passed first.
    Deadline,
    /// A signal interrupted the park (only reported when asked to).
    Interrupted,
}

/// Bumps the futex word and wakes every parked waiter; returns how many the
/// kernel woke.
pub(crate) fn wake(futex: &AtomicU32) -> i32 {
    // SYNC POINT with the load of the futex word by a waiter before it parks:
    // the bump makes a futex_wait that still expects the old value return.
    futex.fetch_add(1, Ordering::Release);
    os::futex_wake_all(futex)
}

/// Wakes waiters on `futex` if the header says any peer is parked there. The
/// caller has made its condition true and issued `fence(SeqCst)` just before.
/// Returns `Some(woken)` when it made the wake call.
///
/// The waker takes the bits of `mask` it wakes: a waiter is paid for once per
/// transition to waiting, not once per message. Without this, every message
/// published between a wake and the moment the woken peers run again (and
/// withdraw) costs another wake syscall: with four parked subscribers on two
/// CPUs that is most messages. Clearing before the bump keeps the handshake:
/// every waiter whose bit we clear read the futex word before announcing, so
/// the bump that follows makes its `futex_wait` return (or not start). Peers
/// in slots >= 64 are counted, not masked; their count is left to them.
#[inline]
pub(crate) fn wake_if_waiting(futex: &AtomicU32, mask: &AtomicU64, count: &AtomicU32) -> Option<i32> {
    let masked = mask.load(Ordering::Relaxed) != 0;
    if masked || count.load(Ordering::Relaxed) != 0 {
        if masked {
            mask.swap(0, Ordering::Relaxed);
        }
        Some(wake(futex))
    } else {
        None
    }
}

/// Waits until `ready()` or the deadline. While `patrol()` says someone else
/// owes us progress (a claim is outstanding), parks are bounded by
/// `PARK_SLICE` and `look_around()` runs about every `PARK_SLICE` (to find
/// dead or stopped peers); otherwise the waiter parks until woken or its
/// deadline, with no periodic wake-ups. While spinning, `ready()` is checked
/// after every `spin_pause` pause instructions (more than one when checking
/// reads cache lines the other side is busy writing). With `interruptible`,
/// a signal that interrupts a park ends the wait.
#[allow(clippy::too_many_arguments)]
pub(crate) fn wait_until(
    strategy: WaitStrategy,
    spin_pause: u32,
    deadline: Option<Instant>,
    parking: &Parking<'_>,
    interruptible: bool,
    mut ready: impl FnMut() -> bool,
    mut patrol: impl FnMut() -> bool,
    mut look_around: impl FnMut(),
) -> Waited {
    let mut spins: u32 = 0;
    let started = Instant::now();
    let mut last_look = started;
    let mut spinning = strategy != WaitStrategy::Park;
    loop {
        if ready() {
            return Waited::Ready;
        }
        if spinning {
            for _ in 0..spin_pause.max(1) {
                spin_loop();
            }
            // Look at the clock every 64 pauses (a few microseconds at most).
            let before = spins;
            spins = spins.wrapping_add(spin_pause.max(1));
            if before / 64 == spins / 64 {
                continue;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return if ready() { Waited::Ready } else { Waited::Deadline };
            }
            if strategy == WaitStrategy::SpinThenPark && now.duration_since(started) >= SPIN_TIME {
                spinning = false;
            }
            if now.duration_since(last_look) >= PARK_SLICE {
                look_around();
                last_look = now;
            }
            continue;
        }
        let now = Instant::now();
        let left = match deadline {
            Some(d) if now >= d => return if ready() { Waited::Ready } else { Waited::Deadline },
            Some(d) => Some(d - now),
            None => None,
        };
        let seen = parking.futex.load(Ordering::Acquire);
        // SYNC POINT with the fence(SeqCst) of the waker in `wake_if_waiting`'s caller.
        parking.announce();
        fence(Ordering::SeqCst);
        if ready() {
            parking.withdraw();
            return Waited::Ready;
        }
        // Even "until woken" carries a (long) timeout: the kernel restarts an
        // untimed futex wait after a signal handler with SA_RESTART, but
        // never a timed one, so a signal always ends the park (EINTR).
        let slice =
            if patrol() { Some(left.map_or(PARK_SLICE, |l| l.min(PARK_SLICE))) } else { left.or(Some(LONG_PARK)) };
        let interrupted = os::futex_wait(parking.futex, seen, slice.map(|s| s.max(Duration::from_micros(1))));
        parking.withdraw();
        if interrupted && interruptible {
            return if ready() { Waited::Ready } else { Waited::Interrupted };
        }
        let now = Instant::now();
        if now.duration_since(last_look) >= PARK_SLICE && patrol() {
            look_around();
            last_look = now;
        }
    }
}
