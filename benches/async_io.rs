//! Async and eventfd receiving against blocking `Park` and tokio's
//! `UnixStream`, between two real processes (this binary re-executes itself
//! as the sender): one-way latency (p50/p99/p99.9 of 64 B messages sent one
//! every 200 µs, timestamped with CLOCK_MONOTONIC, which both processes
//! share), the 64 B stream rate, and the idle CPU of 100 parked async
//! subscribers on 100 buses. The sender is the same blocking loop for every
//! receiver; only the receiving side changes. docs/benchmarks.md ("Async and
//! event loops") has the figures.
//!
//! `cargo bench --bench async_io` (about 40 s; `ASYNC_BENCH_QUICK=1`: 5 s).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use shmbus::{BusConfig, Publisher, StartAt, Subscriber, WaitStrategy};
use tokio::io::AsyncReadExt;

const ROLE: &str = "SHMBUS_ASYNC_BENCH_ROLE";
const MSG: usize = 64;

fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into a valid, exclusively borrowed timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn cfg(dir: &Path) -> BusConfig {
    BusConfig::default().dir(dir).capacity(1 << 20)
}

fn msg(i: u64) -> [u8; MSG] {
    let mut m = [0u8; MSG];
    m[..8].copy_from_slice(&now_ns().to_le_bytes());
    m[8..16].copy_from_slice(&i.to_le_bytes());
    m
}

/// The sender: `<bus|unix> <count> <gap_us>` (gap 0: as fast as it can).
fn child(dir: PathBuf) {
    let a: Vec<String> = std::env::var("SHMBUS_ASYNC_BENCH_ARGS").unwrap().split(' ').map(str::to_owned).collect();
    let count: u64 = a[1].parse().unwrap();
    let gap = Duration::from_micros(a[2].parse().unwrap());
    let pace = |i: u64| {
        if !gap.is_zero() {
            let until = Instant::now() + gap;
            while Instant::now() < until {
                if until - Instant::now() > Duration::from_micros(60) {
                    std::thread::sleep(Duration::from_micros(50));
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        msg(i)
    };
    match a[0].as_str() {
        "bus" => {
            let mut p = Publisher::open_or_create("b", &cfg(&dir)).unwrap();
            p.wait_for_subscribers(1, Duration::from_secs(30)).unwrap();
            for i in 0..count {
                p.send(&pace(i)).unwrap();
            }
            p.linger(Duration::from_secs(30)).unwrap();
        }
        "unix" => {
            let mut s = std::os::unix::net::UnixStream::connect(dir.join("sock")).unwrap();
            for i in 0..count {
                s.write_all(&pace(i)).unwrap();
            }
            let mut ack = [0u8; 1];
            let _ = s.read(&mut ack);
        }
        other => panic!("unknown sender {other}"),
    }
}

fn sender(dir: &Path, kind: &str, count: u64, gap_us: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .env(ROLE, "sender")
        .env("SHMBUS_ASYNC_BENCH_ARGS", format!("{kind} {count} {gap_us}"))
        .env("SHMBUS_DIR", dir)
        .spawn()
        .unwrap()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Rx {
    Park,
    Async,
    EventFd,
    Unix,
}

/// Receives `count` messages; returns their one-way latencies (ns) and the
/// time from the first to the last.
fn receive(rx: Rx, count: u64, gap_us: u64) -> (Vec<u64>, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let mut lat = Vec::with_capacity(count as usize);
    let mut first = None;
    let mut note = |m: &[u8], i: u64| {
        let t = now_ns();
        first.get_or_insert_with(Instant::now);
        let sent = u64::from_le_bytes(m[..8].try_into().unwrap());
        assert_eq!(u64::from_le_bytes(m[8..16].try_into().unwrap()), i);
        lat.push(t.saturating_sub(sent));
    };
    let child;
    match rx {
        Rx::Park | Rx::Async | Rx::EventFd => {
            let mut sub =
                Subscriber::open_or_create("b", &cfg(dir.path()).wait_strategy(WaitStrategy::Park), StartAt::Oldest)
                    .unwrap();
            child = sender(dir.path(), "bus", count, gap_us);
            match rx {
                Rx::Park => {
                    for i in 0..count {
                        note(&sub.recv().unwrap(), i);
                    }
                }
                Rx::Async => {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    rt.block_on(async {
                        for i in 0..count {
                            note(&sub.recv_async().await.unwrap(), i);
                        }
                    });
                }
                _ => {
                    let fd = sub.event_fd().unwrap();
                    let mut i = 0;
                    while i < count {
                        while let Some(m) = sub.try_recv().unwrap() {
                            note(&m, i);
                            i += 1;
                        }
                        if i == count || sub.arm_event_fd().unwrap() {
                            continue;
                        }
                        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
                        // SAFETY: one valid pollfd for the call.
                        unsafe { libc::poll(&mut pfd, 1, 10_000) };
                    }
                }
            }
            let end = Instant::now();
            assert!(child_ok(child));
            drop(sub);
            (lat, end - first.unwrap())
        }
        Rx::Unix => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let end = rt.block_on(async {
                let listener = tokio::net::UnixListener::bind(dir.path().join("sock")).unwrap();
                let c = sender(dir.path(), "unix", count, gap_us);
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; MSG * 1024];
                let mut have = 0usize;
                let mut i = 0;
                while i < count {
                    let n = s.read(&mut buf[have..]).await.unwrap();
                    assert!(n > 0);
                    have += n;
                    let whole = have / MSG * MSG;
                    for m in buf[..whole].chunks_exact(MSG) {
                        note(m, i);
                        i += 1;
                    }
                    buf.copy_within(whole..have, 0);
                    have -= whole;
                }
                let end = Instant::now();
                use tokio::io::AsyncWriteExt;
                s.write_all(b"k").await.unwrap();
                assert!(child_ok(c));
                end
            });
            (lat, end - first.unwrap())
        }
    }
}

fn child_ok(mut c: Child) -> bool {
    c.wait().unwrap().success()
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
}

fn cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: as in `now_ns`.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time of this process while 100 async subscribers on 100 buses are
/// parked for `secs`, and the threads it started for them.
fn idle(secs: u64) -> (Duration, Duration, usize) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut subs: Vec<Subscriber> = (0..100)
            .map(|b| Subscriber::open_or_create(&format!("idle{b}"), &cfg(dir.path()), StartAt::Latest).unwrap())
            .collect();
        let mut set = tokio::task::JoinSet::new();
        for mut s in subs.drain(..) {
            set.spawn(async move {
                let _ = s.recv_async().await;
            });
        }
        tokio::task::yield_now().await;
        let (c0, t0) = (cpu_ns(), Instant::now());
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let (c1, t1) = (cpu_ns(), Instant::now());
        set.abort_all();
        (Duration::from_nanos(c1 - c0), t1 - t0, shmbus::core::waiter_threads())
    })
}

