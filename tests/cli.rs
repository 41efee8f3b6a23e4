//! End-to-end tests of the `shmbus` binary: every test runs it as real
//! processes in a directory of its own, waits on observable conditions (the
//! bus's peer table, files, process exits) with deadlines, and kills for real.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shmbus::{BusConfig, BusStatus, PeerKind};

/// Generous: these bound waits on a loaded 2-core machine; they are not speed assertions.
const DEADLINE: Duration = Duration::from_secs(30);

/// The `shmbus` binary, built once per test run. `cargo test` of the root
/// package does not build another package's binary, so ask cargo for it (a
/// no-op when it is up to date) and take the path cargo reports.
fn shmbus_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "shmbus-cli", "--bin", "shmbus", "--message-format=json-render-diagnostics"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::inherit());
        // The target directory this test binary lives in: <target>/<profile>/deps/cli-*.
        if std::env::var_os("CARGO_TARGET_DIR").is_none() {
            if let Some(target) = std::env::current_exe().ok().and_then(|e| e.ancestors().nth(3).map(Path::to_path_buf))
            {
                cmd.arg("--target-dir").arg(target);
            }
        }
        let out = cmd.output().expect("run cargo build -p shmbus-cli");
        assert!(out.status.success(), "cargo build -p shmbus-cli failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "shmbus")
            .find_map(|v| v["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported no shmbus executable")
    })
}

/// A `shmbus --dir DIR ...` command.
fn shmbus(dir: &Path) -> Command {
    let mut cmd = Command::new(shmbus_bin());
    cmd.arg("--dir").arg(dir).env_remove("SHMBUS_DIR").stdin(Stdio::null());
    cmd
}

/// Runs to completion (bounded) and returns (exit code, stdout, stderr).
fn run(cmd: &mut Command) -> (i32, String, String) {
    let mut p = Proc::spawn(cmd);
    p.finish()
}

/// A running `shmbus` process whose stdout and stderr are collected, killed if the test fails.
struct Proc {
    child: Child,
    out: Option<JoinHandle<String>>,
    err: Option<JoinHandle<String>>,
}

fn collect(r: Option<impl std::io::Read + Send + 'static>) -> Option<JoinHandle<String>> {
    let mut r = r?;
    Some(std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    }))
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start shmbus");
        let out = collect(child.stdout.take());
        let err = collect(child.stderr.take());
        Proc { child, out, err }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with the pid of our own child, which has not been
        // reaped (we hold its Child), so the pid cannot have been reused.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }

    fn wait(&mut self) -> ExitStatus {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            assert!(Instant::now() < end, "shmbus (pid {}) did not exit within {DEADLINE:?}", self.pid());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the exit and returns (exit code, stdout, stderr); a death by
    /// signal is 128 + the signal, as a shell reports it.
    fn finish(&mut self) -> (i32, String, String) {
        let st = self.wait();
        let code = st.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + st.signal().unwrap_or(0)
        });
        let out = self.out.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        let err = self.err.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        assert!(!err.contains("panicked"), "shmbus panicked: {err}");
        (code, out, err)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn cfg(dir: &Path) -> BusConfig {
    BusConfig::default().dir(dir)
}

fn status(dir: &Path, name: &str) -> Option<BusStatus> {
    shmbus::inspect(name, &cfg(dir)).ok()
}

/// Polls `cond` until it holds; fails the test after [`DEADLINE`].
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn live_subscribers(dir: &Path, name: &str) -> usize {
    status(dir, name).map_or(0, |s| s.live_subscribers())
}

fn bus_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.bus"))
}

fn numbers(n: u32) -> String {
    (1..=n).map(|i| format!("{i}\n")).collect()
}

/// Starts `pub NAME --stdin` with `input` written to its stdin.
fn pub_stdin(dir: &Path, name: &str, input: String, extra: &[&str]) -> Proc {
    let mut cmd = shmbus(dir);
    cmd.args(["pub", name, "--stdin"]).args(extra).stdin(Stdio::piped());
    let mut p = Proc::spawn(&mut cmd);
    let mut stdin = p.child.stdin.take().expect("stdin");
    std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    p
}

const SUMMARY_OK_PREFIX: &str = "received=";

