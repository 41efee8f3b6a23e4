//! The public API across real processes: the test binary re-executes itself
//! with a role (`__child`); every bus lives in the test's own temp directory;
//! every wait has a deadline and waits for something observable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shmbus::{BusConfig, Overflow, Publisher, RecvError, SendError, StartAt, Subscriber};
use shmbus_testkit::{args, finish, wait_for};

fn cfg(dir: &Path) -> BusConfig {
    BusConfig::default().dir(dir).capacity(64 << 10).max_message(4096)
}

fn spawn(role: &str, dir: &Path, args: &[String]) -> std::process::Child {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    shmbus_testkit::spawn(role, dir, &args)
}

fn env_cfg() -> BusConfig {
    cfg(&PathBuf::from(std::env::var_os("SHMBUS_DIR").unwrap()))
}

/// A checked message: publisher id, sequence, and a body derived from both.
fn msg(publisher: u64, seq: u64) -> Vec<u8> {
    let len = 16 + ((publisher * 131 + seq * 37) % 2000) as usize;
    let mut m: Vec<u8> = (0..len).map(|i| (publisher * 7 + seq * 13 + i as u64) as u8).collect();
    m[..8].copy_from_slice(&publisher.to_le_bytes());
    m[8..16].copy_from_slice(&seq.to_le_bytes());
    m
}

fn parse(m: &[u8]) -> (u64, u64) {
    let p = u64::from_le_bytes(m[..8].try_into().unwrap());
    let s = u64::from_le_bytes(m[8..16].try_into().unwrap());
    assert_eq!(m, &msg(p, s)[..], "corrupt message from publisher {p} seq {s}");
    (p, s)
}

fn live_subscribers(dir: &Path, name: &str) -> usize {
    shmbus::inspect(name, &cfg(dir)).map(|s| s.live_subscribers()).unwrap_or(0)
}

/// The child entry point: does nothing unless started with a role.
#[test]
fn __child() {
    let Some(role) = shmbus_testkit::role() else { return };
    let a = args();
    match role.as_str() {
        // publish ID N: sends N checked messages.
        "publish" => {
            let (id, n): (u64, u64) = (a[0].parse().unwrap(), a[1].parse().unwrap());
            let c = if a.get(3).map(String::as_str) == Some("overwrite") {
                env_cfg().overflow(Overflow::Overwrite)
            } else {
                env_cfg()
            };
            let mut p = Publisher::open_or_create("bus", &c).unwrap();
            if let Some(go) = a.get(2).filter(|g| *g != "-") {
                wait_for("go", Duration::from_secs(30), || Path::new(go).exists());
            }
            for s in 0..n {
                p.send(&msg(id, s)).unwrap();
            }
        }
        // subscribe TOTAL FROM: receives TOTAL checked messages, prints a digest of the order.
        "subscribe" => {
            let total: usize = a[0].parse().unwrap();
            let start = a[1].parse::<StartAt>().unwrap();
            let mut sub = Subscriber::open_or_create("bus", &env_cfg(), start).unwrap();
            let mut next: HashMap<u64, u64> = HashMap::new();
            let mut order = Vec::with_capacity(total);
            while order.len() < total {
                let m = sub.recv_timeout(Duration::from_secs(60)).unwrap();
                let (p, s) = parse(&m);
                let e = next.entry(p).or_insert(0);
                assert_eq!(s, *e, "publisher {p}: expected seq {e}, got {s}");
                *e += 1;
                order.push((p, s));
            }
            assert!(matches!(sub.try_recv(), Ok(None)), "more messages than published");
            println!("RESULT:{order:?}");
        }
        other => panic!("unknown role {other}"),
    }
}

/// One publisher process to three subscriber processes: each subscriber gets
/// every message, in order, intact.
#[test]
fn one_publisher_three_subscribers_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3000u64;
    let subs: Vec<_> = (0..3).map(|_| spawn("subscribe", dir.path(), &[n.to_string(), "latest".into()])).collect();
    wait_for("three subscribers", Duration::from_secs(30), || live_subscribers(dir.path(), "bus") == 3);
    finish(spawn("publish", dir.path(), &["1".into(), n.to_string()]), Duration::from_secs(60));
    let expected: Vec<(u64, u64)> = (0..n).map(|s| (1, s)).collect();
    for s in subs {
        assert_eq!(finish(s, Duration::from_secs(60)), vec![format!("{expected:?}")]);
    }
}

