//! The async API and the eventfd interface with real processes
//! (docs/async.md): a publisher process and async subscribers in this one on
//! several buses (current-thread and multi-thread runtimes), cancellation in
//! the middle of waits, the eventfd under a burst, a subscriber process
//! SIGKILLed while its async waiter is parked, 100 async subscribers on 100
//! buses served by one waiter thread, and `send_async` held back by a
//! SIGSTOPped publisher or subscriber process. Every wait has a deadline on
//! an observable condition; no test asserts a maximum runtime.

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use shmbus::{inspect, BusConfig, Overflow, PeerKind, Publisher, RecvError, SendError, StartAt, Subscriber};
use shmbus_testkit::{args, finish, role, signal, spawn, stopped, wait_for};

const LIMIT: Duration = Duration::from_secs(60);

fn cfg(dir: &Path) -> BusConfig {
    BusConfig::default().dir(dir).capacity(1 << 16).max_peers(128)
}

/// The child entry point: does nothing unless started with a role.
#[test]
fn __child() {
    let Some(role) = role() else { return };
    let dir = std::path::PathBuf::from(std::env::var_os("SHMBUS_DIR").unwrap());
    let a = args();
    match role.as_str() {
        // publish <buses> <count>: waits for a subscriber on each bus, then
        // sends 0..count (u64) round-robin over the buses, pausing now and
        // then so that subscribers park between bursts.
        "publish" => {
            let buses: usize = a[0].parse().unwrap();
            let count: u64 = a[1].parse().unwrap();
            let mut pubs: Vec<Publisher> =
                (0..buses).map(|b| Publisher::open_or_create(&format!("bus{b}"), &cfg(&dir)).unwrap()).collect();
            for p in &pubs {
                p.wait_for_subscribers(1, LIMIT).unwrap();
            }
            for i in 0..count {
                for p in pubs.iter_mut() {
                    p.send_pod(&i).unwrap();
                }
                if i % 97 == 0 {
                    std::thread::sleep(Duration::from_micros(300));
                }
            }
            for p in &pubs {
                p.linger(LIMIT).unwrap();
            }
            println!("RESULT:sent {count}");
        }
        // parked: an async subscriber that arms and parks for ever (until killed).
        "parked" => {
            let mut sub = Subscriber::attach("victim", &cfg(&dir), StartAt::Latest).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                println!("READY {}", sub.slot());
                let _ = sub.recv_async().await;
            });
        }
        // many <n>: n async subscribers on n buses, each parked in recv_async.
        "many" => {
            let n: usize = a[0].parse().unwrap();
            let before = threads();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let mut subs: Vec<Subscriber> = (0..n)
                    .map(|b| Subscriber::open_or_create(&format!("many{b}"), &cfg(&dir), StartAt::Latest).unwrap())
                    .collect();
                let mut futs: Vec<_> = subs.iter_mut().map(|s| Box::pin(s.recv_async())).collect();
                let waker = std::task::Waker::noop();
                let mut cx = Context::from_waker(waker);
                for f in futs.iter_mut() {
                    assert!(f.as_mut().poll(&mut cx).is_pending());
                }
                println!("RESULT:waiter_threads {}", shmbus::core::waiter_threads());
                println!("RESULT:new_threads {}", threads() - before);
                // Idle: the process's CPU time over one second with all parked.
                let cpu0 = cpu_ticks();
                let t0 = Instant::now();
                std::thread::sleep(Duration::from_secs(1));
                let cpu1 = cpu_ticks();
                println!("RESULT:idle_cpu_ticks {} over {:?}", cpu1 - cpu0, t0.elapsed());
                drop(futs);
                let waiting: u32 = (0..n).map(|b| inspect(&format!("many{b}"), &cfg(&dir)).unwrap().data_waiters).sum();
                println!("RESULT:waiters_after_drop {waiting}");
            });
        }
        // fallback <buses> <count>: as an async subscriber process without
        // futex_waitv (forced), receives 0..count from each bus.
        "fallback" => {
            // SAFETY (edition 2021: safe): set before any other thread reads the environment.
            std::env::set_var("SHMBUS_NO_FUTEX_WAITV", "1");
            let buses: usize = a[0].parse().unwrap();
            let count: u64 = a[1].parse().unwrap();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let mut subs: Vec<Subscriber> = (0..buses)
                    .map(|b| Subscriber::attach(&format!("bus{b}"), &cfg(&dir), StartAt::Oldest).unwrap())
                    .collect();
                for i in 0..count {
                    for s in subs.iter_mut() {
                        let v: u64 = tokio::time::timeout(LIMIT, s.recv_pod_async()).await.expect("a message").unwrap();
                        assert_eq!(v, i);
                    }
                }
                println!("RESULT:waiter_threads {}", shmbus::core::waiter_threads());
                println!("RESULT:received {count}");
            });
        }
        // slow_reader <count>: receives 0..count in order, pausing now and then.
        "slow_reader" => {
            let count: u64 = a[0].parse().unwrap();
            let mut sub = Subscriber::attach("small", &cfg(&dir), StartAt::Oldest).unwrap();
            println!("READY");
            for i in 0..count {
                let v: u64 = sub.recv_pod_timeout(LIMIT).unwrap();
                assert_eq!(v, i);
                if i % 500 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            println!("RESULT:received {count}");
        }
        // claim_and_hang: claims a frame on "stuck", never commits, waits to be killed.
        "claim_and_hang" => {
            let mut publ = Publisher::attach("stuck", &cfg(&dir)).unwrap();
            let loan = publ.loan(8).unwrap();
            println!("READY");
            std::thread::sleep(LIMIT);
            drop(loan);
        }
        // stop_claim FLAG: claims a 1000-byte frame on "stalled", writes its
        // sequence number to FLAG, stops itself (SIGSTOP) before committing;
        // once continued, commits and reports how that went.
        "stop_claim" => {
            let c = stalled_cfg(&dir);
            let mut publ = Publisher::attach("stalled", &c).unwrap();
            let mut loan = publ.loan(1000).unwrap();
            loan.fill(0xEE);
            std::fs::write(&a[0], loan.seq().to_string()).unwrap();
            // SAFETY: raise(3) on ourselves.
            unsafe { libc::raise(libc::SIGSTOP) };
            match loan.commit() {
                Ok(()) => println!("RESULT:committed"),
                Err(SendError::Abandoned { seq }) => println!("RESULT:abandoned {seq}"),
                Err(e) => println!("RESULT:error {e:?}"),
            }
        }
        // count_sub EVICT_MS FLAG: a subscriber on "stall" (block mode, with
        // that eviction policy) that creates FLAG once attached, then reads
        // until the message u64::MAX; reports what it received and lost.
        "count_sub" => {
            let c = stall_cfg(&dir, a[0].parse().unwrap());
            let mut sub = Subscriber::attach("stall", &c, StartAt::Latest).unwrap();
            std::fs::write(&a[1], b"1").unwrap();
            let (mut received, mut lagged, mut last) = (0u64, 0u64, None::<u64>);
            loop {
                match sub.recv_timeout(LIMIT) {
                    Ok(m) => {
                        let n = counter(&m);
                        if n == u64::MAX {
                            break;
                        }
                        assert!(last.is_none_or(|l| n > l), "reordered: {n} after {last:?}");
                        last = Some(n);
                        received += 1;
                    }
                    Err(RecvError::Lagged { lost }) => lagged += lost,
                    Err(e) => panic!("{e}"),
                }
            }
            println!("RESULT:received {received}");
            println!("RESULT:lost {}", sub.lost().max(lagged));
        }
        other => panic!("unknown role {other}"),
    }
}