fn summary_fields(line: &str) -> Vec<(String, u64)> {
    line.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

fn summary_value(line: &str, key: &str) -> u64 {
    summary_fields(line).into_iter().find(|(k, _)| k == key).map(|(_, v)| v).unwrap_or_else(|| {
        panic!("no {key}= in summary {line:?}");
    })
}

// ------------------------------------------------------------------ tests

#[test]
fn stdin_pipeline_subscriber_first_delivers_every_line_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut sub = Proc::spawn(shmbus(dir.path()).args(["sub", "ticks", "--count", "1000", "--from", "oldest"]));
    wait_for("the subscriber to attach", || live_subscribers(dir.path(), "ticks") == 1);
    let mut publ = pub_stdin(dir.path(), "ticks", numbers(1000), &[]);
    let (code, out, err) = sub.finish();
    assert_eq!(code, 0, "sub: {err}");
    assert_eq!(out, numbers(1000));
    let (code, _, err) = publ.finish();
    assert_eq!(code, 0, "pub: {err}");
    wait_for("the last peer out to remove the bus", || !bus_file(dir.path(), "ticks").exists());
}

#[test]
fn stdin_pipeline_publisher_first_keeps_the_messages_for_a_late_subscriber() {
    let dir = tempfile::tempdir().unwrap();
    // The publisher finishes before any subscriber exists: it keeps the bus
    // (and its messages) for a while (--linger) instead of removing it.
    let mut publ = pub_stdin(dir.path(), "ticks", numbers(1000), &["--linger", "3"]);
    wait_for("all lines to be published", || status(dir.path(), "ticks").is_some_and(|s| s.published == 1000));
    let (code, out, err) =
        run(shmbus(dir.path()).args(["sub", "ticks", "--count", "1000", "--from", "oldest", "--timeout", "20"]));
    assert_eq!(code, 0, "sub: {err}");
    assert_eq!(out, numbers(1000));
    let (code, _, err) = publ.finish();
    assert_eq!(code, 0, "pub: {err}");
    wait_for("the last peer out to remove the bus", || !bus_file(dir.path(), "ticks").exists());
}

#[test]
fn lingering_publisher_leaves_once_a_subscriber_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    // --linger far beyond the test's deadline: the publisher must leave
    // because the subscriber caught up, not because the time ran out.
    let mut publ = pub_stdin(dir.path(), "ticks", numbers(500), &["--linger", "600"]);
    wait_for("all lines to be published", || status(dir.path(), "ticks").is_some_and(|s| s.published == 500));
    let mut sub = Proc::spawn(shmbus(dir.path()).args(["sub", "ticks", "--from", "oldest"]));
    let (code, _, err) = publ.finish();
    assert_eq!(code, 0, "pub: {err}");
    let st = status(dir.path(), "ticks").expect("the subscriber keeps the bus");
    assert_eq!(st.live_publishers(), 0);
    assert_eq!(st.live_subscribers(), 1);
    sub.signal(libc::SIGTERM);
    let (code, out, err) = sub.finish();
    assert_eq!(code, 0, "sub: {err}");
    assert_eq!(out, numbers(500));
    assert!(!bus_file(dir.path(), "ticks").exists());
}

#[test]
fn verify_two_publishers() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3000;
    let total = (2 * n).to_string();
    let mut sub = Proc::spawn(shmbus(dir.path()).args(["sub", "v", "--verify", "--count", &total, "--timeout", "20"]));
    wait_for("the subscriber to attach", || live_subscribers(dir.path(), "v") == 1);
    let count = n.to_string();
    let mut pubs: Vec<Proc> = [("100", "0"), ("64", "0")]
        .iter()
        .map(|(size, linger)| {
            Proc::spawn(shmbus(dir.path()).args(["pub", "v", "--count", &count, "--size", size, "--linger", linger]))
        })
        .collect();
    let (code, out, err) = sub.finish();
    assert_eq!(out, format!("received={total} lost=0 corrupt=0 reordered=0 duplicated=0\n"), "stderr: {err}");
    assert_eq!(code, 0, "{err}");
    for p in &mut pubs {
        let (code, _, err) = p.finish();
        assert_eq!(code, 0, "pub: {err}");
    }
}