/// Two publisher processes to two subscriber processes: both subscribers see
/// the identical total order, and each publisher's own order is kept.
#[test]
fn two_publishers_two_subscribers_identical_total_order() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3000u64;
    let go = dir.path().join("go");
    let subs: Vec<_> =
        (0..2).map(|_| spawn("subscribe", dir.path(), &[(2 * n).to_string(), "latest".into()])).collect();
    wait_for("two subscribers", Duration::from_secs(30), || live_subscribers(dir.path(), "bus") == 2);
    let pubs: Vec<_> = (0..2)
        .map(|id| spawn("publish", dir.path(), &[id.to_string(), n.to_string(), go.to_str().unwrap().into()]))
        .collect();
    wait_for("two publishers", Duration::from_secs(30), || {
        shmbus::inspect("bus", &cfg(dir.path())).map(|s| s.live_publishers() == 2).unwrap_or(false)
    });
    std::fs::write(&go, b"").unwrap();
    for p in pubs {
        finish(p, Duration::from_secs(60));
    }
    let orders: Vec<Vec<String>> = subs.into_iter().map(|s| finish(s, Duration::from_secs(60))).collect();
    assert_eq!(orders[0], orders[1], "the subscribers disagree on the total order");
}

/// Overwrite: a stalled subscriber is overrun, gets `Lagged { lost }` once
/// with the exact count, then continues with the oldest intact message.
#[test]
fn overwrite_stalled_subscriber_reports_exact_loss() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path()).overflow(Overflow::Overwrite);
    let mut sub = Subscriber::open_or_create("bus", &c, StartAt::Latest).unwrap();
    let n = 2000u64;
    finish(
        spawn("publish", dir.path(), &["5".into(), n.to_string(), "-".into(), "overwrite".into()]),
        Duration::from_secs(60),
    );
    let first = sub.recv_timeout(Duration::from_secs(5));
    let Err(RecvError::Lagged { lost }) = first else { panic!("expected Lagged, got {first:?}") };
    let mut received = 0u64;
    let mut expect = lost; // the oldest intact message has sequence number `lost`
    while let Some(m) = sub.try_recv().unwrap() {
        let (p, s) = parse(&m);
        assert_eq!((p, s), (5, expect), "not contiguous after the loss");
        expect += 1;
        received += 1;
    }
    assert_eq!(lost + received, n, "lost {lost} + received {received} != published {n}");
    assert_eq!(sub.lost(), lost);
}

/// Block: a stalled subscriber makes `try_send` return Full and `send` wait;
/// `send` resumes once the subscriber reads.
#[test]
fn block_stalled_subscriber_makes_publishers_wait() {
    let dir = tempfile::tempdir().unwrap();
    let c = BusConfig::default().dir(dir.path()).capacity(4096).max_message(512);
    let mut sub = Subscriber::open_or_create("bus", &c, StartAt::Latest).unwrap();
    let mut publ = Publisher::open_or_create("bus", &c).unwrap();
    let mut sent = 0u32;
    loop {
        match publ.try_send(&sent.to_le_bytes().repeat(100)) {
            Ok(()) => sent += 1,
            Err(SendError::Full) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(sent < 100, "never full");
    }
    let more = sent.to_le_bytes().repeat(100);
    assert!(matches!(publ.send_timeout(&more, Duration::from_millis(20)), Err(SendError::Timeout)));
    // A blocked send in another thread resumes when the subscriber reads.
    let sender = std::thread::spawn(move || {
        publ.send(b"after the stall").unwrap();
        publ
    });
    for i in 0..sent {
        let m = sub.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(&m[..], &i.to_le_bytes().repeat(100)[..]);
    }
    let m = sub.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(&m[..], b"after the stall");
    sender.join().unwrap();
}

/// Replay: a subscriber attaching at Oldest gets what the ring retains,
/// including messages published by a process that has exited.
#[test]
fn replay_from_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path()).persistent(true);
    {
        let _keep = Publisher::open_or_create("bus", &c).unwrap();
        let mut p = Publisher::open_or_create("bus", &c).unwrap();
        for s in 0..10 {
            p.send(&msg(9, s)).unwrap();
        }
    }
    let mut sub = Subscriber::attach("bus", &c, StartAt::Oldest).unwrap();
    for s in 0..10 {
        assert_eq!(parse(&sub.recv_timeout(Duration::from_secs(5)).unwrap()), (9, s));
    }
    let mut late = Subscriber::attach("bus", &c, StartAt::Latest).unwrap();
    assert!(late.try_recv().unwrap().is_none(), "Latest must not replay");
    drop((sub, late));
    shmbus::remove("bus", &c, false).unwrap();
}

