//! A clock every process on the machine shares, for one-way latency.

use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

/// `CLOCK_MONOTONIC` in nanoseconds. Unlike `std::time::Instant`, whose
/// values cannot leave the process, this is comparable between processes of
/// one machine (it is the same kernel clock). 0 if the clock cannot be read.
pub fn monotonic_ns() -> u64 {
    match clock_gettime(ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => Duration::from(ts).as_nanos().try_into().unwrap_or(u64::MAX),
        Err(_) => 0,
    }
}
