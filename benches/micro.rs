//! In-process micro-benchmarks of shmbus's hot paths (criterion, `harness = false`).
//!
//! Each benchmark uses a bus in a fresh private directory (on /dev/shm when
//! there is one). These are single-thread costs: no other core touches the
//! ring, so they show instructions and fences, not cache-line transfers.
//! Cross-process latency and throughput are measured by the `shmbus-bench`
//! harness (docs/benchmarks.md).
//!
//! `cargo bench --bench micro` (about half a minute).

use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shmbus::core::{Bus, Consumer, PeerKind, Poll, Producer};
use shmbus::{BusConfig, Publisher, StartAt, Subscriber, WaitStrategy};

fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let b =
        tempfile::Builder::new().prefix("shmbus-micro-").tempdir_in(if shm.is_dir() { shm } else { Path::new(".") });
    b.or_else(|_| tempfile::tempdir()).expect("a scratch directory")
}

fn config(dir: &Path) -> BusConfig {
    BusConfig::default().dir(dir).capacity(1 << 20).max_message(64 << 10).wait_strategy(WaitStrategy::BusySpin)
}

/// Messages per timed batch in the read benchmarks (they fit in the 1 MiB ring).
const BATCH: u64 = 4096;

fn publish(c: &mut Criterion) {
    let mut g = c.benchmark_group("publish");
    g.throughput(Throughput::Elements(1));
    let msg = [7u8; 64];

    // Claim + commit through the core producer, no payload copy, nobody
    // subscribed (block mode: nothing holds the tail back). Commit takes the
    // wake fast path: no parked subscriber, so no system call.
    g.bench_function("claim_commit_64B", |b| {
        let dir = scratch();
        let bus = Bus::open_or_create("m", &config(dir.path()), PeerKind::Publisher).unwrap();
        let mut p = Producer::new(bus, WaitStrategy::BusySpin);
        b.iter(|| {
            let claim = p.try_claim(black_box(64)).expect("space");
            p.commit(claim, false).expect("commit");
        });
    });

    // Publisher::send of 64 B (claim + copy + commit), nobody subscribed.
    g.bench_function("send_64B", |b| {
        let dir = scratch();
        let mut publ = Publisher::open_or_create("m", &config(dir.path())).unwrap();
        b.iter(|| publ.send(black_box(&msg)).unwrap());
    });

    // Publisher::send of 64 B with a subscriber draining it on the same thread
    // (send + recv_into per iteration).
    g.bench_function("send_recv_64B", |b| {
        let dir = scratch();
        let cfg = config(dir.path());
        let mut sub = Subscriber::open_or_create("m", &cfg, StartAt::Latest).unwrap();
        let mut publ = Publisher::open_or_create("m", &cfg).unwrap();
        let mut buf = Vec::with_capacity(64);
        b.iter(|| {
            publ.send(black_box(&msg)).unwrap();
            sub.recv_into(&mut buf, None).unwrap();
            black_box(&buf);
        });
    });
    g.finish();
}

fn subscribe(c: &mut Criterion) {
    let mut g = c.benchmark_group("subscribe");
    g.throughput(Throughput::Elements(1));

    // Consumer::try_read of 64 B messages: validate the frame, copy out, advance.
    // Batches are published untimed, then read timed.
    g.bench_function("read_advance_64B", |b| {
        let dir = scratch();
        let cfg = config(dir.path());
        let mut cons = Consumer::new(
            Bus::open_or_create("m", &cfg, PeerKind::Subscriber).unwrap(),
            StartAt::Latest,
            WaitStrategy::BusySpin,
        );
        let mut prod =
            Producer::new(Bus::open_or_create("m", &cfg, PeerKind::Publisher).unwrap(), WaitStrategy::BusySpin);
        let msg = [7u8; 64];
        let mut buf = Vec::with_capacity(64);
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BATCH);
                for _ in 0..n {
                    prod.send(&msg, None).unwrap();
                }
                let t0 = Instant::now();
                for _ in 0..n {
                    let got = cons.try_read(&mut buf).unwrap();
                    assert!(matches!(got, Poll::Message { len: 64, .. }));
                }
                spent += t0.elapsed();
                left -= n;
            }
            spent
        });
    });

    // Consumer::try_borrow + release of 64 B messages: the zero-copy read.
    g.bench_function("borrow_release_64B", |b| {
        let dir = scratch();
        let cfg = config(dir.path());
        let mut cons = Consumer::new(
            Bus::open_or_create("m", &cfg, PeerKind::Subscriber).unwrap(),
            StartAt::Latest,
            WaitStrategy::BusySpin,
        );
        let mut prod =
            Producer::new(Bus::open_or_create("m", &cfg, PeerKind::Publisher).unwrap(), WaitStrategy::BusySpin);
        let msg = [7u8; 64];
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BATCH);
                for _ in 0..n {
                    prod.send(&msg, None).unwrap();
                }
                let t0 = Instant::now();
                for _ in 0..n {
                    let borrowed = cons.try_borrow().unwrap().expect("a frame");
                    black_box(borrowed.len());
                    cons.release(borrowed);
                }
                spent += t0.elapsed();
                left -= n;
            }
            spent
        });
    });
    g.finish();
}

fn loan(c: &mut Criterion) {
    let mut g = c.benchmark_group("loan");
    g.throughput(Throughput::Elements(1));
    for (name, len) in [("loan_commit_64B", 64usize), ("loan_commit_64KiB", 64 << 10)] {
        // Publisher::loan + an 8-byte header written in place + commit, nobody subscribed.
        g.bench_function(name, |b| {
            let dir = scratch();
            let mut publ = Publisher::open_or_create("m", &config(dir.path())).unwrap();
            let mut seq = 0u64;
            b.iter(|| {
                let mut l = publ.loan(black_box(len)).unwrap();
                l[..8].copy_from_slice(&seq.to_le_bytes());
                l.commit().expect("commit");
                seq += 1;
            });
        });
    }
    g.finish();
}

fn wake(c: &mut Criterion) {
    let mut g = c.benchmark_group("wake");
    let futex = AtomicU32::new(0);
    let waiters = AtomicU32::new(0);

    // What commit and advance do when nobody is parked: a SeqCst fence, then
    // a relaxed load of the waiter count (shmbus_core::wait::wake_if_waiting
    // and its caller; the library keeps it private, so this is the same
    // sequence on a local word).
    g.bench_function("fast_path_no_waiter", |b| {
        b.iter(|| {
            fence(Ordering::SeqCst);
            if black_box(&waiters).load(Ordering::Relaxed) > 0 {
                futex.fetch_add(1, Ordering::Release);
            }
        });
    });

    // The system call the fast path avoids: FUTEX_WAKE (shared) with nobody waiting.
    g.bench_function("futex_wake_syscall_no_waiter", |b| {
        b.iter(|| {
            // SAFETY: FUTEX_WAKE only uses the word's address as a key.
            unsafe { libc::syscall(libc::SYS_futex, futex.as_ptr(), libc::FUTEX_WAKE, i32::MAX, 0usize, 0usize, 0u32) };
        });
    });
    g.finish();
}

fn config_criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(40)
}

criterion_group! {
    name = micro;
    config = config_criterion();
    targets = publish, subscribe, loan, wake
}
criterion_main!(micro);
