//! The 128-bit atomic of the tail and the frame headers' commit word.
//!
//! Loads and stores go to `portable-atomic` (it picks `vmovdqa` or
//! `cmpxchg16b` for this CPU). The compare-and-swap, which every claim and
//! every commit make, is `lock cmpxchg16b` called directly: inlined when the
//! build enables the `cmpxchg16b` target feature (this workspace does, in
//! `.cargo/config.toml`), otherwise a direct call into a function compiled
//! with it, chosen by a cached CPU-feature test (a load and a branch). A
//! crate that depends on shmbus without the flag thus gets the same
//! instruction, not `portable-atomic`'s run-time dispatch through a function
//! pointer (docs/benchmarks.md, "Outside the workspace").

use std::sync::atomic::Ordering;

/// A 128-bit atomic over shared memory (same layout as `u128`, 16-aligned).
#[repr(transparent)]
pub struct AtomicU128(portable_atomic::AtomicU128);

impl AtomicU128 {
    /// Loads the value.
    #[inline]
    pub fn load(&self, order: Ordering) -> u128 {
        self.0.load(order)
    }

    /// Stores a value.
    #[inline]
    pub fn store(&self, v: u128, order: Ordering) {
        self.0.store(v, order)
    }

    /// Compare-and-swap. `lock cmpxchg16b` is sequentially consistent
    /// whatever orderings are asked for.
    #[inline]
    pub fn compare_exchange(
        &self,
        current: u128,
        new: u128,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u128, u128> {
        #[cfg(target_arch = "x86_64")]
        {
            let prev = cas_x86_64(self.0.as_ptr(), current, new);
            let _ = (success, failure);
            if prev == current {
                Ok(prev)
            } else {
                Err(prev)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self.0.compare_exchange(current, new, success, failure)
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn cas_x86_64(dst: *mut u128, current: u128, new: u128) -> u128 {
    #[cfg(target_feature = "cmpxchg16b")]
    {
        // SAFETY: `dst` is a valid, 16-aligned u128 that other threads and
        // processes access only atomically; the build enables cmpxchg16b.
        unsafe { core::arch::x86_64::cmpxchg16b(dst, current, new, Ordering::SeqCst, Ordering::SeqCst) }
    }
    #[cfg(not(target_feature = "cmpxchg16b"))]
    {
        if std::arch::is_x86_feature_detected!("cmpxchg16b") {
            // SAFETY: as above; the CPU has cmpxchg16b (just checked).
            unsafe { cas_detected(dst, current, new) }
        } else {
            // Unreachable in practice: `BusConfig::validate` refuses CPUs
            // without a lock-free 128-bit CAS before any bus is mapped.
            // SAFETY: `dst` is a valid, 16-aligned u128 accessed atomically.
            let a = unsafe { portable_atomic::AtomicU128::from_ptr(dst) };
            match a.compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(v) | Err(v) => v,
            }
        }
    }
}

/// `lock cmpxchg16b` in inline assembly (the `cmpxchg16b` intrinsic lowers
/// to a libatomic call unless the whole crate is built with the feature).
/// `rbx` is reserved by LLVM, so the low half of `new` goes through another
/// register and is swapped in around the instruction, as `portable-atomic`
/// does.
///
/// # Safety
/// The CPU must support cmpxchg16b, and `dst` must be a valid, 16-aligned
/// u128 accessed only atomically.
#[cfg(target_arch = "x86_64")]
#[cfg_attr(target_feature = "cmpxchg16b", allow(dead_code))]
#[inline]
unsafe fn cas_detected(dst: *mut u128, current: u128, new: u128) -> u128 {
    let (prev_lo, prev_hi): (u64, u64);
    // SAFETY: forwarded to the caller (see `# Safety`); rbx is restored
    // before the block ends, and no stack is used.
    unsafe {
        core::arch::asm!(
            "xchg {rbx_tmp}, rbx",
            "lock cmpxchg16b xmmword ptr [{dst}]",
            "mov rbx, {rbx_tmp}",
            dst = in(reg) dst,
            rbx_tmp = inout(reg) new as u64 => _,
            in("rcx") (new >> 64) as u64,
            inout("rax") current as u64 => prev_lo,
            inout("rdx") (current >> 64) as u64 => prev_hi,
            options(nostack),
        );
    }
    (u128::from(prev_hi) << 64) | u128::from(prev_lo)
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// The inline-assembly path (what crates built without the
    /// `cmpxchg16b` flag run) against the intrinsic: results and races.
    #[test]
    fn assembly_compare_and_swap_is_atomic_and_reports_the_previous_value() {
        let mut x: u128 = (7 << 64) | 9;
        assert!(std::arch::is_x86_feature_detected!("cmpxchg16b"));
        // SAFETY: a local, aligned u128; the CPU has cmpxchg16b (checked above).
        let prev = unsafe { cas_detected(&mut x, 1, 2) };
        assert_eq!((prev, x), ((7 << 64) | 9, (7 << 64) | 9), "a failed CAS changes nothing");
        // SAFETY: as above.
        let prev = unsafe { cas_detected(&mut x, (7 << 64) | 9, u128::MAX - 3) };
        assert_eq!((prev, x), ((7 << 64) | 9, u128::MAX - 3));
        // Four threads add 1 to both halves 20,000 times each with CAS loops.
        let cell = std::sync::Arc::new(AtomicU128(portable_atomic::AtomicU128::new(0)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let cell = cell.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        let mut cur = cell.load(Ordering::Relaxed);
                        loop {
                            let next = cur.wrapping_add((1 << 64) | 1);
                            // SAFETY: the cell is a 16-aligned u128 accessed only atomically.
                            let prev = unsafe { cas_detected(cell.0.as_ptr(), cur, next) };
                            if prev == cur {
                                break;
                            }
                            cur = prev;
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(cell.load(Ordering::SeqCst), (80_000u128 << 64) | 80_000);
    }
}