/// A 1000-byte message carrying `n`.
fn numbered(n: u64) -> Vec<u8> {
    let mut m = vec![n as u8; 1000];
    m[..8].copy_from_slice(&n.to_le_bytes());
    m
}

fn counter(m: &[u8]) -> u64 {
    u64::from_le_bytes(m[..8].try_into().unwrap())
}

/// Kills a child that a failing test leaves stopped (SIGKILL also ends a
/// stopped process).
struct KillOnPanic(u32);

impl Drop for KillOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // SAFETY: kill(2) on a child process id we spawned and have not reaped.
            unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
        }
    }
}

/// The bus of the stopped-publisher test: block mode, a 200 ms unblock timeout.
fn stalled_cfg(dir: &Path) -> BusConfig {
    cfg(dir).capacity(16 << 10).overflow(Overflow::Block).unblock_timeout(Duration::from_millis(200))
}

/// The bus of the stopped-subscriber test: block mode, evicting after
/// `evict_ms` (0: never).
fn stall_cfg(dir: &Path, evict_ms: u64) -> BusConfig {
    cfg(dir).capacity(16 << 10).overflow(Overflow::Block).evict_after(Duration::from_millis(evict_ms))
}

/// Threads of this process (/proc/self/status).
fn threads() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap()
}

