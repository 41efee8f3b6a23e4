//! Issue 10: the library as a newcomer meets it. One test (or a few) per
//! finding, through the facade only; every bus lives in the test's own temp
//! directory, and every wait has a deadline on something observable.

use std::time::Duration;

use shmbus::{BusConfig, Error, Overflow, Publisher, StartAt, Subscriber};

fn cfg(dir: &tempfile::TempDir) -> BusConfig {
    BusConfig::default().dir(dir.path())
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
    let _ = Duration::ZERO;
}
