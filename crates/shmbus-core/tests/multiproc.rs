//! Real processes over real bus files: the test binary re-executes itself
//! with a role in `SHMBUS_TEST_ROLE` (see `__child`). Every wait has a
//! deadline and waits for something observable.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shmbus_core::{Bus, BusConfig, Consumer, Overflow, PeerKind, Poll, Producer, StartAt, WaitStrategy};
use shmbus_testkit::{args, finish, spawn, wait_for};

fn cfg(dir: &Path) -> BusConfig {
    BusConfig::default().dir(dir).capacity(64 << 10).max_message(4096)
}

fn msg(publisher: u64, seq: u64, len: usize) -> Vec<u8> {
    let mut m: Vec<u8> = (0..len.max(16)).map(|i| (publisher * 7 + seq * 13 + i as u64) as u8).collect();
    m[..8].copy_from_slice(&publisher.to_le_bytes());
    m[8..16].copy_from_slice(&seq.to_le_bytes());
    m
}

fn parse(m: &[u8]) -> (u64, u64) {
    let p = u64::from_le_bytes(m[..8].try_into().unwrap());
    let s = u64::from_le_bytes(m[8..16].try_into().unwrap());
    assert_eq!(m, &msg(p, s, m.len())[..], "corrupt message");
    (p, s)
}

fn env_cfg() -> BusConfig {
    cfg(&PathBuf::from(std::env::var_os("SHMBUS_DIR").unwrap()))
}