/// User plus system CPU time of this process, in clock ticks (/proc/self/stat).
fn cpu_ticks() -> u64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn result(lines: &[String], key: &str) -> String {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(&format!("{key} ")))
        .unwrap_or_else(|| panic!("no {key} in {lines:?}"))
        .to_owned()
}

/// Async subscribers on `buses` buses in one runtime receive every message of
/// a publisher process, in order.
fn several_buses(rt: tokio::runtime::Runtime) {
    const BUSES: usize = 4;
    const COUNT: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let subs: Vec<Subscriber> = (0..BUSES)
        .map(|b| Subscriber::open_or_create(&format!("bus{b}"), &cfg(dir.path()), StartAt::Oldest).unwrap())
        .collect();
    let child = spawn("publish", dir.path(), &[&BUSES.to_string(), &COUNT.to_string()]);
    let got = rt.block_on(async {
        let tasks: Vec<_> = subs
            .into_iter()
            .map(|mut sub| {
                tokio::spawn(async move {
                    let mut next = 0u64;
                    while next < COUNT {
                        let v: u64 =
                            tokio::time::timeout(LIMIT, sub.recv_pod_async()).await.expect("a message").unwrap();
                        assert_eq!(v, next, "in order, none lost");
                        next += 1;
                    }
                    // Kept until the publisher finishes lingering.
                    (next, sub)
                })
            })
            .collect();
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap());
        }
        got
    });
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![COUNT; BUSES]);
    assert_eq!(finish(child, LIMIT), vec![format!("sent {COUNT}")]);
    assert_eq!(shmbus::core::waiter_threads(), 1, "one waiter thread for every bus of this process");
}

#[test]
fn several_buses_current_thread() {
    several_buses(tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap());
}

#[test]
fn several_buses_multi_thread() {
    several_buses(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap());
}

/// 10,000 receives cancelled in the middle of their wait (polled once,
/// pending, dropped) while a publisher process sends: nothing is lost, and
/// the bus's waiter accounting is back to zero afterwards.
#[test]
fn cancellation_loses_nothing_and_leaks_no_waiter() {
    cancellation(0);
}

/// The same with the subscriber in peer slot 64 or above, which is
/// accounted in `data_waiters` and its slot's `parked` word, not in the mask.
#[test]
fn cancellation_in_a_high_slot() {
    cancellation(64);
}

