//! Regression tests for the core contract (issue 9) with real processes,
//! real SIGSTOP/SIGCONT/SIGKILL and real mappings. The test binary re-executes
//! itself with a role (see `__child`). Every wait has a deadline and waits for
//! something observable.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shmbus_core::{Bus, BusConfig, ClaimError, Consumer, Overflow, PeerKind, Poll, Producer, StartAt, WaitStrategy};
use shmbus_testkit::{args, checked_message as msg, finish, parse_checked as parse, signal, spawn, stopped, wait_for};

const UNBLOCK: Duration = Duration::from_millis(100);
const LONG: Duration = Duration::from_secs(20);

fn cfg(dir: &Path, overflow: Overflow) -> BusConfig {
    BusConfig::default().dir(dir).capacity(64 << 10).max_message(4096).overflow(overflow).unblock_timeout(UNBLOCK)
}

fn env_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("SHMBUS_DIR").unwrap())
}

fn overflow_arg(o: Overflow) -> &'static str {
    if o == Overflow::Block {
        "block"
    } else {
        "overwrite"
    }
}

/// The child entry point: does nothing unless started with a role.
#[test]
fn __child() {
    let Some(role) = shmbus_testkit::role() else { return };
    let a = args();
    let dir = env_dir();
    match role.as_str() {
        // stop-claim OVERFLOW FLAG: claim a frame, stop ourselves (SIGSTOP)
        // before committing; once continued, write all over the claimed bytes
        // (a late write) and try to commit.
        "stop-claim" => {
            let c = cfg(&dir, a[0].parse().unwrap());
            let mut p = Producer::new(Bus::attach("stop", &c, PeerKind::Publisher).unwrap(), WaitStrategy::Park);
            let claim = p.claim(1000, None).unwrap();
            std::fs::write(&a[1], claim.seq().to_string()).unwrap();
            // SAFETY: raise(3) on ourselves.
            unsafe { libc::raise(libc::SIGSTOP) };
            // SAFETY: the claim's payload is ours to write until commit.
            unsafe { std::ptr::write_bytes(p.payload_ptr(&claim), 0xEE, claim.len()) };
            match p.commit(claim, false) {
                Ok(seq) => println!("RESULT:committed {seq}"),
                Err(ClaimError::Abandoned { seq }) => println!("RESULT:abandoned {seq}"),
                Err(e) => println!("RESULT:error {e:?}"),
            }
        }
        // park-sub NAME: attach a parking subscriber and wait for one message.
        "park-sub" => {
            let c = cfg(&dir, Overflow::Overwrite);
            let mut s = Consumer::new(
                Bus::attach(&a[0], &c, PeerKind::Subscriber).unwrap(),
                StartAt::Latest,
                WaitStrategy::Park,
            );
            let mut buf = Vec::new();
            let r = s.read(&mut buf, None).unwrap();
            println!("RESULT:{r:?}");
        }
        // count-sub OVERFLOW: read until a message of publisher 99 arrives;
        // report messages received, lost and abandoned.
        "count-sub" => {
            let c = cfg(&dir, a[0].parse().unwrap());
            let mut s = Consumer::new(
                Bus::attach("stall", &c, PeerKind::Subscriber).unwrap(),
                StartAt::Latest,
                WaitStrategy::Park,
            );
            std::fs::write(dir.join("attached"), b"1").unwrap();
            let mut buf = Vec::new();
            let (mut received, mut lost, mut last) = (0u64, 0u64, None::<u64>);
            loop {
                match s.read(&mut buf, Some(Instant::now() + LONG)).unwrap() {
                    Poll::Message { .. } => {
                        let (p, n) = parse(&buf);
                        if p == 99 {
                            break;
                        }
                        if let Some(l) = last {
                            assert!(n > l, "reordered: {n} after {l}");
                        }
                        last = Some(n);
                        received += 1;
                    }
                    Poll::Lagged { lost: l } => lost += l,
                    Poll::Empty => panic!("no message for {LONG:?}"),
                }
            }
            println!("RESULT:received {received} lost {lost} abandoned {}", s.abandoned_total());
        }
        other => panic!("unknown role {other}"),
    }
}

