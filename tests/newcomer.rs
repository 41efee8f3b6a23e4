//! Issue 10: the library as a newcomer meets it. One test (or a few) per
//! finding, through the facade only; every bus lives in the test's own temp
//! directory, and every wait has a deadline on something observable.

use std::path::{Path, PathBuf};
use std::time::Duration;

use shmbus::{BusConfig, Error, MessageType, Overflow, Publisher, RecvError, SendError, StartAt, Subscriber};
use shmbus_testkit::{finish, wait_for};

fn cfg(dir: &tempfile::TempDir) -> BusConfig {
    BusConfig::default().dir(dir.path())
}

fn env_cfg() -> BusConfig {
    BusConfig::default().dir(PathBuf::from(std::env::var_os("SHMBUS_DIR").unwrap()))
}

const LIMIT: Duration = Duration::from_secs(30);

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
struct Reading {
    micros: u64,
    celsius: f32,
    sensor: u32,
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum Event {
    Login { user: String },
    Order { id: u64, qty: f32 },
}

/// The child entry point: does nothing unless started with a role.
#[test]
fn __child() {
    let Some(role) = shmbus_testkit::role() else { return };
    let a = shmbus_testkit::args();
    match role.as_str() {
        // Publishes N numbered messages, lingers until they are read, reports how that went.
        "publish-linger" => {
            let n: u64 = a[0].parse().unwrap();
            let mut p = Publisher::open_or_create("life", &env_cfg()).unwrap();
            for i in 0..n {
                p.send(&i.to_le_bytes()).unwrap();
            }
            println!("RESULT:linger {:?}", p.linger(LIMIT).map_err(|e| e.to_string()));
        }
        // Subscribes, waits for a publisher, reads N messages.
        "subscribe" => {
            let n: u64 = a[0].parse().unwrap();
            let mut s = Subscriber::open_or_create("life", &env_cfg(), StartAt::Oldest).unwrap();
            s.wait_for_publishers(1, LIMIT).unwrap();
            for i in 0..n {
                let m = s.recv_timeout(LIMIT).unwrap();
                assert_eq!(&m[..], &i.to_le_bytes());
            }
            println!("RESULT:read {n}");
        }
        // Publishes Readings declared as such once a subscriber is there.
        "typed-publisher" => {
            let c = env_cfg().message_type(MessageType::pod::<Reading>());
            let mut p = Publisher::open_or_create("typed", &c).unwrap();
            println!("RESULT:attached");
            p.wait_for_subscribers(1, LIMIT).unwrap();
            p.send_pod(&Reading { micros: 1, celsius: 2.0, sensor: 3 }).unwrap();
            p.linger(LIMIT).unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}

// Finding 1: setting one size derives the other.
#[test]
fn capacity_alone_is_enough() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(&dir).capacity(1 << 16);
    let mut publ = Publisher::open_or_create("small", &c).expect("capacity alone must work");
    assert_eq!(publ.info().capacity, 1 << 16);
    assert_eq!(publ.max_message(), (1 << 14) - 32);
    publ.send(&[1; 100]).unwrap();
    for cap in [4096u64, 8192, 1 << 20, 1 << 24] {
        let name = format!("cap{cap}");
        let p = Publisher::open_or_create(&name, &cfg(&dir).capacity(cap)).unwrap();
        assert_eq!(p.info().capacity, cap);
    }
}

#[test]
fn max_message_alone_picks_a_capacity_that_fits() {
    let dir = tempfile::tempdir().unwrap();
    let mut publ = Publisher::open_or_create("big", &cfg(&dir).max_message(1 << 20)).unwrap();
    assert_eq!(publ.max_message(), 1 << 20);
    assert!(publ.info().capacity >= 4 << 20);
    publ.send(&vec![7u8; 1 << 20]).unwrap();
}

// Finding 2: only explicit settings are compared with an existing bus.
#[test]
fn open_or_create_accepts_an_existing_bus_when_nothing_contradicts_it() {
    let dir = tempfile::tempdir().unwrap();
    shmbus::create_bus("other", &cfg(&dir).capacity(64 << 10).overflow(Overflow::Overwrite)).unwrap();
    let sub = Subscriber::open_or_create("other", &cfg(&dir), StartAt::Latest).expect("defaults are not requests");
    assert_eq!(sub.info().capacity, 64 << 10);
    assert_eq!(sub.info().overflow, Overflow::Overwrite);
    let publ = Publisher::open_or_create("other", &cfg(&dir).capacity(64 << 10)).expect("a matching explicit setting");
    drop((sub, publ));
}

#[test]
fn an_explicit_setting_that_contradicts_the_bus_names_both_values_and_suggests_attach() {
    let dir = tempfile::tempdir().unwrap();
    shmbus::create_bus("other", &cfg(&dir).capacity(64 << 10).persistent(true)).unwrap();
    let err = Publisher::open_or_create("other", &cfg(&dir).capacity(1 << 20)).unwrap_err();
    assert!(matches!(err, Error::Incompatible { field: "capacity", .. }), "{err:?}");
    let msg = err.to_string();
    for want in ["'other'", "other.bus", "65536", "1048576", "attach"] {
        assert!(msg.contains(want), "{want:?} missing from: {msg}");
    }
    let err =
        Subscriber::open_or_create("other", &cfg(&dir).overflow(Overflow::Overwrite), StartAt::Latest).unwrap_err();
    assert!(matches!(err, Error::Incompatible { field: "overflow", .. }), "{err:?}");
    let err = Subscriber::open_or_create("other", &cfg(&dir).persistent(false), StartAt::Latest).unwrap_err();
    assert!(matches!(err, Error::Incompatible { field: "persistent", .. }), "{err:?}");
    shmbus::remove("other", &cfg(&dir), true).unwrap();
}

// Finding 6: errors name the bus and the file; a missing parent says so.
#[test]
fn a_missing_parent_directory_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nonexistent").join("dir");
    let err = Publisher::open_or_create("orders", &BusConfig::default().dir(&missing)).unwrap_err();
    assert!(matches!(err, Error::NoParentDir { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("'orders'") && msg.contains("orders.bus"), "{msg}");
    assert!(msg.contains(&dir.path().join("nonexistent").display().to_string()), "{msg}");
    assert!(msg.contains("does not exist") && !msg.contains("open_or_create"), "{msg}");
    let err = Subscriber::attach("orders", &BusConfig::default().dir(&missing), StartAt::Latest).unwrap_err();
    assert!(err.to_string().contains("'orders'"), "{err}");
}

#[test]
fn no_error_says_bus_with_an_empty_name() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let errors: Vec<String> = vec![
        Publisher::open_or_create("a", &BusConfig::default().dir(missing.join("x"))).unwrap_err().to_string(),
        Publisher::attach("a", &BusConfig::default().dir(&missing)).unwrap_err().to_string(),
        shmbus::list(&BusConfig::default().dir(&missing))
            .map(|_| ())
            .map_err(|e| e.to_string())
            .err()
            .unwrap_or_default(),
        shmbus::gc(&BusConfig::default().dir(&missing))
            .map(|_| ())
            .map_err(|e| e.to_string())
            .err()
            .unwrap_or_default(),
        shmbus::remove("a", &BusConfig::default().dir(&missing), false).unwrap_err().to_string(),
        Publisher::open_or_create("a", &cfg(&dir).capacity(1000)).unwrap_err().to_string(),
    ];
    for e in errors {
        assert!(!e.contains("bus ''"), "{e}");
    }
}

#[test]
fn library_suggestions_name_library_calls() {
    let dir = tempfile::tempdir().unwrap();
    let err = Subscriber::attach("absent", &cfg(&dir), StartAt::Latest).unwrap_err().to_string();
    assert!(err.contains("open_or_create") && !err.contains("shmbus create"), "{err}");
    shmbus::create_bus("twice", &cfg(&dir)).unwrap();
    let err = shmbus::create_bus("twice", &cfg(&dir)).unwrap_err().to_string();
    assert!(err.contains("attach") && !err.contains("shmbus rm"), "{err}");
    let _keep = Publisher::attach("twice", &cfg(&dir)).unwrap();
    let err = shmbus::remove("twice", &cfg(&dir), false).unwrap_err().to_string();
    assert!(!err.contains("--force"), "{err}");
}

// Finding 3: lifecycle you can see and control.
#[test]
fn publisher_first_then_a_subscriber_still_gets_everything() {
    let dir = tempfile::tempdir().unwrap();
    let child = shmbus_testkit::spawn("publish-linger", dir.path(), &["100"]);
    wait_for("the publisher to publish", LIMIT, || {
        shmbus::inspect("life", &cfg(&dir)).is_ok_and(|st| st.published == 100)
    });
    let mut sub = Subscriber::attach("life", &cfg(&dir), StartAt::Oldest).unwrap();
    for i in 0..100u64 {
        assert_eq!(&sub.recv_timeout(LIMIT).unwrap()[..], &i.to_le_bytes());
    }
    assert_eq!(finish(child, LIMIT), ["linger Ok(())"]);
}

#[test]
fn subscriber_first_waits_for_a_publisher() {
    let dir = tempfile::tempdir().unwrap();
    let child = shmbus_testkit::spawn("subscribe", dir.path(), &["10"]);
    wait_for("the subscriber", LIMIT, || {
        shmbus::inspect("life", &cfg(&dir)).is_ok_and(|st| st.ready_subscribers() == 1)
    });
    let mut publ = Publisher::open_or_create("life", &cfg(&dir)).unwrap();
    assert_eq!(publ.wait_for_subscribers(1, LIMIT).unwrap(), 1);
    for i in 0..10u64 {
        publ.send(&i.to_le_bytes()).unwrap();
    }
    publ.linger(LIMIT).unwrap();
    assert_eq!(finish(child, LIMIT), ["read 10"]);
}

#[test]
fn waits_time_out_when_nobody_comes() {
    let dir = tempfile::tempdir().unwrap();
    let mut publ = Publisher::open_or_create("alone", &cfg(&dir)).unwrap();
    assert!(matches!(publ.wait_for_subscribers(1, Duration::from_millis(20)), Err(SendError::Timeout)));
    assert_eq!(publ.wait_for_subscribers(0, Duration::ZERO).unwrap(), 0);
    publ.send(b"unread").unwrap();
    assert!(matches!(publ.linger(Duration::from_millis(20)), Err(SendError::Timeout)));
    let sub = Subscriber::attach("alone", &cfg(&dir), StartAt::Latest).unwrap();
    assert!(matches!(sub.wait_for_publishers(2, Duration::from_millis(20)), Err(RecvError::Timeout)));
    assert_eq!(sub.publishers(), 1);
    assert_eq!(publ.subscribers(), 1);
    // A persistent bus keeps its messages: nothing to wait for.
    let mut keep = Publisher::open_or_create("kept", &cfg(&dir).persistent(true)).unwrap();
    keep.send(b"kept").unwrap();
    keep.linger(Duration::ZERO).unwrap();
    shmbus::remove("kept", &cfg(&dir), true).unwrap();
}

// Finding 4: typed receive in every waiting form, iterators, bincode.
#[test]
fn typed_receive_in_every_form() {
    let dir = tempfile::tempdir().unwrap();
    let mut sub = Subscriber::open_or_create("t", &cfg(&dir), StartAt::Latest).unwrap();
    let mut publ = Publisher::open_or_create("t", &cfg(&dir)).unwrap();
    let r = Reading { micros: 5, celsius: -1.5, sensor: 9 };
    assert_eq!(sub.try_recv_pod::<Reading>().unwrap(), None);
    assert!(matches!(sub.recv_pod_timeout::<Reading>(Duration::from_millis(5)), Err(RecvError::Timeout)));
    publ.send_pod(&r).unwrap();
    publ.send_pod(&r).unwrap();
    publ.send_pod(&r).unwrap();
    assert_eq!(sub.try_recv_pod::<Reading>().unwrap(), Some(r));
    assert_eq!(sub.recv_pod_timeout::<Reading>(LIMIT).unwrap(), r);
    assert_eq!(sub.recv_pod::<Reading>().unwrap(), r);
    publ.send(&[1, 2, 3]).unwrap();
    assert!(matches!(sub.try_recv_pod::<Reading>(), Err(RecvError::WrongSize { expected: 16, found: 3 })));

    let e = Event::Login { user: "ada".into() };
    assert_eq!(sub.try_recv_serde::<Event>().unwrap(), None);
    assert!(matches!(sub.recv_serde_timeout::<Event>(Duration::from_millis(5)), Err(RecvError::Timeout)));
    for _ in 0..3 {
        publ.send_serde(&e).unwrap();
    }
    assert_eq!(sub.try_recv_serde::<Event>().unwrap().as_ref(), Some(&e));
    assert_eq!(sub.recv_serde_timeout::<Event>(LIMIT).unwrap(), e);
    assert_eq!(sub.recv_serde::<Event>().unwrap(), e);
    publ.send(&[0xff; 3]).unwrap();
    assert!(matches!(sub.try_recv_serde::<Event>(), Err(RecvError::Decode(_))));
}

#[test]
fn iterators_and_the_reexported_bincode() {
    let dir = tempfile::tempdir().unwrap();
    let mut sub = Subscriber::open_or_create("it", &cfg(&dir), StartAt::Latest).unwrap();
    let mut publ = Publisher::open_or_create("it", &cfg(&dir)).unwrap();
    assert_eq!(sub.try_iter().count(), 0);
    for i in 0..5u8 {
        publ.send(&[i]).unwrap();
    }
    let got: Vec<u8> = sub.try_iter().map(|m| m.unwrap()[0]).collect();
    assert_eq!(got, [0, 1, 2, 3, 4]);
    let e = Event::Order { id: 7, qty: 1.5 };
    publ.send_serde(&e).unwrap();
    publ.send(b"x").unwrap();
    let mut it = sub.iter();
    let first = it.next().unwrap().unwrap();
    let (decoded, used): (Event, usize) =
        shmbus::bincode::serde::decode_from_slice(&first, shmbus::bincode::config::standard()).unwrap();
    assert_eq!((decoded, used), (e, first.len()));
    assert_eq!(&it.next().unwrap().unwrap()[..], b"x");
}

// Finding 5: message types are checked at attach.
#[test]
fn a_serde_type_is_not_decoded_as_another() {
    let dir = tempfile::tempdir().unwrap();
    let events = cfg(&dir).message_type(MessageType::serde::<Event>());
    let mut publ = Publisher::open_or_create("ev", &events).unwrap();
    let tuple = cfg(&dir).message_type(MessageType::serde::<(u8, u8, u8, u8, u64, f32)>());
    let err = Subscriber::open_or_create("ev", &tuple, StartAt::Latest).unwrap_err();
    assert!(matches!(err, Error::TypeMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    for want in ["'ev'", "ev.bus", "Event (serde)", "(u8, u8, u8, u8, u64, f32) (serde)"] {
        assert!(msg.contains(want), "{want:?} missing from: {msg}");
    }
    // The same type, and an untyped handle, are welcome.
    let mut sub = Subscriber::attach("ev", &events, StartAt::Latest).unwrap();
    let mut raw = Subscriber::attach("ev", &cfg(&dir), StartAt::Latest).unwrap();
    publ.send_serde(&Event::Login { user: "x".into() }).unwrap();
    assert_eq!(sub.recv_serde::<Event>().unwrap(), Event::Login { user: "x".into() });
    assert!(!raw.recv().unwrap().is_empty());
}

#[test]
fn pod_types_differ_by_size_and_alignment_and_the_first_declaration_wins() {
    let dir = tempfile::tempdir().unwrap();
    // A subscriber may declare first (start order does not matter).
    let readings = cfg(&dir).message_type(MessageType::pod::<Reading>());
    let _logger = Subscriber::open_or_create("r", &readings, StartAt::Latest).unwrap();
    for other in [MessageType::pod::<[u8; 16]>(), MessageType::pod::<u64>(), MessageType::pod::<Reading>().schema(2)] {
        let err = Publisher::open_or_create("r", &cfg(&dir).message_type(other)).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::TypeMismatch { .. }), "{msg}");
        assert!(msg.contains("Reading (pod, 16 bytes, align 8)"), "{msg}");
    }
    // Two typed publishers of different types: the second is refused.
    let mut first = Publisher::open_or_create("r", &readings).unwrap();
    assert_eq!(first.message_type(), Some(MessageType::pod::<Reading>()));
    // A typed publisher refuses to send another Pod type.
    let err = first.send_pod(&7u64).unwrap_err();
    assert!(matches!(err, SendError::WrongType { .. }), "{err:?}");
    assert!(err.to_string().contains("Reading (pod, 16 bytes, align 8)") && err.to_string().contains("u64"), "{err}");
    first.send_pod(&Reading { micros: 0, celsius: 0.0, sensor: 0 }).unwrap();
    let second = cfg(&dir).message_type(MessageType::pod::<[u32; 4]>());
    assert!(matches!(Publisher::attach("r", &second), Err(Error::TypeMismatch { .. })));
}

#[test]
fn concurrent_typed_publishers_one_type_wins() {
    let dir = tempfile::tempdir().unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|i| {
            let c = cfg(&dir).message_type(MessageType::named(format!("T{}", i % 2)));
            std::thread::spawn(move || Publisher::open_or_create("race", &c).map_err(|e| e.to_string()))
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(ok.len(), 2, "{results:?}");
    for r in &results {
        if let Err(e) = r {
            assert!(e.contains("T0 (named)") && e.contains("T1 (named)"), "{e}");
        }
    }
}

#[test]
fn a_mismatched_type_is_refused_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let child = shmbus_testkit::spawn("typed-publisher", dir.path(), &[]);
    wait_for("the typed publisher", LIMIT, || {
        shmbus::inspect("typed", &cfg(&dir)).is_ok_and(|st| st.live_publishers() == 1)
    });
    let wrong = cfg(&dir).message_type(MessageType::pod::<u64>());
    let err = Subscriber::attach("typed", &wrong, StartAt::Latest).unwrap_err();
    assert!(matches!(err, Error::TypeMismatch { .. }), "{err:?}");
    let right = cfg(&dir).message_type(MessageType::pod::<Reading>());
    let st = shmbus::inspect("typed", &cfg(&dir)).unwrap();
    assert_eq!(st.message_type, Some(MessageType::pod::<Reading>()), "inspect shows the recorded type");
    let mut sub = Subscriber::attach("typed", &right, StartAt::Latest).unwrap();
    assert_eq!(sub.recv_pod_timeout::<Reading>(LIMIT).unwrap(), Reading { micros: 1, celsius: 2.0, sensor: 3 });
    assert_eq!(finish(child, LIMIT), ["attached"]);
}

// Finding 7: the docs a newcomer reads.
#[test]
fn no_link_to_a_repository_that_does_not_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["Cargo.toml", "crates/shmbus/Cargo.toml", "crates/shmbus/src/lib.rs", "README.md"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        assert!(!text.contains("example.invalid"), "{file}");
    }
    let front = std::fs::read_to_string(root.join("crates/shmbus/src/lib.rs")).unwrap();
    for section in ["# Add it", "```toml", "# Typed messages", "# Zero-copy", "# Lifecycle", "# Errors"] {
        assert!(front.contains(section), "front page lacks {section}");
    }
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(readme.contains("## Lifecycle"), "README lacks a Lifecycle section");
}