fn cancellation(fillers: usize) {
    const COUNT: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    // Idle publishers take the low slots (they hold nobody back).
    let _fillers: Vec<Publisher> =
        (0..fillers).map(|_| Publisher::open_or_create("bus0", &cfg(dir.path())).unwrap()).collect();
    let mut sub = Subscriber::open_or_create("bus0", &cfg(dir.path()), StartAt::Oldest).unwrap();
    assert!(sub.slot() as usize >= fillers);
    let child = spawn("publish", dir.path(), &["1", &COUNT.to_string()]);
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut next = 0u64;
    let mut cancelled = 0u32;
    let deadline = Instant::now() + LIMIT;
    while cancelled < 10_000 {
        assert!(Instant::now() < deadline, "timed out with {cancelled} cancellations, {next} messages");
        let mut fut = pin!(sub.recv_async());
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(m) => {
                let m = m.unwrap();
                assert_eq!(m.as_pod::<u64>(), Some(&next));
                next += 1;
            }
            Poll::Pending => cancelled += 1, // dropped here, mid-wait
        }
    }
    // A cancelled wait leaves nothing announced, even while the handle lives.
    assert_eq!(inspect("bus0", &cfg(dir.path())).unwrap().data_waiters, 0);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // The rest through select! against a timer that often wins.
        while next < COUNT {
            tokio::select! {
                m = sub.recv_async() => {
                    assert_eq!(m.unwrap().as_pod::<u64>(), Some(&next));
                    next += 1;
                }
                _ = tokio::time::sleep(Duration::from_micros(100)) => cancelled += 1,
            }
        }
    });
    assert_eq!(next, COUNT);
    assert!(cancelled >= 10_000, "{cancelled} cancellations");
    println!("{cancelled} cancelled waits");
    assert_eq!(inspect("bus0", &cfg(dir.path())).unwrap().data_waiters, 0);
    assert_eq!(finish(child, LIMIT), vec![format!("sent {COUNT}")]);
}

/// The eventfd under a burst from a publisher process, driven by a plain
/// poll(2) loop with the documented re-arm rule: every message, in order.
#[test]
fn event_fd_under_a_burst() {
    const COUNT: u64 = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let mut sub = Subscriber::open_or_create("bus0", &cfg(dir.path()), StartAt::Oldest).unwrap();
    let fd = sub.event_fd().unwrap();
    let child = spawn("publish", dir.path(), &["1", &COUNT.to_string()]);
    let mut next = 0u64;
    let mut polls = 0u64;
    let deadline = Instant::now() + LIMIT;
    while next < COUNT {
        while let Some(m) = sub.try_recv().unwrap() {
            assert_eq!(m.as_pod::<u64>(), Some(&next));
            next += 1;
        }
        if next == COUNT || sub.arm_event_fd().unwrap() {
            continue;
        }
        assert!(Instant::now() < deadline, "timed out at message {next}");
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd for the call.
        let n = unsafe { libc::poll(&mut pfd, 1, 10_000) };
        assert!(n == 1 || next == COUNT, "the eventfd was not signalled within 10 s (message {next})");
        polls += 1;
    }
    println!("{polls} polls for {COUNT} messages");
    sub.disarm();
    assert_eq!(inspect("bus0", &cfg(dir.path())).unwrap().data_waiters, 0);
    assert_eq!(finish(child, LIMIT), vec![format!("sent {COUNT}")]);
}

/// A subscriber process SIGKILLed while its async waiter is parked: the
/// publisher's waiter accounting recovers (data_waiters back to 0) while it
/// publishes, and the publisher never blocks on the dead subscriber.
#[test]
fn sigkill_while_parked_async() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(dir.path()).overflow(Overflow::Block);
    let mut publ = Publisher::open_or_create("victim", &cfg).unwrap();
    let mut child = spawn("parked", dir.path(), &[]);
    wait_for("the child's async waiter to be announced", LIMIT, || inspect("victim", &cfg).unwrap().data_waiters == 1);
    child.kill().unwrap();
    child.wait().unwrap();
    let mut sent = 0u64;
    wait_for("the dead waiter to be reaped from the accounting", LIMIT, || {
        for _ in 0..16 {
            publ.send(&sent.to_le_bytes()).unwrap();
            sent += 1;
        }
        inspect("victim", &cfg).unwrap().data_waiters == 0
    });
    println!("reaped after {sent} messages");
}