/// Finding 2 (and 6): a publisher stopped between claim and commit stops
/// nobody for longer than the unblock timeout, in both modes, with and
/// without a subscriber; its claim is counted as abandoned (not lost, no
/// gap); when it resumes, its late writes over the claimed bytes reach
/// nothing that others reused (three laps are published meanwhile), and its
/// commit fails as abandoned.
#[test]
fn stopped_publisher_is_abandoned_and_its_late_writes_land_nowhere() {
    for overflow in [Overflow::Block, Overflow::Overwrite] {
        for with_sub in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let c = cfg(dir.path(), overflow);
            let mut sub = with_sub.then(|| {
                Consumer::new(
                    Bus::open_or_create("stop", &c, PeerKind::Subscriber).unwrap(),
                    StartAt::Latest,
                    WaitStrategy::Park,
                )
            });
            let mut publ =
                Producer::new(Bus::open_or_create("stop", &c, PeerKind::Publisher).unwrap(), WaitStrategy::Park);
            let flag = dir.path().join("claimed");
            let child = spawn("stop-claim", dir.path(), &[overflow_arg(overflow), flag.to_str().unwrap()]);
            let pid = child.id();
            wait_for("the claim", LONG, || flag.exists());
            wait_for("the claimer to stop", LONG, || stopped(pid));
            let stopped_seq: u64 = std::fs::read_to_string(&flag).unwrap().parse().unwrap();
            let mut buf = Vec::new();
            let mut expect_n = 0u64;
            let mut round = |publ: &mut Producer, sub: &mut Option<Consumer>, n: u64| {
                let m = msg(1, n, 1000);
                // Each send must go through: the stopped claim may hold the
                // ring for an unblock timeout, not for ever.
                publ.send(&m, Some(Instant::now() + LONG)).unwrap_or_else(|e| panic!("send {n}: {e:?}"));
                if let Some(s) = sub.as_mut() {
                    match s.read(&mut buf, Some(Instant::now() + LONG)).unwrap() {
                        Poll::Message { .. } => {
                            let (p, got) = parse(&buf);
                            assert_eq!((p, got), (1, expect_n), "{overflow:?}: out of order");
                            expect_n += 1;
                        }
                        other => panic!("{overflow:?}: {other:?} at message {n}"),
                    }
                }
            };
            // Three laps while the claimer is stopped (skipping its quarantined bytes).
            for n in 0..200 {
                round(&mut publ, &mut sub, n);
            }
            signal(pid, libc::SIGCONT);
            let out = finish(child, LONG);
            assert_eq!(out, vec![format!("abandoned {stopped_seq}")], "{overflow:?} sub={with_sub}");
            // Three more laps over the bytes it wrote late.
            for n in 200..400 {
                round(&mut publ, &mut sub, n);
            }
            if let Some(s) = &sub {
                assert_eq!(s.abandoned_total(), 1, "{overflow:?}: the stopped claim is counted as abandoned");
                assert_eq!(s.lost_total(), 0, "{overflow:?}: nothing lost");
            }
        }
    }
}

/// Finding 3: a stopped subscriber holds block-mode publishers back visibly
/// (who, how far, for how long); with an eviction policy the publisher goes
/// on, and the subscriber, once continued, learns exactly what it lost.
#[test]
fn stalled_subscriber_is_visible_and_evictable() {
    for evict in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(dir.path(), Overflow::Block);
        if evict {
            c = c.evict_after(Duration::from_millis(300));
        }
        let mut publ =
            Producer::new(Bus::open_or_create("stall", &c, PeerKind::Publisher).unwrap(), WaitStrategy::Park);
        let child = spawn("count-sub", dir.path(), &["block"]);
        let pid = child.id();
        wait_for("the subscriber", LONG, || dir.path().join("attached").exists());
        let mut sent = 0u64;
        for _ in 0..10 {
            publ.send(&msg(1, sent, 1000), Some(Instant::now() + LONG)).unwrap();
            sent += 1;
        }
        let published = shmbus_core::inspect("stall", &c).unwrap().published;
        wait_for("the subscriber to read them", LONG, || {
            shmbus_core::inspect("stall", &c).unwrap().peers.iter().any(|p| p.pid == pid && p.lag_messages == 0)
                && shmbus_core::inspect("stall", &c).unwrap().published == published
        });
        signal(pid, libc::SIGSTOP);
        wait_for("the subscriber to stop", LONG, || stopped(pid));
        if !evict {
            // Fill the ring, then a send waits on the stopped subscriber and says who it is.
            let err = loop {
                match publ.send(&msg(1, sent, 1000), Some(Instant::now() + Duration::from_millis(1500))) {
                    Ok(_) => sent += 1,
                    Err(e) => break e,
                }
            };
            assert!(matches!(err, ClaimError::Full), "{err:?}");
            let b = publ.blocked_by().expect("the blocking subscriber is named");
            assert_eq!((b.pid, b.kind), (pid, PeerKind::Subscriber));
            assert!(b.behind > 0 && b.waited >= Duration::from_secs(1), "{b:?}");
            let st = shmbus_core::inspect("stall", &c).unwrap();
            let me = st.peers.iter().find(|p| p.pid == pid).unwrap();
            assert!(me.holding_back_ns > 0, "inspect shows how long it holds publishers back: {me:?}");
            signal(pid, libc::SIGCONT);
        } else {
            // Three laps go through: the subscriber is evicted.
            for _ in 0..200 {
                publ.send(&msg(1, sent, 1000), Some(Instant::now() + LONG)).unwrap();
                sent += 1;
            }
            assert!(shmbus_core::inspect("stall", &c).unwrap().peers.iter().any(|p| p.pid == pid && p.evicted));
            signal(pid, libc::SIGCONT);
        }
        publ.send(&msg(99, 0, 16), Some(Instant::now() + LONG)).unwrap();
        let out = finish(child, LONG);
        let fields: Vec<u64> = out[0].split(' ').skip(1).step_by(2).map(|v| v.parse().unwrap()).collect();
        let (received, lost, abandoned) = (fields[0], fields[1], fields[2]);
        assert_eq!(received + lost, sent, "evict={evict}: every message received or reported lost: {out:?}");
        assert_eq!(abandoned, 0);
        if evict {
            assert!(lost > 0, "evicted subscriber reports its loss: {out:?}");
        } else {
            assert_eq!(lost, 0, "without eviction block mode stays lossless: {out:?}");
        }
    }
}