/// A subscriber started before any publisher exists creates the bus and
/// receives from a publisher process that attaches later.
#[test]
fn subscriber_started_before_the_first_publisher() {
    let dir = tempfile::tempdir().unwrap();
    let n = 500u64;
    let sub = spawn("subscribe", dir.path(), &[n.to_string(), "latest".into()]);
    wait_for("the subscriber", Duration::from_secs(30), || live_subscribers(dir.path(), "bus") == 1);
    finish(spawn("publish", dir.path(), &["3".into(), n.to_string()]), Duration::from_secs(60));
    let expected: Vec<(u64, u64)> = (0..n).map(|s| (3, s)).collect();
    assert_eq!(finish(sub, Duration::from_secs(60)), vec![format!("{expected:?}")]);
    wait_for("the bus removed", Duration::from_secs(10), || !dir.path().join("bus.bus").exists());
}

/// Durability: a persistent bus in a disk directory, written and flushed by a
/// process that then exits, is replayed after reopening.
#[test]
fn persistent_bus_on_disk_survives_all_processes() {
    // A directory on the real filesystem (not tmpfs), under the target dir.
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = tempfile::tempdir_in(base).unwrap();
    let c = cfg(dir.path()).persistent(true);
    {
        let mut p = Publisher::open_or_create("journal", &c).unwrap();
        for s in 0..20 {
            p.send(&msg(4, s)).unwrap();
        }
        p.flush().unwrap();
    }
    assert!(dir.path().join("journal.bus").exists(), "a persistent bus must outlive its peers");
    let mut sub = Subscriber::attach("journal", &c, StartAt::Oldest).unwrap();
    for s in 0..20 {
        assert_eq!(parse(&sub.recv_timeout(Duration::from_secs(5)).unwrap()), (4, s));
    }
    assert!(sub.try_recv().unwrap().is_none());
    // gc leaves persistent buses alone.
    drop(sub);
    assert!(shmbus::gc(&c).unwrap().is_empty());
    assert!(dir.path().join("journal.bus").exists());
}

/// Settings that contradict an existing bus are an error naming both values.
#[test]
fn contradicting_settings_name_both_values() {
    let dir = tempfile::tempdir().unwrap();
    let _p = Publisher::open_or_create("bus", &cfg(dir.path())).unwrap();
    let err = Subscriber::open_or_create("bus", &cfg(dir.path()).capacity(1 << 20), StartAt::Latest).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("65536") && text.contains("1048576") && text.contains("bus.bus"), "{text}");
}

/// Typed messages: Pod round trip, length checked; serde round trip, decode errors are errors.
#[test]
fn typed_messages() {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Order {
        id: u64,
        symbol: String,
    }
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let mut sub = Subscriber::open_or_create("typed", &c, StartAt::Latest).unwrap();
    let mut publ = Publisher::open_or_create("typed", &c).unwrap();
    publ.send_pod(&[1u32, 2, 3]).unwrap();
    assert_eq!(sub.recv_pod::<[u32; 3]>().unwrap(), [1, 2, 3]);
    publ.send_pod(&7u16).unwrap();
    assert!(matches!(sub.recv_pod::<u64>(), Err(RecvError::WrongSize { expected: 8, found: 2 })));
    publ.send_serde(&Order { id: 9, symbol: "ABC".into() }).unwrap();
    assert_eq!(sub.recv_serde::<Order>().unwrap(), Order { id: 9, symbol: "ABC".into() });
    publ.send(&[0xff, 0xff, 0xff]).unwrap();
    assert!(matches!(sub.recv_serde::<Order>(), Err(RecvError::Decode(_))));
    publ.send(&5u64.to_ne_bytes()).unwrap();
    let m = sub.recv().unwrap();
    assert_eq!(bytemuck::pod_read_unaligned::<u64>(&m), 5);
}

/// Zero-copy on both sides: a loan written in place and a message borrowed in place.
#[test]
fn loan_and_borrow() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let mut sub = Subscriber::open_or_create("zc", &c, StartAt::Latest).unwrap();
    let mut publ = Publisher::open_or_create("zc", &c).unwrap();
    let mut loan = publ.loan(4000).unwrap();
    for (i, b) in loan.iter_mut().enumerate() {
        *b = i as u8;
    }
    loan.commit().unwrap();
    drop(publ.loan(100).unwrap()); // dropped: publishes nothing
    publ.send(b"next").unwrap();
    {
        let m = sub.recv_ref(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(m.len(), 4000);
        assert!(m.iter().enumerate().all(|(i, b)| *b == i as u8));
    }
    assert_eq!(&sub.recv_timeout(Duration::from_secs(5)).unwrap()[..], b"next");
    assert!(sub.try_recv().unwrap().is_none());
}