/// 100 async subscribers on 100 buses in one process use one waiter thread,
/// cost (nearly) no CPU while parked, and leave no waiter behind when their
/// futures are dropped.
#[test]
fn hundred_buses_one_waiter_thread() {
    let dir = tempfile::tempdir().unwrap();
    let out = finish(spawn("many", dir.path(), &["100"]), LIMIT);
    assert_eq!(result(&out, "waiter_threads"), "1", "{out:?}");
    assert_eq!(result(&out, "new_threads"), "1", "{out:?}");
    assert_eq!(result(&out, "waiters_after_drop"), "0", "{out:?}");
    println!("{out:?}");
}

/// Without futex_waitv (forced with SHMBUS_NO_FUTEX_WAITV=1 in the
/// subscriber process) every message still arrives, with one waiter thread
/// per async subscriber.
#[test]
fn fallback_without_futex_waitv() {
    const COUNT: u64 = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let mut pubs: Vec<Publisher> =
        (0..2).map(|b| Publisher::open_or_create(&format!("bus{b}"), &cfg(dir.path())).unwrap()).collect();
    let child = spawn("fallback", dir.path(), &["2", &COUNT.to_string()]);
    for p in &pubs {
        p.wait_for_subscribers(1, LIMIT).unwrap();
    }
    for i in 0..COUNT {
        for p in pubs.iter_mut() {
            p.send_pod(&i).unwrap();
        }
        if i % 97 == 0 {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
    let out = finish(child, LIMIT);
    assert_eq!(result(&out, "received"), COUNT.to_string());
    // One thread per handle that ever had to wait: at most two (a handle
    // that always found a message ready never started one).
    let threads: u64 = result(&out, "waiter_threads").parse().unwrap();
    assert!((1..=2).contains(&threads), "{out:?}");
}

/// send_async into a small ring held back by a slow subscriber process,
/// cancelled by a timer in the middle of its wait about as often as not:
/// every message arrives once, in order, and no space waiter is left.
#[test]
fn send_async_waits_for_space_and_cancels_cleanly() {
    const COUNT: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let small = cfg(dir.path()).capacity(4096);
    let mut publ = Publisher::open_or_create("small", &small).unwrap();
    let child = spawn("slow_reader", dir.path(), &[&COUNT.to_string()]);
    publ.wait_for_subscribers(1, LIMIT).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cancelled = rt.block_on(async {
        let mut cancelled = 0u64;
        let mut i = 0u64;
        let deadline = Instant::now() + LIMIT;
        while i < COUNT {
            assert!(Instant::now() < deadline, "timed out at message {i}");
            tokio::select! {
                r = publ.send_pod_async(&i) => {
                    r.unwrap();
                    i += 1;
                }
                _ = tokio::time::sleep(Duration::from_micros(200)) => cancelled += 1,
            }
        }
        cancelled
    });
    println!("{cancelled} cancelled sends");
    assert_eq!(inspect("small", &small).unwrap().space_waiters, 0);
    assert_eq!(finish(child, LIMIT), vec![format!("received {COUNT}")]);
}

/// A publisher process SIGKILLed with a claim outstanding at an async
/// subscriber's cursor: the subscriber's bounded arm and look-around finish
/// the dead claim, and the next message of another publisher arrives.
#[test]
fn async_subscriber_passes_a_dead_publishers_claim() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut sub = Subscriber::open_or_create("stuck", &cfg(dir.path()), StartAt::Latest).unwrap();
    let mut publ = Publisher::open_or_create("stuck", &cfg(dir.path())).unwrap();
    let mut child = spawn("claim_and_hang", dir.path(), &[]);
    // The child's first lines are the test harness's; it prints READY with the claim open.
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while line.trim() != "READY" {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the child ended before claiming");
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // Parked behind the claim, then the claimer dies.
        let waiting = tokio::time::timeout(Duration::from_millis(50), sub.recv_async()).await;
        assert!(waiting.is_err(), "nothing can be read before the claim is finished");
        child.kill().unwrap();
        child.wait().unwrap();
        publ.send(b"after").unwrap();
        let msg =
            tokio::time::timeout(LIMIT, sub.recv_async()).await.expect("the message after the dead claim").unwrap();
        assert_eq!(&msg[..], b"after");
    });
    assert_eq!(sub.abandoned(), 1);
    assert_eq!(inspect("stuck", &cfg(dir.path())).unwrap().data_waiters, 0);
}