/// Finding 4: a subscriber SIGKILLed while parked is taken out of the waiter
/// accounting (so publishers stop making wake syscalls for it).
#[test]
fn subscriber_killed_while_parked_is_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), Overflow::Overwrite);
    let mut publ =
        Producer::new(Bus::open_or_create("parked", &c, PeerKind::Publisher).unwrap(), WaitStrategy::BusySpin);
    let mut child = spawn("park-sub", dir.path(), &["parked"]);
    wait_for("the subscriber to park", LONG, || {
        shmbus_core::inspect("parked", &c)
            .map(|s| s.data_waiters == 1 && s.peers.iter().any(|p| p.parked))
            .unwrap_or(false)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let m = msg(1, 0, 64);
    let started = Instant::now();
    let mut n = 0u64;
    while shmbus_core::inspect("parked", &c).unwrap().data_waiters != 0 {
        assert!(started.elapsed() < LONG, "the dead parked subscriber is still counted after {n} messages");
        for _ in 0..1000 {
            publ.send(&m, None).unwrap();
            n += 1;
        }
    }
    println!("dead parked subscriber forgotten after {n} messages");
}

/// Finding 5: a subscriber parked with nothing outstanding makes no periodic
/// wake-ups (before: one per 20 ms park slice).
#[test]
fn idle_parked_subscriber_does_not_wake_up() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), Overflow::Block);
    let mut publ = Producer::new(Bus::open_or_create("idle", &c, PeerKind::Publisher).unwrap(), WaitStrategy::Park);
    let child = spawn("park-sub", dir.path(), &["idle"]);
    let pid = child.id();
    wait_for("the subscriber to park", LONG, || {
        shmbus_core::inspect("idle", &c).map(|s| s.data_waiters == 1).unwrap_or(false)
    });
    let before = shmbus_testkit::voluntary_switches(pid);
    // A measurement window, not a synchronisation: count its wake-ups over one second.
    std::thread::sleep(Duration::from_secs(1));
    let after = shmbus_testkit::voluntary_switches(pid);
    println!("idle parked subscriber: {} wake-ups in 1 s", after - before);
    assert!(after - before <= 2, "idle parked subscriber woke {} times in 1 s", after - before);
    publ.send(b"wake up", None).unwrap();
    assert_eq!(finish(child, LONG).len(), 1);
}

/// Finding 8: claims and borrows are linear: a second claim while one is
/// open is refused, and a stale release cannot move a cursor backwards.
#[test]
fn claims_and_borrows_cannot_be_misused() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), Overflow::Block);
    let mut sub = Consumer::new(
        Bus::open_or_create("lin", &c, PeerKind::Subscriber).unwrap(),
        StartAt::Latest,
        WaitStrategy::Park,
    );
    let mut publ = Producer::new(Bus::open_or_create("lin", &c, PeerKind::Publisher).unwrap(), WaitStrategy::Park);
    let first = publ.try_claim(8).unwrap();
    assert!(publ.try_claim(8).is_none(), "a second claim while one is open");
    assert!(matches!(publ.claim(8, None), Err(ClaimError::Pending)));
    assert!(matches!(publ.send(b"x", None), Err(ClaimError::Pending)));
    publ.commit(first, false).unwrap();
    publ.send(b"second", None).unwrap();
    let a = sub.try_borrow().unwrap().unwrap();
    let again = sub.try_borrow().unwrap().unwrap(); // the same frame, twice
    sub.release(a);
    let cursor = sub.cursor();
    sub.release(again); // stale: ignored
    assert_eq!(sub.cursor(), cursor, "a stale release moved the cursor");
    let mut buf = Vec::new();
    assert!(matches!(sub.try_read(&mut buf).unwrap(), Poll::Message { .. }));
    assert_eq!(buf, b"second");
}