/// The child entry point: does nothing unless started with a role.
#[test]
fn __child() {
    let Some(role) = shmbus_testkit::role() else { return };
    let a = args();
    match role.as_str() {
        "create-race" => {
            // Wait for the start signal, then race.
            let go = PathBuf::from(&a[0]);
            wait_for("go", Duration::from_secs(20), || go.exists());
            let bus = Bus::open_or_create("race", &env_cfg(), PeerKind::Subscriber).unwrap();
            println!("RESULT:{}", if bus.created() { "created" } else { "attached" });
            // Stay attached until told to go, so the file outlives the race.
            let done = PathBuf::from(&a[1]);
            wait_for("done", Duration::from_secs(20), || done.exists());
        }
        "publish" => {
            let id: u64 = a[0].parse().unwrap();
            let n: u64 = a[1].parse().unwrap();
            let go = PathBuf::from(&a[2]);
            let mut p = Producer::new(
                Bus::open_or_create("bus", &env_cfg(), PeerKind::Publisher).unwrap(),
                WaitStrategy::SpinThenPark,
            );
            wait_for("go", Duration::from_secs(20), || go.exists());
            for s in 0..n {
                p.send(&msg(id, s, 16 + (s as usize * 37) % 3000), None).unwrap();
            }
        }
        "publish-ow" => {
            let id: u64 = a[0].parse().unwrap();
            let n: u64 = a[1].parse().unwrap();
            let c = env_cfg().overflow(Overflow::Overwrite);
            let mut p = Producer::new(Bus::attach("bus", &c, PeerKind::Publisher).unwrap(), WaitStrategy::SpinThenPark);
            for s in 0..n {
                p.send(&msg(id, s, 16 + (s as usize * 37) % 3000), Some(Instant::now()))
                    .expect("overwrite send failed");
            }
        }
        "subscribe" => {
            let total: u64 = a[0].parse().unwrap();
            let mut c = Consumer::new(
                Bus::open_or_create("bus", &env_cfg(), PeerKind::Subscriber).unwrap(),
                StartAt::Latest,
                WaitStrategy::Park,
            );
            println!("RESULT:attached");
            let mut buf = Vec::new();
            let mut order = Vec::new();
            let mut next = std::collections::HashMap::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while (order.len() as u64) < total {
                match c.read(&mut buf, Some(deadline)).unwrap() {
                    Poll::Message { seq, .. } => {
                        let (p, s) = parse(&buf);
                        let e = next.entry(p).or_insert(0u64);
                        assert_eq!(s, *e, "publisher {p} reordered");
                        *e += 1;
                        order.push(seq);
                    }
                    other => panic!("unexpected {other:?} after {} messages", order.len()),
                }
            }
            let sum = order.iter().fold(0u64, |a, s| a.wrapping_mul(1_000_003).wrapping_add(*s));
            println!("RESULT:order {} {sum}", order.len());
        }
        "park-recv" => {
            let mut c = Consumer::new(
                Bus::attach("wake", &env_cfg(), PeerKind::Subscriber).unwrap(),
                StartAt::Latest,
                WaitStrategy::Park,
            );
            let mut buf = Vec::new();
            match c.read(&mut buf, Some(Instant::now() + Duration::from_secs(30))).unwrap() {
                Poll::Message { .. } => println!("RESULT:{}", String::from_utf8_lossy(&buf)),
                other => panic!("no wake-up: {other:?}"),
            }
        }
        "hold-loan" => {
            // Claim a frame and die (SIGKILL from the parent) before committing it.
            let mut p =
                Producer::new(Bus::attach("hole", &env_cfg(), PeerKind::Publisher).unwrap(), WaitStrategy::Park);
            let _claim = p.claim(100, None).unwrap();
            std::fs::write(&a[0], b"claimed").unwrap();
            std::thread::sleep(Duration::from_secs(60));
        }
        "stall-sub" => {
            let _c = Consumer::new(
                Bus::attach("stall", &env_cfg(), PeerKind::Subscriber).unwrap(),
                StartAt::Latest,
                WaitStrategy::Park,
            );
            std::fs::write(&a[0], b"attached").unwrap();
            std::thread::sleep(Duration::from_secs(60));
        }
        "attach-exit" => {
            let _b = Bus::attach("clean", &env_cfg(), PeerKind::Subscriber).unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}

/// Eight processes race to open_or_create one name: exactly one creates it,
/// the others attach to the finished bus.
#[test]
fn create_race_has_exactly_one_creator() {
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let go = dir.path().join(format!("go{round}"));
        let done = dir.path().join(format!("done{round}"));
        let children: Vec<_> =
            (0..8).map(|_| spawn("create-race", dir.path(), &[go.to_str().unwrap(), done.to_str().unwrap()])).collect();
        std::fs::write(&go, b"").unwrap();
        wait_for("eight attached peers", Duration::from_secs(30), || {
            shmbus_core::inspect("race", &cfg(dir.path())).map(|s| s.live_subscribers() == 8).unwrap_or(false)
        });
        std::fs::write(&done, b"").unwrap();
        let results: Vec<String> = children.into_iter().flat_map(|c| finish(c, Duration::from_secs(30))).collect();
        assert_eq!(results.iter().filter(|r| *r == "created").count(), 1, "{results:?}");
        assert_eq!(results.iter().filter(|r| *r == "attached").count(), 7, "{results:?}");
        // The last one out removed the file; no temporary files are left.
        wait_for("bus file removed", Duration::from_secs(10), || !dir.path().join("race.bus").exists());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(
            left.iter().all(|n| n.to_str().unwrap().starts_with("go") || n.to_str().unwrap().starts_with("done")),
            "{left:?}"
        );
    }
}

/// Two publisher processes, two subscriber processes: both subscribers see
/// every message, each publisher's order is kept, and both see the identical
/// total order.
#[test]
fn two_publishers_two_subscribers_share_one_total_order() {
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let n = 5000u64;
    let subs: Vec<_> = (0..2).map(|_| spawn("subscribe", dir.path(), &[&(2 * n).to_string()])).collect();
    wait_for("two subscribers", Duration::from_secs(30), || {
        shmbus_core::inspect("bus", &cfg(dir.path())).map(|s| s.live_subscribers() == 2).unwrap_or(false)
    });
    let pubs: Vec<_> = (0..2)
        .map(|id| spawn("publish", dir.path(), &[&id.to_string(), &n.to_string(), go.to_str().unwrap()]))
        .collect();
    wait_for("two publishers", Duration::from_secs(30), || {
        shmbus_core::inspect("bus", &cfg(dir.path())).map(|s| s.live_publishers() == 2).unwrap_or(false)
    });
    std::fs::write(&go, b"").unwrap();
    for p in pubs {
        finish(p, Duration::from_secs(60));
    }
    let orders: Vec<Vec<String>> = subs.into_iter().map(|s| finish(s, Duration::from_secs(60))).collect();
    let last: Vec<&String> = orders.iter().map(|o| o.last().unwrap()).collect();
    assert!(last[0].starts_with(&format!("order {}", 2 * n)), "{last:?}");
    assert_eq!(last[0], last[1], "subscribers saw different total orders");
    wait_for("bus removed after last detach", Duration::from_secs(10), || !dir.path().join("bus.bus").exists());
}

/// A subscriber parked on the futex (observably: the waiter count is 1) is
/// woken by a publisher in another process.
#[test]
fn futex_wakes_a_parked_subscriber_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let mut p = Producer::new(Bus::open_or_create("wake", &c, PeerKind::Publisher).unwrap(), WaitStrategy::Park);
    let child = spawn("park-recv", dir.path(), &[]);
    wait_for("the subscriber to park", Duration::from_secs(30), || {
        shmbus_core::inspect("wake", &c).map(|s| s.data_waiters == 1 && s.live_subscribers() == 1).unwrap_or(false)
    });
    p.send(b"wake up", None).unwrap();
    assert_eq!(finish(child, Duration::from_secs(30)), vec!["wake up".to_string()]);
}