/// A publisher process SIGSTOPped between claim and commit holds an async
/// send on a full block-mode ring back for the unblock timeout, not for
/// ever: the send abandons the stopped claim, as the blocking send does. A
/// subscriber that would wait on that claim for an hour itself (so only the
/// sender can abandon it) counts it as abandoned and receives every message,
/// and the claimer, continued, learns that its commit was abandoned.
#[test]
fn send_async_abandons_a_stopped_publishers_claim() {
    let dir = tempfile::tempdir().unwrap();
    let c = stalled_cfg(dir.path());
    let mut publ = Publisher::open_or_create("stalled", &c).unwrap();
    let flag = dir.path().join("claimed");
    let child = spawn("stop_claim", dir.path(), &[flag.to_str().unwrap()]);
    let pid = child.id();
    let _guard = KillOnPanic(pid);
    wait_for("the claimer to stop", LIMIT, || stopped(pid));
    let stopped_seq: u64 = std::fs::read_to_string(&flag).unwrap().parse().unwrap();
    // The subscriber takes a higher slot than the claimer: when both hold the
    // sender back at the same position, the scan names the lower slot, the
    // claim (the blocking send would wait on it just the same).
    let (tx, rx) = std::sync::mpsc::channel();
    let sub_cfg = c.clone().unblock_timeout(Duration::from_secs(3600));
    let reader = std::thread::spawn(move || {
        let mut sub = Subscriber::attach("stalled", &sub_cfg, StartAt::Oldest).unwrap();
        tx.send(sub.slot()).unwrap();
        let mut next = 0u64;
        loop {
            // Longer than the sender's deadline: a sender that never passes
            // the claim is what fails.
            let m = sub.recv_timeout(2 * LIMIT).expect("every message, past the abandoned claim");
            if counter(&m) == u64::MAX {
                return (next, sub.abandoned(), sub.lost());
            }
            assert_eq!(counter(&m), next, "in order, none lost");
            next += 1;
        }
    });
    let sub_slot = rx.recv_timeout(LIMIT).unwrap();
    let st = inspect("stalled", &c).unwrap();
    let claimer = st.peers.iter().find(|p| p.pid == pid).unwrap();
    assert!(claimer.slot < sub_slot, "{st:?}");
    // Fill the ring up to a lap past the stopped claim.
    let mut sent = 0u64;
    while publ.try_send(&numbered(sent)).is_ok() {
        sent += 1;
    }
    assert!(sent > 0);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let m = numbered(sent);
        tokio::time::timeout(LIMIT, publ.send_async(&m))
            .await
            .expect("the async send passes the stopped claim")
            .unwrap();
    });
    publ.send(&numbered(u64::MAX)).unwrap();
    let (received, abandoned, lost) = reader.join().unwrap();
    assert_eq!((received, abandoned, lost), (sent + 1, 1, 0), "the stopped claim is counted as abandoned");
    signal(pid, libc::SIGCONT);
    assert_eq!(finish(child, LIMIT), vec![format!("abandoned {stopped_seq}")]);
    assert_eq!(inspect("stalled", &c).unwrap().space_waiters, 0);
}