fn main() {
    if std::env::var(ROLE).is_ok() {
        child(PathBuf::from(std::env::var_os("SHMBUS_DIR").unwrap()));
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists; nothing to run
    }
    let quick = std::env::var("ASYNC_BENCH_QUICK").is_ok_and(|v| v == "1");
    let (lat_n, rate_n, idle_s) = if quick { (2_000, 200_000, 1) } else { (20_000, 2_000_000, 5) };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before: {}", load.trim());
    println!("\n| receiver | p50 µs | p99 µs | p99.9 µs | 64 B stream, M msg/s |");
    println!("|---|---|---|---|---|");
    for rx in [Rx::Park, Rx::Async, Rx::EventFd, Rx::Unix] {
        let (mut lat, _) = receive(rx, lat_n, 200);
        lat.sort_unstable();
        let (_, took) = receive(rx, rate_n, 0);
        let name = match rx {
            Rx::Park => "shmbus blocking `recv` (Park)",
            Rx::Async => "shmbus `recv_async` (tokio current-thread)",
            Rx::EventFd => "shmbus eventfd + `poll(2)`",
            Rx::Unix => "tokio `UnixStream` (current-thread)",
        };
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.2} |",
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            pct(&lat, 0.999),
            rate_n as f64 / took.as_secs_f64() / 1e6
        );
    }
    let (cpu, wall, threads) = idle(idle_s);
    println!(
        "\nidle: 100 async subscribers on 100 buses parked for {:.2} s used {:?} of CPU; waiter threads: {threads}",
        wall.as_secs_f64(),
        cpu
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average after: {}", load.trim());
}
