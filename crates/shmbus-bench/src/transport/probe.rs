//! The floor probe: a raw cache-line ping-pong between the two pinned
//! processes of a case, run just before and just after the case itself.
//!
//! On a virtual machine the host decides which physical cores the two
//! virtual CPUs run on, and may move them: on this harness's 2-vCPU EPYC
//! machine the one-way cache-line latency between them was seen at about 50
//! to 80 ns in some minutes and about 300 ns in others. Each run therefore
//! records the floor it ran on, a run whose floor moved during it is
//! repeated, and ratios are also given between runs on the same floor.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::{spin_until, Res};
use crate::sys::SharedFile;

/// Round trips per probe (the first quarter is warm-up).
const ROUND_TRIPS: u64 = 4000;
const PING: usize = 0;
const PONG: usize = 128;

/// Bytes of the probe file (created by the harness).
pub const FILE_LEN: usize = 4096;

/// A mapped probe file.
pub struct Probe {
    mem: SharedFile,
}

impl Probe {
    /// Maps the probe file the harness created.
    pub fn open(path: &Path) -> Res<Probe> {
        Ok(Probe { mem: SharedFile::open(path)? })
    }

    fn base(round: u64) -> u64 {
        round * ROUND_TRIPS
    }

    /// Measures: returns the p50 one-way latency (round trip / 2) in ns.
    pub fn initiate(&self, round: u64) -> Res<f64> {
        let (ping, pong) = (self.mem.atomic_u64(PING), self.mem.atomic_u64(PONG));
        let mut rtts = Vec::with_capacity(ROUND_TRIPS as usize);
        for i in 1..=ROUND_TRIPS {
            let v = Self::base(round) + i;
            let t0 = std::time::Instant::now();
            // SYNC POINT with the Acquire load in `respond`.
            ping.store(v, Ordering::Release);
            // SYNC POINT with the Release store in `respond`.
            spin_until(|| pong.load(Ordering::Acquire) == v)?;
            if i > ROUND_TRIPS / 4 {
                rtts.push(t0.elapsed().as_nanos() as f64);
            }
        }
        rtts.sort_by(f64::total_cmp);
        Ok(rtts[rtts.len() / 2] / 2.0)
    }

    /// Answers the other side's probe.
    pub fn respond(&self, round: u64) -> Res<()> {
        let (ping, pong) = (self.mem.atomic_u64(PING), self.mem.atomic_u64(PONG));
        for i in 1..=ROUND_TRIPS {
            let v = Self::base(round) + i;
            // SYNC POINT with the Release store in `initiate`.
            spin_until(|| ping.load(Ordering::Acquire) == v)?;
            // SYNC POINT with the Acquire load in `initiate`.
            pong.store(v, Ordering::Release);
        }
        Ok(())
    }
}
