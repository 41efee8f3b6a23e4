//! Waiting for a condition on the shared memory: spin, then park on a shared
//! futex word, always in a loop that re-checks the condition and always with
//! a bounded park so that a dead waker cannot hang the waiter.
//!
//! The handshake with the waker (no lost wake-up):
//! ```text
//! waiter                              waker
//! v = futex.load()                    make condition true
//! waiters.fetch_add(1)   (SeqCst)     fence(SeqCst)
//! fence(SeqCst)                       if waiters.load() > 0:
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

use crate::config::{WaitStrategy, PARK_SLICE};
use crate::sync::{fence, os, spin_loop, AtomicU32, Instant, Ordering};

/// How long [`WaitStrategy::SpinThenPark`] spins before parking. Measured by
/// the clock, not by pause instructions, whose length varies tenfold between
/// CPUs (4096 pauses took 109 µs on this machine's AMD EPYC).
const SPIN_TIME: Duration = Duration::from_micros(20);

/// Bumps the futex word and wakes every parked waiter.
pub(crate) fn wake(futex: &AtomicU32) {
    // SYNC POINT with the load of the futex word by a waiter before it parks:
    // the bump makes a futex_wait that still expects the old value return.
    futex.fetch_add(1, Ordering::Release);
    os::futex_wake_all(futex);
}

/// Wakes waiters on `futex` if `waiters` says anyone is parked. The caller has
/// made its condition true and issued `fence(SeqCst)` just before.
#[inline]
pub(crate) fn wake_if_waiting(futex: &AtomicU32, waiters: &AtomicU32) {
    if waiters.load(Ordering::Relaxed) > 0 {
        wake(futex);
    }
}

/// Waits until `ready()` or the deadline. `look_around()` runs about every
/// `PARK_SLICE` while waiting (to find dead peers). While spinning, `ready()`
/// is checked after every `spin_pause` pause instructions (more than one when
/// checking reads cache lines the other side is busy writing). Returns whether
/// `ready()` became true.
pub(crate) fn wait_until(
    strategy: WaitStrategy,
    spin_pause: u32,
    deadline: Option<Instant>,
    futex: &AtomicU32,
    waiters: &AtomicU32,
    mut ready: impl FnMut() -> bool,
    mut look_around: impl FnMut(),
) -> bool {
    let mut spins: u32 = 0;
    let started = Instant::now();
    let mut last_look = started;
    let mut spinning = strategy != WaitStrategy::Park;
    loop {
        if ready() {
            return true;
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
                return ready();
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
        let slice = match deadline {
            Some(d) if now >= d => return ready(),
            Some(d) => (d - now).min(PARK_SLICE),
            None => PARK_SLICE,
        };
        let seen = futex.load(Ordering::Acquire);
        // SYNC POINT with the fence(SeqCst) of the waker in `wake_if_waiting`'s caller.
        waiters.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if ready() {
            waiters.fetch_sub(1, Ordering::Relaxed);
            return true;
        }
        os::futex_wait(futex, seen, slice.max(Duration::from_micros(1)));
        waiters.fetch_sub(1, Ordering::Relaxed);
        let now = Instant::now();
        if now.duration_since(last_look) >= PARK_SLICE {
            look_around();
            last_look = now;
        }
    }
}
