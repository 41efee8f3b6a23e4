//! The before/after figures of issue 9, findings 4 and 5 (docs/reliability.md,
//! "Waiter accounting before/after"):
//!
//! - `idle`: wake-ups per second of a subscriber parked (`WaitStrategy::Park`)
//!   on a bus where nothing is published, counted as the growth of
//!   `voluntary_ctxt_switches` over all its threads (/proc/PID/task/*/status);
//! - `stream`: 64-byte messages per second received (delivered, not counting
//!   `Lagged` reports) by a busy-spinning subscriber thread from a publisher
//!   thread, in block and overwrite mode, and sent by a publisher alone
//!   (overwrite mode), before and after another subscriber process, parked
//!   on the same bus, was SIGKILLed; each in eight windows (median and best:
//!   the machine is shared, so the best window is the least disturbed), and
//!   the `data_waiters` count the bus is left with.
//!
//! ```text
//! cargo run --release -p shmbus-core --example waiter_accounting [SECONDS [ROUNDS]]
//! ```
//!
//! It uses only API that existed before the per-peer waiter accounting
//! (`Consumer::read`, `Producer::send`, `WaitStrategy::{Park, BusySpin}`,
//! `inspect(..).data_waiters`), so the same file runs on the old code (copy
//! it into `crates/shmbus-core/examples/` of a worktree at `02492e7`).

use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmbus_core::{inspect, Bus, BusConfig, Consumer, Overflow, PeerKind, Poll, Producer, StartAt, WaitStrategy};

const BUS: &str = "waiters";

fn cfg(dir: &Path, overflow: Overflow) -> BusConfig {
    BusConfig::default().dir(dir).capacity(1 << 20).max_message(4096).overflow(overflow)
}

fn overflow_of(s: &str) -> Overflow {
    if s == "overwrite" {
        Overflow::Overwrite
    } else {
        Overflow::Block
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("park-sub") {
        // park-sub DIR MODE: a parked subscriber waiting for one message.
        let c = cfg(Path::new(&args[2]), overflow_of(&args[3]));
        let mut s = Consumer::new(
            Bus::open_or_create(BUS, &c, PeerKind::Subscriber).unwrap(),
            StartAt::Latest,
            WaitStrategy::Park,
        );
        let mut buf = Vec::new();
        let _ = s.read(&mut buf, None);
        return;
    }
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let rounds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    println!("machine: {} CPUs online, load average {}", cpus(), loadavg());
    for r in 0..rounds {
        let (wakes, pid) = idle(Duration::from_secs(secs));
        println!(
            "idle round {r}: parked subscriber (pid {pid}) made {wakes} wake-ups in {secs} s = {:.1}/s",
            wakes as f64 / secs as f64
        );
    }
    for (mode, reader) in [("block", true), ("overwrite", true), ("overwrite", false)] {
        let what = if reader { "to a busy-spin subscriber" } else { "publisher alone" };
        for r in 0..rounds {
            let ((b50, bmax), (a50, amax), left) = stream(overflow_of(mode), reader, Duration::from_secs(secs));
            println!(
                "stream {mode} {what} round {r}: 64 B M msg/s before: median {:.2} best {:.2}; after a parked subscriber was SIGKILLed: median {:.2} best {:.2} (best after/before {:.2}); data_waiters left {left}",
                b50 / 1e6,
                bmax / 1e6,
                a50 / 1e6,
                amax / 1e6,
                amax / bmax
            );
        }
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split(' ').take(3).collect::<Vec<_>>().join(" ")
}

/// Starts a parked subscriber process and waits until it is counted as parked.
fn spawn_parked(dir: &Path, c: &BusConfig, mode: &str, waiters_before: u32) -> Child {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["park-sub", dir.to_str().unwrap(), mode])
        .spawn()
        .expect("spawn the parked subscriber");
    let deadline = Instant::now() + Duration::from_secs(20);
    while inspect(BUS, c).map(|s| s.data_waiters).unwrap_or(0) <= waiters_before {
        assert!(Instant::now() < deadline, "the subscriber did not park within 20 s");
        std::thread::sleep(Duration::from_millis(1));
    }
    child
}

/// Finding 5: wake-ups of an idle parked subscriber over `window`.
fn idle(window: Duration) -> (u64, u32) {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), Overflow::Block);
    let mut publ = Producer::new(Bus::open_or_create(BUS, &c, PeerKind::Publisher).unwrap(), WaitStrategy::Park);
    let mut child = spawn_parked(dir.path(), &c, "block", 0);
    let pid = child.id();
    // Settle: the switches of start-up are not the idle figure.
    std::thread::sleep(Duration::from_millis(200));
    let before = shmbus_testkit::voluntary_switches(pid);
    std::thread::sleep(window);
    let wakes = shmbus_testkit::voluntary_switches(pid) - before;
    publ.send(b"wake up", None).map_err(|e| format!("{e:?}")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the parked subscriber did not take its message");
        std::thread::sleep(Duration::from_millis(1));
    }
    (wakes, pid)
}