#[test]
fn timeout_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(shmbus(dir.path()).args(["sub", "quiet", "--timeout", "0.2"]));
    assert_eq!(code, 3, "{err}");
    assert_eq!(out, "");
    assert!(err.contains("quiet"), "the message names the bus: {err}");
    // With --verify the summary is printed however the run ends.
    let (code, out, _) = run(shmbus(dir.path()).args(["sub", "quiet", "--timeout", "0.2", "--verify"]));
    assert_eq!(code, 3);
    assert_eq!(out, "received=0 lost=0 corrupt=0 reordered=0 duplicated=0\n");
    assert!(!bus_file(dir.path(), "quiet").exists(), "the subscriber removed the bus it created");
}

#[test]
fn invalid_names_are_rejected_before_touching_the_filesystem() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("never-created");
    let long = "x".repeat(65);
    for name in ["../x", "a/b", "", long.as_str(), ".hidden", "x y"] {
        for args in [
            vec!["pub", name, "--count", "1"],
            vec!["sub", name, "--timeout", "0.1"],
            vec!["create", name],
            vec!["inspect", name],
            vec!["rm", name],
        ] {
            let (code, out, err) = run(shmbus(&dir).args(&args));
            assert_eq!(code, 2, "{args:?}: usage error expected, stderr: {err}");
            assert_eq!(out, "");
            assert!(err.contains("invalid bus name"), "{args:?}: {err}");
        }
    }
    assert!(!dir.exists(), "nothing may be created for an invalid name");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn contradicting_option_names_both_values() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(shmbus(dir.path()).args(["create", "cfg", "--capacity", "64KiB", "--persistent"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created bus 'cfg'"), "{out}");
    assert!(bus_file(dir.path(), "cfg").exists());

    let (code, _, err) = run(shmbus(dir.path()).args(["sub", "cfg", "--capacity", "1MiB", "--timeout", "0.1"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("shmbus: ") && err.trim_end().lines().count() == 1, "one line: {err}");
    for want in ["'cfg'", "cfg.bus", "capacity", "65536", "1048576"] {
        assert!(err.contains(want), "{want:?} missing from {err}");
    }
    let (code, _, err) = run(shmbus(dir.path()).args(["pub", "cfg", "--overflow", "overwrite", "--count", "1"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("block") && err.contains("overwrite"), "{err}");
    let (code, _, err) = run(shmbus(dir.path()).args(["pub", "cfg", "--max-message", "100", "--count", "1"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("max_message") && err.contains("100"), "{err}");

    // Options that agree, or none at all, attach to the existing bus.
    let (code, _, err) =
        run(shmbus(dir.path()).args(["pub", "cfg", "--capacity", "64KiB", "--persistent", "--count", "3"]));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(shmbus(dir.path()).args(["pub", "cfg", "--count", "3"]));
    assert_eq!(code, 0, "{err}");
    let st = status(dir.path(), "cfg").expect("the persistent bus is still there");
    assert_eq!(st.header.capacity, 64 << 10);
    assert_eq!(st.published, 6);
    let (code, _, err) = run(shmbus(dir.path()).args(["rm", "cfg"]));
    assert_eq!(code, 0, "{err}");
    assert!(!bus_file(dir.path(), "cfg").exists());
}

#[test]
fn ls_and_inspect_json_with_two_live_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let mut subs: Vec<Proc> =
        (0..2).map(|_| Proc::spawn(shmbus(dir.path()).args(["sub", "busy", "--quiet"]))).collect();
    wait_for("two subscribers", || live_subscribers(dir.path(), "busy") == 2);

    let (code, out, err) = run(shmbus(dir.path()).args(["ls", "--json"]));
    assert_eq!(code, 0, "{err}");
    let ls: serde_json::Value = serde_json::from_str(&out).expect("ls --json is JSON");
    let buses = ls.as_array().expect("an array");
    assert_eq!(buses.len(), 1, "{out}");
    let b = &buses[0];
    assert_eq!(b["name"], "busy");
    assert_eq!(b["path"], bus_file(dir.path(), "busy").to_str().unwrap());
    assert_eq!(b["capacity"], 1 << 20);
    assert_eq!(b["max_message"], 64 << 10);
    assert_eq!(b["overflow"], "block");
    assert_eq!(b["persistent"], false);
    assert_eq!(b["live_publishers"], 0);
    assert_eq!(b["live_subscribers"], 2);
    assert_eq!(b["stale"], false);
    assert!(b["error"].is_null());

    let (code, out, err) = run(shmbus(dir.path()).args(["inspect", "busy", "--json"]));
    assert_eq!(code, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).expect("inspect --json is JSON");
    assert_eq!(st["name"], "busy");
    assert_eq!(st["version"], shmbus::core::layout::LAYOUT_VERSION);
    assert_eq!(st["capacity"], 1 << 20);
    assert_eq!(st["overflow"], "block");
    assert_eq!(st["persistent"], false);
    assert_eq!(st["published"], 0);
    assert!(st["tail"].is_u64());
    let peers = st["peers"].as_array().expect("peers");
    assert_eq!(peers.len(), 2, "{out}");
    let mut pids: Vec<u64> = peers.iter().map(|p| p["pid"].as_u64().unwrap()).collect();
    pids.sort();
    let mut want: Vec<u64> = subs.iter().map(|s| s.pid() as u64).collect();
    want.sort();
    assert_eq!(pids, want);
    for p in peers {
        assert_eq!(p["kind"], "subscriber");
        assert_eq!(p["alive"], true);
        assert_eq!(p["lag_bytes"], 0);
        assert_eq!(p["lag_messages"], 0);
        for key in ["slot", "cursor", "messages", "bytes", "lost"] {
            assert!(p[key].is_u64(), "{key} in {p}");
        }
    }

    // The human forms name the same things.
    let (code, out, _) = run(shmbus(dir.path()).args(["ls"]));
    assert_eq!(code, 0);
    assert!(out.lines().next().unwrap().starts_with("NAME"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("busy ") && l.contains("1 MiB") && l.contains("block")), "{out}");
    let (code, out, _) = run(shmbus(dir.path()).args(["inspect", "busy"]));
    assert_eq!(code, 0);
    assert_eq!(out.matches("subscriber").count(), 3, "header line + 2 peers: {out}");

    for s in &subs {
        s.signal(libc::SIGTERM);
    }
    for s in &mut subs {
        let (code, _, err) = s.finish();
        assert_eq!(code, 0, "{err}");
    }
    assert!(!bus_file(dir.path(), "busy").exists(), "the last subscriber out removed the bus");
}

#[test]
fn rm_refuses_with_live_peers_and_force_removes() {
    let dir = tempfile::tempdir().unwrap();
    let mut sub = Proc::spawn(shmbus(dir.path()).args(["sub", "held"]));
    wait_for("the subscriber to attach", || live_subscribers(dir.path(), "held") == 1);
    let (code, _, err) = run(shmbus(dir.path()).args(["rm", "held"]));
    assert_eq!(code, 1);
    assert!(err.contains("held") && err.contains("live peers"), "{err}");
    assert!(bus_file(dir.path(), "held").exists());
    let (code, out, err) = run(shmbus(dir.path()).args(["rm", "--force", "held"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("held"), "{out}");
    assert!(!bus_file(dir.path(), "held").exists());
    // The attached subscriber notices the removal and exits 1 saying so.
    let (code, _, err) = sub.finish();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("held") && err.contains("removed"), "{err}");
    let (code, _, err) = run(shmbus(dir.path()).args(["rm", "held"]));
    assert_eq!(code, 1, "a missing bus is an error");
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn gc_removes_the_bus_of_a_killed_publisher_and_of_a_killed_subscriber() {
    let dir = tempfile::tempdir().unwrap();
    // A bus with a live peer, which gc must leave alone.
    let mut keeper = Proc::spawn(shmbus(dir.path()).args(["sub", "alive"]));
    wait_for("the keeper to attach", || live_subscribers(dir.path(), "alive") == 1);

    let mut publ = Proc::spawn(shmbus(dir.path()).args(["pub", "p", "--count", "1000000", "--rate", "200"]));
    wait_for("the publisher to publish", || status(dir.path(), "p").is_some_and(|s| s.published > 0));
    publ.signal(libc::SIGKILL);
    assert_eq!(publ.finish().0, 128 + libc::SIGKILL);

    let mut sub = Proc::spawn(shmbus(dir.path()).args(["sub", "s"]));
    wait_for("the subscriber to attach", || live_subscribers(dir.path(), "s") == 1);
    sub.signal(libc::SIGKILL);
    assert_eq!(sub.finish().0, 128 + libc::SIGKILL);

    for name in ["p", "s"] {
        assert!(bus_file(dir.path(), name).exists(), "a killed process cannot remove {name}");
        wait_for("the kernel to drop the dead peer's lock", || status(dir.path(), name).is_some_and(|s| s.stale()));
    }
    let (code, out, err) = run(shmbus(dir.path()).args(["ls", "--json"]));
    assert_eq!(code, 0, "{err}");
    let ls: serde_json::Value = serde_json::from_str(&out).unwrap();
    let stale: Vec<_> =
        ls.as_array().unwrap().iter().filter(|b| b["stale"] == true).map(|b| b["name"].clone()).collect();
    assert_eq!(stale, ["p", "s"]);

    let (code, out, err) = run(shmbus(dir.path()).args(["gc"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("removed p ") && out.contains("removed s "), "{out}");
    assert!(!out.contains("alive"), "{out}");
    assert!(!bus_file(dir.path(), "p").exists());
    assert!(!bus_file(dir.path(), "s").exists());
    assert!(bus_file(dir.path(), "alive").exists());
    let (_, out, _) = run(shmbus(dir.path()).args(["gc"]));
    assert!(out.starts_with("nothing to remove"), "{out}");

    keeper.signal(libc::SIGTERM);
    assert_eq!(keeper.finish().0, 0);
}

#[test]
fn sigterm_of_a_verifying_subscriber_prints_the_summary_and_removes_the_bus() {
    let dir = tempfile::tempdir().unwrap();
    let mut sub = Proc::spawn(shmbus(dir.path()).args(["sub", "t", "--verify"]));
    wait_for("the subscriber to attach", || live_subscribers(dir.path(), "t") == 1);
    let (code, _, err) = run(shmbus(dir.path()).args(["pub", "t", "--count", "200", "--linger", "0"]));
    assert_eq!(code, 0, "{err}");
    wait_for("the subscriber to read everything", || {
        status(dir.path(), "t").is_some_and(|s| {
            s.peers.iter().any(|p| p.kind == PeerKind::Subscriber && p.alive && p.messages == 200 && p.lag_bytes == 0)
        })
    });
    sub.signal(libc::SIGTERM);
    let (code, out, err) = sub.finish();
    assert_eq!(out, "received=200 lost=0 corrupt=0 reordered=0 duplicated=0\n", "{err}");
    assert_eq!(code, 0, "{err}");
    assert!(!bus_file(dir.path(), "t").exists(), "the subscriber detached and removed the bus");
}

#[test]
fn sigint_of_a_publisher_detaches_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut publ = Proc::spawn(shmbus(dir.path()).args(["pub", "slow", "--count", "1000000", "--rate", "100"]));
    wait_for("the publisher to publish", || status(dir.path(), "slow").is_some_and(|s| s.published > 0));
    publ.signal(libc::SIGINT);
    let (code, _, err) = publ.finish();
    assert_eq!(code, 0, "{err}");
    assert!(!bus_file(dir.path(), "slow").exists(), "the last peer out removed the bus");
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["frobnicate"],
        vec![],
        vec!["pub"],
        vec!["pub", "x", "--size", "8"],
        vec!["pub", "x", "--stdin", "--size", "100"],
        vec!["pub", "x", "--overflow", "sideways"],
        vec!["pub", "x", "--rate", "0"],
        vec!["sub", "x", "--from", "middle"],
        vec!["sub", "x", "--timeout", "soon"],
        vec!["create", "x", "--capacity", "lots"],
        vec!["create", "x", "--mode", "999"],
        vec!["ls", "--yaml"],
    ] {
        let (code, out, err) = run(shmbus(dir.path()).args(&args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(out, "", "{args:?}");
        assert!(err.starts_with("error:") || err.contains("Usage:"), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // Help and version are not errors.
    assert_eq!(run(shmbus(dir.path()).arg("--help")).0, 0);
    assert_eq!(run(shmbus(dir.path()).arg("--version")).0, 0);
}

#[test]
fn overwrite_mode_stalled_subscriber_reports_exact_loss() {
    let dir = tempfile::tempdir().unwrap();
    let mut sub = Proc::spawn(shmbus(dir.path()).args([
        "sub",
        "ow",
        "--verify",
        "--overflow",
        "overwrite",
        "--capacity",
        "64KiB",
    ]));
    wait_for("the subscriber to attach", || live_subscribers(dir.path(), "ow") == 1);
    sub.signal(libc::SIGSTOP);
    // 5000 messages of 64 bytes are several laps of a 64 KiB ring.
    let (code, _, err) = run(shmbus(dir.path()).args(["pub", "ow", "--count", "5000", "--linger", "0"]));
    assert_eq!(code, 0, "{err}");
    sub.signal(libc::SIGCONT);
    wait_for("the subscriber to catch up", || {
        status(dir.path(), "ow")
            .is_some_and(|s| s.peers.iter().any(|p| p.kind == PeerKind::Subscriber && p.alive && p.lag_bytes == 0))
    });
    sub.signal(libc::SIGTERM);
    let (code, out, err) = sub.finish();
    assert_eq!(code, 0, "{out} {err}");
    let line = out.trim_end();
    assert!(line.starts_with(SUMMARY_OK_PREFIX), "{out}");
    let (received, lost) = (summary_value(line, "received"), summary_value(line, "lost"));
    assert!(lost > 0, "{line}");
    assert!(received > 0, "{line}");
    assert_eq!(received + lost, 5000, "{line}");
    assert_eq!(summary_value(line, "corrupt"), 0, "{line} {err}");
    assert_eq!(summary_value(line, "reordered"), 0, "{line}");
    assert_eq!(summary_value(line, "duplicated"), 0, "{line}");
}

#[test]
fn shmbus_dir_environment_variable_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(Command::new(shmbus_bin())
        .args(["create", "env", "--persistent"])
        .env("SHMBUS_DIR", dir.path())
        .stdin(Stdio::null()));
    assert_eq!(code, 0, "{err}");
    assert!(bus_file(dir.path(), "env").exists());
    // --dir wins over $SHMBUS_DIR.
    let other = tempfile::tempdir().unwrap();
    let (code, out, _) =
        run(Command::new(shmbus_bin()).arg("--dir").arg(other.path()).arg("ls").env("SHMBUS_DIR", dir.path()));
    assert_eq!(code, 0);
    assert!(out.starts_with("no buses"), "{out}");
}

#[test]
fn demo_runs_and_removes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(shmbus(dir.path()).args(["demo", "--duration", "0.5"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("transport"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("shmbus (1 pub -> 2 subs)")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("unix socket")), "{out}");
    assert!(out.contains("none lost, corrupt, reordered or duplicated"), "{out}");
    // The demo worked in a temporary directory inside --dir and removed it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "{out}");
}

/// Issue 9, finding 7, through the CLI: a world-writable directory (sticky or
/// not) is refused; an unknown `--share-group` is a usage error; as root, a
/// bus file owned by uid 65534 is refused with its owner named, and accepted
/// with `--share-group` naming its group. (The two-uid tests are in
/// crates/shmbus-core/tests/planted.rs.)
#[test]
fn planted_directories_and_files_are_refused() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let (code, _, err) = run(shmbus(&open).args(["create", "x"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("writable by everyone") && err.contains(open.to_str().unwrap()), "{err}");
    assert!(!bus_file(&open, "x").exists());

    let (code, _, err) = run(shmbus(dir.path()).args(["--share-group", "no-such-group-here", "ls"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no group named"), "{err}");

    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    let (code, _, err) = run(shmbus(&mine).args(["create", "planted"]));
    assert_eq!(code, 0, "{err}");
    let file = bus_file(&mine, "planted");
    if std::fs::metadata(&file).unwrap().uid() != 0 {
        eprintln!("planted_directories_and_files_are_refused: file part skipped: needs root to chown");
        return;
    }
    std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
    let (code, _, err) = run(shmbus(&mine).args(["pub", "planted", "--count", "1", "--linger", "0"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("refusing bus file") && err.contains("uid 65534"), "{err}");
    assert!(err.contains(file.to_str().unwrap()), "{err}");
    let (code, _, err) =
        run(shmbus(&mine).args(["--share-group", "65534", "pub", "planted", "--count", "1", "--linger", "0"]));
    assert_eq!(code, 0, "{err}");
}
