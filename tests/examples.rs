//! Every program in examples/ is built and run as a real process, with its
//! buses in the test's own directory (`SHMBUS_DIR`) and a deadline after
//! which it is killed; the pairs run in both start orders.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use shmbus::BusConfig;
use shmbus_testkit::wait_for;

const LIMIT: Duration = Duration::from_secs(60);

/// Builds the examples once (the same profile and target directory as this
/// test) and returns the directory holding them.
fn examples_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // target/<profile>/deps/<this test> -> target/<profile>/examples
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_owned();
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "--examples", "--quiet"]).current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build --examples");
        assert!(status.success(), "building the examples failed");
        profile_dir.join("examples")
    })
}

fn start(name: &str, dir: &Path, args: &[&str]) -> Child {
    Command::new(examples_dir().join(name))
        .args(args)
        .env("SHMBUS_DIR", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start example {name}: {e}"))
}

/// Waits for the example to exit (killing it after `LIMIT`): (success, stdout, stderr).
fn finish(mut child: Child, name: &str) -> (bool, String, String) {
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("example {name} did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (status.success(), out, err)
}

fn run_ok(name: &str, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = finish(start(name, dir.path(), args), name);
    assert!(ok, "example {name} failed\nstdout:\n{out}\nstderr:\n{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "example {name} left a bus behind");
    out
}

fn bus_status(dir: &Path, name: &str) -> Option<shmbus::BusStatus> {
    shmbus::inspect(name, &BusConfig::default().dir(dir)).ok()
}

#[test]
fn publisher_then_subscriber() {
    let dir = tempfile::tempdir().unwrap();
    let publ = start("publisher", dir.path(), &["5"]);
    wait_for("the publisher to send 5", LIMIT, || bus_status(dir.path(), "hello").is_some_and(|s| s.published == 5));
    let sub = start("subscriber", dir.path(), &[]);
    let (ok, out, err) = finish(publ, "publisher");
    assert!(ok && out.contains("all read"), "{out}{err}");
    let (ok, out, err) = finish(sub, "subscriber");
    assert!(ok, "{out}{err}");
    for i in 0..5 {
        assert!(out.contains(&format!("got hello #{i} ")), "{out}");
    }
}

#[test]
fn subscriber_then_publisher() {
    let dir = tempfile::tempdir().unwrap();
    let sub = start("subscriber", dir.path(), &[]);
    wait_for("the subscriber", LIMIT, || bus_status(dir.path(), "hello").is_some_and(|s| s.ready_subscribers() == 1));
    let publ = start("publisher", dir.path(), &["5"]);
    let (ok, out, err) = finish(publ, "publisher");
    assert!(ok && out.contains("all read"), "{out}{err}");
    let (ok, out, err) = finish(sub, "subscriber");
    assert!(ok && out.contains("got hello #4 "), "{out}{err}");
}

const COUNT: &str = "3000";

fn logger_saw_everything(out: &str) {
    assert!(out.contains(&format!("logger: received {COUNT} readings, 0 missing")), "{out}");
}

#[test]
fn sensor_then_logger() {
    for serde in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["--count", COUNT];
        if serde {
            args.push("--serde");
        }
        let sensor = start("sensor", dir.path(), &args);
        wait_for("the sensor to publish", LIMIT, || {
            bus_status(dir.path(), "readings").is_some_and(|s| s.published.to_string() == COUNT)
        });
        let logger = start("logger", dir.path(), &args);
        let (ok, out, err) = finish(sensor, "sensor");
        assert!(ok && out.contains("sensor: delivered"), "{out}{err}");
        let (ok, out, err) = finish(logger, "logger");
        assert!(ok, "{out}{err}");
        logger_saw_everything(&out);
    }
}

#[test]
fn logger_then_sensor() {
    for serde in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["--count", COUNT];
        if serde {
            args.push("--serde");
        }
        let logger = start("logger", dir.path(), &args);
        wait_for("the logger", LIMIT, || {
            bus_status(dir.path(), "readings").is_some_and(|s| s.ready_subscribers() == 1)
        });
        let sensor = start("sensor", dir.path(), &args);
        let (ok, out, err) = finish(sensor, "sensor");
        assert!(ok && out.contains("sensor: delivered"), "{out}{err}");
        let (ok, out, err) = finish(logger, "logger");
        assert!(ok, "{out}{err}");
        logger_saw_everything(&out);
    }
}

#[test]
fn a_logger_of_another_type_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sensor = start("sensor", dir.path(), &["--count", "10", "--wait", "30"]);
    wait_for("the sensor to publish", LIMIT, || bus_status(dir.path(), "readings").is_some_and(|s| s.published == 10));
    let (ok, out, err) = finish(start("logger", dir.path(), &["--serde"]), "logger --serde");
    assert!(!ok, "a serde logger on a Pod bus must be refused: {out}");
    assert!(
        err.contains("carries messages of type Reading (pod, 24 bytes, align 8)") && err.contains("Sample (serde)"),
        "{err}"
    );
    // The right logger still gets everything.
    let (ok, out, err) = finish(start("logger", dir.path(), &[]), "logger");
    assert!(ok && out.contains("received 10 readings, 0 missing"), "{out}{err}");
    let (ok, out, err) = finish(sensor, "sensor");
    assert!(ok && out.contains("sensor: delivered"), "{out}{err}");
}

#[test]
fn typed() {
    let out = run_ok("typed", &[]);
    assert!(out.contains("pod:") && out.contains("serde: Order"), "{out}");
}

#[test]
fn zero_copy() {
    let out = run_ok("zero_copy", &[]);
    assert_eq!(out.matches("intact: true").count(), 3, "{out}");
}

#[test]
fn overwrite() {
    let out = run_ok("overwrite", &[]);
    assert!(out.contains("total 10000"), "{out}");
}

#[test]
fn lifecycle() {
    let out = run_ok("lifecycle", &[]);
    for want in [
        "a late subscriber read [0, 1, 2]",
        "last one out removed the bus: true",
        "subscribers attached: 1",
        "publishers attached: 1",
        "persistent bus still there: true",
        "removed: true",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
}

#[test]
fn settings() {
    let out = run_ok("settings", &[]);
    for want in
        ["max_message 16352", "capacity 8388608", "65536 bytes, overwrite", "refused: bus", "missing directory: bus"]
    {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
}

#[test]
fn iterate() {
    let out = run_ok("iterate", &[]);
    assert!(out.contains(r#"try_iter: ["alpha", "beta", "gamma"]"#) && out.contains("iter: epsilon"), "{out}");
}

#[test]
fn epoll() {
    let out = run_ok("epoll", &[]);
    for i in 0..5 {
        assert!(out.contains(&format!("got tick {i}\n")), "{out}");
    }
    assert!(out.contains("end after"), "{out}");
}

#[test]
fn async_subscriber() {
    let out = run_ok("async_subscriber", &[]);
    for i in 0..10 {
        assert!(out.contains(&format!("got price {}\n", 100 + i)), "{out}");
    }
    assert!(out.contains("received 10 prices"), "{out}");
}

/// Every example in examples/ has a test here.
#[test]
fn every_example_is_run() {
    let this = include_str!("examples.rs");
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            assert!(this.contains(&format!("\"{name}\"")), "examples/{name}.rs has no test in tests/examples.rs");
        }
    }
}