/// Median and best of a set of rates.
fn summary(mut rates: Vec<f64>) -> (f64, f64) {
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (rates[rates.len() / 2], rates[rates.len() - 1])
}

/// Finding 4: the 64 B rate (to a busy-spinning subscriber thread, or of a
/// publisher alone in overwrite mode), in eight windows of `window / 8`,
/// then the same after a parked subscriber process was SIGKILLed. Returns
/// (median, best) before, (median, best) after, and the waiter count left.
fn stream(overflow: Overflow, reader: bool, window: Duration) -> ((f64, f64), (f64, f64), u32) {
    let mode = if overflow == Overflow::Block { "block" } else { "overwrite" };
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), overflow);
    let mut publ = Producer::new(Bus::open_or_create(BUS, &c, PeerKind::Publisher).unwrap(), WaitStrategy::BusySpin);
    let counted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sub = reader.then(|| {
        let (counted, stop, c) = (counted.clone(), stop.clone(), c.clone());
        let mut s = Consumer::new(
            Bus::open_or_create(BUS, &c, PeerKind::Subscriber).unwrap(),
            StartAt::Latest,
            WaitStrategy::BusySpin,
        );
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(Poll::Message { .. }) = s.read(&mut buf, Some(Instant::now() + Duration::from_millis(10))) {
                    n += 1;
                    if n.is_multiple_of(1024) {
                        counted.store(n, Ordering::Relaxed);
                    }
                }
            }
        })
    });
    let m = [0x5au8; 64];
    let mut sent = 0u64;
    let mut measure = |publ: &mut Producer| {
        let warm = Instant::now() + Duration::from_millis(300);
        while Instant::now() < warm {
            publ.send(&m, None).unwrap();
            sent += 1;
        }
        let mut rates = Vec::new();
        for _ in 0..8 {
            let t0 = Instant::now();
            let c0 = if reader { counted.load(Ordering::Relaxed) } else { sent };
            while t0.elapsed() < window / 8 {
                for _ in 0..1024 {
                    publ.send(&m, None).unwrap();
                }
                sent += 1024;
            }
            let c1 = if reader { counted.load(Ordering::Relaxed) } else { sent };
            rates.push((c1 - c0) as f64 / t0.elapsed().as_secs_f64());
        }
        summary(rates)
    };
    let before = measure(&mut publ);
    let waiters_before = inspect(BUS, &c).unwrap().data_waiters;
    let mut child = spawn_parked(dir.path(), &c, mode, waiters_before);
    child.kill().unwrap();
    child.wait().unwrap();
    let after = measure(&mut publ);
    let left = inspect(BUS, &c).unwrap().data_waiters;
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = sub {
        t.join().unwrap();
    }
    (before, after, left)
}