/// A subscriber process SIGSTOPped on a block-mode bus holds an async send
/// back as it holds the blocking send: without an eviction policy the
/// publisher names it (`blocked_by`: its pid, a subscriber, behind, waiting
/// for a second or more, measured across cancelled sends), `inspect` shows
/// how long it holds back, and nothing is lost once it is continued; with
/// `evict_after(300 ms)` the async send into the full ring completes by
/// evicting it, and once continued it reports exactly what it lost.
#[test]
fn send_async_names_and_evicts_a_stopped_subscriber() {
    for evict_ms in [0u64, 300] {
        let dir = tempfile::tempdir().unwrap();
        let c = stall_cfg(dir.path(), evict_ms);
        let mut publ = Publisher::open_or_create("stall", &c).unwrap();
        let flag = dir.path().join("attached");
        let child = spawn("count_sub", dir.path(), &[&evict_ms.to_string(), flag.to_str().unwrap()]);
        let pid = child.id();
        let _guard = KillOnPanic(pid);
        wait_for("the subscriber", LIMIT, || flag.exists());
        let mut sent = 0u64;
        for _ in 0..10 {
            publ.send(&numbered(sent)).unwrap();
            sent += 1;
        }
        wait_for("the subscriber to read them", LIMIT, || {
            inspect("stall", &c).unwrap().peers.iter().any(|p| p.pid == pid && p.lag_messages == 0)
        });
        signal(pid, libc::SIGSTOP);
        wait_for("the subscriber to stop", LIMIT, || stopped(pid));
        while publ.try_send(&numbered(sent)).is_ok() {
            sent += 1;
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        if evict_ms == 0 {
            // Sends cancelled every 100 ms until the publisher names the
            // subscriber: the wait is measured from when it first held back.
            let deadline = Instant::now() + LIMIT;
            while publ.blocked_by().is_none() {
                assert!(Instant::now() < deadline, "timed out waiting for blocked_by()");
                let m = numbered(sent);
                let r =
                    rt.block_on(async { tokio::time::timeout(Duration::from_millis(100), publ.send_async(&m)).await });
                assert!(r.is_err(), "sent into a ring held by a stopped subscriber: {r:?}");
            }
            let b = publ.blocked_by().unwrap().clone();
            assert_eq!((b.pid, b.kind), (pid, PeerKind::Subscriber));
            assert!(b.behind > 0 && b.waited >= Duration::from_secs(1), "{b:?}");
            let st = inspect("stall", &c).unwrap();
            let me = st.peers.iter().find(|p| p.pid == pid).unwrap();
            assert!(me.holding_back_ns > 0 && !me.evicted, "{me:?}");
            signal(pid, libc::SIGCONT);
            let m = numbered(sent);
            rt.block_on(async { tokio::time::timeout(LIMIT, publ.send_async(&m)).await })
                .expect("sent once continued")
                .unwrap();
            sent += 1;
            assert!(publ.blocked_by().is_none(), "cleared by the successful claim");
        } else {
            for _ in 0..3 {
                let m = numbered(sent);
                rt.block_on(async { tokio::time::timeout(LIMIT, publ.send_async(&m)).await })
                    .expect("the async send evicts the stopped subscriber")
                    .unwrap();
                sent += 1;
            }
            let st = inspect("stall", &c).unwrap();
            let me = st.peers.iter().find(|p| p.pid == pid).unwrap();
            assert!(me.evicted && me.holding_back_ns > 0, "{me:?}");
            signal(pid, libc::SIGCONT);
        }
        assert_eq!(inspect("stall", &c).unwrap().space_waiters, 0);
        publ.send(&numbered(u64::MAX)).unwrap();
        let out = finish(child, LIMIT);
        let received: u64 = result(&out, "received").parse().unwrap();
        let lost: u64 = result(&out, "lost").parse().unwrap();
        assert_eq!(received + lost, sent, "evict={evict_ms}: every message received or reported lost: {out:?}");
        if evict_ms == 0 {
            assert_eq!(lost, 0, "without eviction block mode stays lossless: {out:?}");
        } else {
            assert!(lost > 0, "the evicted subscriber reports its loss: {out:?}");
        }
    }
}