/// A publisher SIGKILLed between claim and commit leaves a hole that the
/// subscriber turns into padding once the publisher's lock is gone; messages
/// from a live publisher behind it still arrive.
#[test]
fn hole_left_by_a_killed_publisher_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let mut sub = Consumer::new(
        Bus::open_or_create("hole", &c, PeerKind::Subscriber).unwrap(),
        StartAt::Latest,
        WaitStrategy::Park,
    );
    let mut live = Producer::new(Bus::open_or_create("hole", &c, PeerKind::Publisher).unwrap(), WaitStrategy::Park);
    let flag = dir.path().join("claimed");
    let mut child = spawn("hold-loan", dir.path(), &[flag.to_str().unwrap()]);
    wait_for("the claim", Duration::from_secs(30), || flag.exists());
    live.send(b"after the hole", None).unwrap();
    let mut buf = Vec::new();
    // While the claimer lives, the subscriber must wait (the frame is in flight).
    assert_eq!(sub.read(&mut buf, Some(Instant::now() + Duration::from_millis(100))).unwrap(), Poll::Empty);
    child.kill().unwrap();
    child.wait().unwrap();
    let got = sub.read(&mut buf, Some(Instant::now() + Duration::from_secs(10))).unwrap();
    assert!(matches!(got, Poll::Message { .. }), "{got:?}");
    assert_eq!(buf, b"after the hole");
    // The dead publisher's slot was reaped.
    let st = shmbus_core::inspect("hole", &c).unwrap();
    assert_eq!(st.peers.iter().filter(|p| p.kind == PeerKind::Publisher).count(), 1, "{:?}", st.peers);
}

/// Block mode: a stalled subscriber holds a publisher back; once it is
/// SIGKILLed the publisher goes on.
#[test]
fn killed_subscriber_stops_holding_back_publishers() {
    let dir = tempfile::tempdir().unwrap();
    let c = BusConfig::default().dir(dir.path()).capacity(4096).max_message(512);
    let mut p = Producer::new(Bus::open_or_create("stall", &c, PeerKind::Publisher).unwrap(), WaitStrategy::Park);
    let flag = dir.path().join("attached");
    let mut child = spawn("stall-sub", dir.path(), &[flag.to_str().unwrap()]);
    wait_for("the subscriber", Duration::from_secs(30), || flag.exists());
    let mut sent = 0;
    while p.send(&[1u8; 500], Some(Instant::now())).is_ok() {
        sent += 1;
        assert!(sent < 100, "the stalled subscriber does not hold the publisher back");
    }
    assert!(sent >= 5, "sent {sent}");
    child.kill().unwrap();
    child.wait().unwrap();
    // The next send blocks until the dead subscriber is reaped, then succeeds.
    p.send(&[2u8; 500], Some(Instant::now() + Duration::from_secs(10))).expect("publisher still blocked");
    for _ in 0..20 {
        p.send(&[3u8; 500], Some(Instant::now() + Duration::from_secs(10))).unwrap();
    }
}

/// Overwrite mode: a publisher in another process never blocks on a stalled
/// subscriber, which then learns exactly how many messages it lost.
#[test]
fn overwrite_reports_exact_loss_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path()).overflow(Overflow::Overwrite);
    let mut sub = Consumer::new(
        Bus::open_or_create("bus", &c, PeerKind::Subscriber).unwrap(),
        StartAt::Latest,
        WaitStrategy::Park,
    );
    let go = dir.path().join("go");
    std::fs::write(&go, b"").unwrap();
    let n = 3000u64;
    let child = spawn("publish-ow", dir.path(), &["0", &n.to_string(), go.to_str().unwrap()]);
    finish(child, Duration::from_secs(60));
    let mut buf = Vec::new();
    let (mut got, mut lost) = (0u64, 0u64);
    let mut last = None;
    loop {
        match sub.try_read(&mut buf).unwrap() {
            Poll::Message { .. } => {
                let (_, s) = parse(&buf);
                if let Some(l) = last {
                    assert!(s > l);
                }
                last = Some(s);
                got += 1;
            }
            Poll::Lagged { lost: l } => lost += l,
            Poll::Empty => break,
        }
    }
    assert!(lost > 0, "a 64 KiB ring cannot hold {n} messages");
    assert_eq!(got + lost, n, "received {got} + lost {lost} != published {n}");
    assert_eq!(last, Some(n - 1));
}

/// Detach removes the file when the last peer leaves normally; a SIGKILLed
/// last peer leaves a stale file that gc removes.
#[test]
fn detach_cleanup_and_gc() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    shmbus_core::create_bus("clean", &c).unwrap();
    finish(spawn("attach-exit", dir.path(), &[]), Duration::from_secs(30));
    assert!(!dir.path().join("clean.bus").exists(), "last peer out did not remove the bus");

    shmbus_core::create_bus("stall", &c.clone().capacity(4096).max_message(512)).unwrap();
    let flag = dir.path().join("attached");
    let mut child = spawn("stall-sub", dir.path(), &[flag.to_str().unwrap()]);
    wait_for("the subscriber", Duration::from_secs(30), || flag.exists());
    assert!(shmbus_core::gc(&c).unwrap().is_empty(), "gc removed a bus with a live peer");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(dir.path().join("stall.bus").exists());
    let removed = shmbus_core::gc(&c).unwrap();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(!dir.path().join("stall.bus").exists());
}
