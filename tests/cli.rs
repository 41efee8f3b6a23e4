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
/// `SHMBUS_TEST_BIN=/path/to/shmbus` runs the suite against that binary
/// instead (an installed one, or an older build to see a test fail).
fn shmbus_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("SHMBUS_TEST_BIN") {
            return PathBuf::from(bin);
        }
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

/// Subscribers that have placed their cursor (what to wait for before
/// publishing to a `--from latest` subscriber).
fn live_subscribers(dir: &Path, name: &str) -> usize {
    status(dir, name).map_or(0, |s| s.ready_subscribers())
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

// ------------------------------------------------- issue 13: input limits

/// One line on stderr, the parser's style, exit 2, no panic, nothing created.
fn assert_one_line_usage_error(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = run(shmbus(dir).args(args));
    assert_eq!(code, 2, "{args:?}: {err}");
    assert_eq!(out, "", "{args:?}");
    assert!(err.starts_with("error:"), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: one line expected: {err}");
    err
}

#[test]
fn absurd_values_are_one_line_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["pub", "x", "--rate", "1e-300", "--count", "2"][..],
        &["pub", "x", "--rate", "0"],
        &["pub", "x", "--rate", "1e10"],
        &["pub", "x", "--size", "5GiB"],
        &["create", "x", "--max-peers", "0"],
        &["sub", "x", "--max-peers", "100000"],
        &["top", "--interval", "0"],
        &["bench", "--runs", "0"],
    ] {
        assert_one_line_usage_error(dir.path(), args);
    }
    // Sizes that can never make a bus name the bus and its file and print sizes for people.
    for (args, want) in [
        (&["create", "x", "--capacity", "6000"][..], "5.9 KiB"),
        (&["pub", "x", "--capacity", "6000", "--count", "1"], "5.9 KiB"),
        (&["sub", "x", "--capacity", "3MiB", "--timeout", "0.1"], "power of two"),
        (&["create", "x", "--max-message", "0"], "--max-message 0"),
        (&["pub", "x", "--max-message", "0", "--count", "1"], "--max-message 0"),
        (&["create", "x", "--capacity", "64KiB", "--max-message", "20000"], "16.0 KiB"),
    ] {
        let err = assert_one_line_usage_error(dir.path(), args);
        for w in ["'x'", "x.bus", want] {
            assert!(err.contains(w), "{args:?}: {w:?} missing from {err}");
        }
    }
    assert_eq!(std::fs::read_dir(dir.path()).map(|d| d.count()).unwrap_or(0), 0, "nothing may be created");
}

#[test]
fn an_endless_stdin_line_is_refused_after_at_most_max_message_plus_one_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = shmbus(dir.path());
    // 4 KiB ring: max message 992 bytes.
    cmd.args(["pub", "long", "--stdin", "--capacity", "4KiB"]).stdin(Stdio::piped());
    let mut p = Proc::spawn(&mut cmd);
    let mut stdin = p.child.stdin.take().expect("stdin");
    // Zeros without a newline, until `pub` stops reading (EPIPE) or 64 MiB.
    let writer = std::thread::spawn(move || {
        let chunk = vec![0u8; 64 << 10];
        let mut written = 0usize;
        while written < 64 << 20 {
            match stdin.write(&chunk) {
                Ok(n) => written += n,
                Err(_) => break,
            }
        }
        written
    });
    let (code, _, err) = p.finish();
    let written = writer.join().unwrap();
    assert_eq!(code, 1, "{err}");
    for w in ["'long'", "long.bus", "line 1", "max_message of 992 bytes"] {
        assert!(err.contains(w), "{w:?} missing from {err}");
    }
    // What the pipe and a 64 KiB read buffer hold, and the 993 bytes of the line: far below 64 MiB.
    assert!(written < 4 << 20, "pub read {written} bytes of one line");
    assert!(!bus_file(dir.path(), "long").exists(), "pub removed the bus it created");
}

#[test]
fn a_publisher_started_after_a_counting_subscriber_does_not_linger() {
    let dir = tempfile::tempdir().unwrap();
    // The subscriber wants all the messages (it may or may not have left
    // when the publisher first looks), or only the first quarter of a paced
    // stream (it has surely left by the time the publisher is done).
    for (round, wanted, rate) in [(0, 2000, "1e9"), (1, 2000, "1e9"), (2, 500, "10000")] {
        let n = wanted.to_string();
        let mut sub = Proc::spawn(shmbus(dir.path()).args(["sub", "c", "--count", &n, "--verify"]));
        wait_for("the subscriber to attach", || live_subscribers(dir.path(), "c") == 1);
        // --linger far beyond the deadline: only leaving because the
        // subscriber came and went lets the publisher exit in time.
        let mut publ =
            Proc::spawn(shmbus(dir.path()).args(["pub", "c", "--count", "2000", "--rate", rate, "--linger", "600"]));
        let (code, out, err) = sub.finish();
        assert_eq!(code, 0, "round {round}: {err}");
        assert_eq!(out, format!("received={wanted} lost=0 corrupt=0 reordered=0 duplicated=0\n"), "{err}");
        let (code, _, err) = publ.finish();
        assert_eq!(code, 0, "round {round}: {err}");
        wait_for("the bus to go", || !bus_file(dir.path(), "c").exists());
    }
}

#[test]
fn pub_asks_the_terminal_question_once_and_lingers_without_reopening_the_bus_every_2_ms() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let st = Command::new("strace").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !st.is_ok_and(|s| s.success()) {
        eprintln!("strace is not installed: skipped");
        return;
    }
    let bus_dir = dir.path().join("buses");
    let (code, _, err) = run(Command::new("strace")
        .args(["-f", "-e", "trace=ioctl", "-o"])
        .arg(&trace)
        .arg(shmbus_bin())
        .arg("--dir")
        .arg(&bus_dir)
        .args(["pub", "t", "--count", "3000", "--linger", "0"])
        .stdin(Stdio::null()));
    if code != 0 && err.contains("ptrace") {
        eprintln!("ptrace is not permitted here: skipped ({err})");
        return;
    }
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&trace).unwrap();
    let tcgets = text.lines().filter(|l| l.contains("TCGETS")).count();
    assert!(tcgets < 10, "{tcgets} TCGETS ioctls for 3000 messages:\n{text}");

    // Lingering for a second with nobody coming: the bus file is opened (and
    // mapped) to look at it about 30 times, not every 2 ms (333 times measured
    // under strace before issue 13).
    let (code, _, err) = run(Command::new("strace")
        .args(["-f", "-e", "trace=openat", "-o"])
        .arg(&trace)
        .arg(shmbus_bin())
        .arg("--dir")
        .arg(&bus_dir)
        .args(["pub", "lonely", "--count", "10", "--linger", "1"])
        .stdin(Stdio::null()));
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&trace).unwrap();
    let opens = text.lines().filter(|l| l.contains("lonely.bus")).count();
    assert!(opens < 60, "the bus file was opened {opens} times while lingering for 1 s");
}

#[test]
fn sub_into_a_closed_pipe_leaves_without_waiting_for_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = shmbus(dir.path());
    cmd.args(["sub", "idle"]).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start shmbus");
    wait_for("the subscriber to attach", || live_subscribers(dir.path(), "idle") == 1);
    // `shmbus sub idle | head -1` after head exited: nobody reads stdout.
    drop(child.stdout.take());
    let mut p = Proc { child, out: None, err: None };
    let err = p.child.stderr.take();
    p.err = collect(err);
    let (code, _, err) = p.finish();
    assert_eq!(code, 0, "{err}");
    assert!(!bus_file(dir.path(), "idle").exists(), "it detached and removed the bus");
}

/// A pipe (both ends close on exec): (reading end, writing end).
fn pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds: [libc::c_int; 2] = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the live two-element array.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened by pipe2 and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Whether a write to the pipe whose writing end is `w` would block: what
/// the `poll` of a process writing into it sees.
fn pipe_has_no_room(w: &std::os::fd::OwnedFd) -> bool {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd { fd: w.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
    // SAFETY: poll on one live pollfd, without waiting.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    n == 0
}

#[test]
fn sub_blocked_on_a_full_pipe_obeys_the_first_sigint() {
    let dir = tempfile::tempdir().unwrap();
    // Nobody reads the subscriber's stdout: the pipe fills up. The test keeps
    // the writing end too, to see when the pipe is full. Full is not "64 KiB
    // queued": a pipe holds 16 page-sized buffers, and a write that does not
    // fit in the last one starts the next, so a subscriber that caught up
    // with the publisher and wrote a message or two at a time (usual on a
    // loaded machine) fills it with less (55147 and 58069 bytes in two runs
    // where waiting for 60000 queued bytes timed out).
    let (unread, room) = pipe();
    let mut cmd = shmbus(dir.path());
    // --from oldest: the subscriber is live (as `inspect` sees it) a moment
    // before it places its cursor; from the latest message, it could start
    // after some (or all) of the messages below.
    cmd.args(["sub", "full", "--from", "oldest"])
        .stdout(Stdio::from(room.try_clone().expect("dup the pipe")))
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start shmbus");
    let err = collect(child.stderr.take());
    let mut sub = Proc { child, out: None, err };
    wait_for("the subscriber to attach", || live_subscribers(dir.path(), "full") == 1);
    // 400 lines of 1000 bytes: far more than a pipe holds (and less than the ring).
    let line = format!("{}\n", "y".repeat(1000));
    let mut publ = pub_stdin(dir.path(), "full", line.repeat(400), &["--linger", "0"]);
    assert_eq!(publ.finish().0, 0);
    // The subscriber has far more to write than the pipe took: it waits for room.
    wait_for("the pipe to fill up", || pipe_has_no_room(&room));
    sub.signal(libc::SIGINT);
    let (code, _, err) = sub.finish();
    assert_eq!(code, 0, "the first SIGINT ends it cleanly: {err}");
    assert!(!bus_file(dir.path(), "full").exists(), "it detached and removed the bus");
    drop(unread);
}

#[test]
fn rm_refuses_a_file_that_is_not_a_bus() {
    let dir = tempfile::tempdir().unwrap();
    let reg = bus_file(dir.path(), "reg");
    std::fs::write(&reg, b"my precious notes, not a bus").unwrap();
    let (code, out, err) = run(shmbus(dir.path()).args(["rm", "reg"]));
    assert_eq!(code, 1, "{out} {err}");
    assert!(err.contains("reg.bus") && err.contains("not a shmbus bus"), "{err}");
    assert!(reg.exists(), "rm removed a file that is not a bus");
    // --force removes whatever is there, as for a symlink.
    let (code, _, err) = run(shmbus(dir.path()).args(["rm", "--force", "reg"]));
    assert_eq!(code, 0, "{err}");
    assert!(!reg.exists());
}

#[test]
fn max_peers_at_creation_and_checked_against_an_existing_bus() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(shmbus(dir.path()).args(["create", "few", "--max-peers", "2", "--persistent"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 peer slots"), "{out}");
    assert_eq!(status(dir.path(), "few").unwrap().header.peer_slots, 2);
    let (code, _, err) = run(shmbus(dir.path()).args(["sub", "few", "--max-peers", "3", "--timeout", "0.1"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("max_peers") && err.contains('2') && err.contains('3'), "{err}");
    let (code, _, err) = run(shmbus(dir.path()).args(["rm", "few"]));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn pub_messages_as_arguments_and_sub_formats() {
    let dir = tempfile::tempdir().unwrap();
    for (format, want) in
        [("raw", "hello\n\nsp ace\n"), ("text", "hello\n\nsp ace\n"), ("hex", "68656c6c6f\n\n737020616365\n")]
    {
        let name = format!("f{format}");
        let mut sub = Proc::spawn(shmbus(dir.path()).args(["sub", &name, "--count", "3", "--format", format]));
        wait_for("the subscriber to attach", || live_subscribers(dir.path(), &name) == 1);
        let (code, _, err) = run(shmbus(dir.path()).args(["pub", &name, "hello", "", "sp ace"]));
        assert_eq!(code, 0, "{err}");
        let (code, out, err) = sub.finish();
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, want, "{format}");
    }
    // Binary payloads: text escapes them, json carries base64.
    for (format, check) in [
        ("text", (|out: &str| assert_eq!(out, "a\\x01b\\xff\ntab\tok\n")) as fn(&str)),
        ("json", |out: &str| {
            let v: Vec<serde_json::Value> =
                out.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
            assert_eq!(v.len(), 2, "{out}");
            assert_eq!(v[0]["len"], 4);
            assert_eq!(v[0]["base64"], "YQFi/w==");
            assert!(v[0]["seq"].is_u64());
            assert!(v[0].get("publisher").is_some());
            assert_eq!(v[1]["text"], "tab\tok");
            assert_eq!(v[1]["seq"].as_u64().unwrap(), v[0]["seq"].as_u64().unwrap() + 1);
        }),
    ] {
        let name = format!("b{format}");
        let mut sub = Proc::spawn(shmbus(dir.path()).args(["sub", &name, "--count", "2", "--format", format]));
        wait_for("the subscriber to attach", || live_subscribers(dir.path(), &name) == 1);
        let mut cmd = shmbus(dir.path());
        cmd.args(["pub", &name, "--stdin"]).stdin(Stdio::piped());
        let mut p = Proc::spawn(&mut cmd);
        let mut stdin = p.child.stdin.take().unwrap();
        stdin.write_all(b"a\x01b\xff\ntab\tok\n").unwrap();
        drop(stdin);
        assert_eq!(p.finish().0, 0);
        let (code, out, err) = sub.finish();
        assert_eq!(code, 0, "{err}");
        check(&out);
    }
}

#[test]
fn a_subscriber_that_attached_late_is_told_what_came_before_not_that_it_was_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut publ = Proc::spawn(shmbus(dir.path()).args(["pub", "load", "--count", "3000", "--rate", "1500"]));
    wait_for("the publisher to publish", || status(dir.path(), "load").is_some_and(|s| s.published >= 300));
    let (code, out, err) = run(shmbus(dir.path()).args(["sub", "load", "--verify", "--timeout", "3"]));
    assert_eq!(code, 3, "ended by --timeout: {err}");
    let line = out.trim_end();
    assert!(line.starts_with("received="), "{out}");
    let before = summary_value(line, "before_attach");
    assert!(before >= 300, "{line}");
    assert_eq!(summary_value(line, "lost"), 0, "{line}");
    assert_eq!(summary_value(line, "received") + before, 3000, "{line}");
    assert!(err.contains("not lost"), "{err}");
    assert_eq!(publ.finish().0, 0);
}

#[test]
fn bench_help_and_errors_like_the_other_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(shmbus(dir.path()).args(["bench", "--help"]));
    assert_eq!(code, 0);
    assert!(out.contains("Usage: shmbus bench") && out.contains("--transports"), "{out}");
    let (code, _, err) = run(shmbus(dir.path()).args(["bench", "--bogus"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with("error:") && err.contains("--bogus"), "{err}");
}

// ------------------------------------------------------------- shmbus top

#[test]
fn top_once_json_shows_peers_rates_and_stale_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut sub = Proc::spawn(shmbus(dir.path()).args(["sub", "live", "--quiet"]));
    wait_for("the subscriber to attach", || live_subscribers(dir.path(), "live") == 1);
    let mut publ = Proc::spawn(shmbus(dir.path()).args(["pub", "live", "--count", "1000000", "--rate", "500"]));
    wait_for("the publisher to publish", || status(dir.path(), "live").is_some_and(|s| s.published > 0));
    // A bus whose only peer was killed: stale.
    let mut dead = Proc::spawn(shmbus(dir.path()).args(["sub", "dead"]));
    wait_for("the doomed subscriber to attach", || live_subscribers(dir.path(), "dead") == 1);
    dead.signal(libc::SIGKILL);
    dead.finish();
    wait_for("the dead peer's lock to go", || status(dir.path(), "dead").is_some_and(|s| s.stale()));

    let (code, out, err) = run(shmbus(dir.path()).args(["top", "--once", "--json", "--interval", "0.5"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "one JSON object on one line: {out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let buses = v["buses"].as_array().unwrap();
    let live = buses.iter().find(|b| b["name"] == "live").expect("bus live");
    assert_eq!(live["stale"], false);
    let peers = live["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2, "{live}");
    let p = peers.iter().find(|p| p["kind"] == "publisher").unwrap();
    assert_eq!(p["pid"], publ.pid());
    assert_eq!(p["state"], "live");
    assert!(p["msgs_per_s"].as_f64().unwrap() > 0.0, "{p}");
    assert!(p["bytes_per_s"].as_f64().unwrap() > 0.0, "{p}");
    assert!(p["lag_bytes"].is_null(), "a publisher has no lag: {p}");
    let s = peers.iter().find(|p| p["kind"] == "subscriber").unwrap();
    assert_eq!(s["pid"], sub.pid());
    for k in ["lag_bytes", "lag_messages", "lost", "messages"] {
        assert!(s[k].is_u64(), "{k}: {s}");
    }
    for k in ["abandoned", "held_back_ns"] {
        assert!(s[k].is_u64(), "{k}: {s}");
    }
    let dead_bus = buses.iter().find(|b| b["name"] == "dead").expect("bus dead");
    assert_eq!(dead_bus["stale"], true);
    assert_eq!(dead_bus["peers"][0]["state"], "STALE");

    // Plain lines when stdout is not a terminal.
    let (code, out, err) = run(shmbus(dir.path()).args(["top", "--once", "--interval", "0.2", "live"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("shmbus top:") && !out.contains('\x1b'), "{out}");
    assert!(out.lines().any(|l| l.starts_with("BUS") && l.contains("MSGS/S") && l.contains("LAG-BYTES")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("live") && l.contains("publisher")), "{out}");
    assert!(!out.contains("dead"), "only the bus asked for: {out}");

    publ.signal(libc::SIGTERM);
    sub.signal(libc::SIGTERM);
    assert_eq!(publ.finish().0, 0);
    assert_eq!(sub.finish().0, 0);
}

#[test]
fn inspect_and_ls_read_a_bus_this_process_may_not_write() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("buses");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    // Root may write any file: run the commands as an ordinary user that
    // owns the directory, so that 0400 really means read-only for them.
    // SAFETY: geteuid has no preconditions.
    let as_user = unsafe { libc::geteuid() } == 0;
    const NOBODY: u32 = 65534;
    if as_user {
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let cmd = |args: &[&str]| {
        let mut c = shmbus(&dir);
        c.args(args);
        if as_user {
            c.uid(NOBODY).gid(NOBODY);
        }
        c
    };
    let (code, _, err) = run(&mut cmd(&["create", "ro", "--persistent", "--mode", "0600"]));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&mut cmd(&["pub", "ro", "one", "two"]));
    assert_eq!(code, 0, "{err}");
    std::fs::set_permissions(bus_file(&dir, "ro"), std::fs::Permissions::from_mode(0o400)).unwrap();
    let (code, out, err) = run(&mut cmd(&["inspect", "ro", "--json"]));
    assert_eq!(code, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(st["published"], 2, "{out}");
    assert!(st["tail"].as_u64().unwrap() > 0, "{out}");
    let (code, out, err) = run(&mut cmd(&["ls", "--json"]));
    assert_eq!(code, 0, "{err}");
    let ls: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert!(ls[0]["error"].is_null(), "{out}");
    assert_eq!(ls[0]["capacity"], 1 << 20, "{out}");
}

#[test]
fn demo_says_how_the_receivers_wait_and_compares_like_with_like() {
    let dir = tempfile::tempdir().unwrap();
    // auto: the choice and its reason are printed, whatever the machine.
    let (code, out, err) = run(shmbus(dir.path()).args(["demo", "--duration", "0.3"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("subscribers wait with") && out.contains("(auto: "), "{out}");
    assert!(out.lines().any(|l| l.starts_with("transport") && l.contains("receivers")), "{out}");
    // park: socket receivers block in read, as the subscribers sleep in the kernel.
    let (code, out, err) = run(shmbus(dir.path()).args(["demo", "--duration", "0.3", "--wait", "park"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("subscribers wait with park (--wait)") && out.contains("block in read()"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("unix socket") && l.contains("blocking read")), "{out}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "{out}");
}

// ------------------------------------------------- issue 9 through the CLI

/// Issue 9, finding 5: an idle `shmbus sub` makes no periodic wake-ups (it
/// used to wake every 50 ms), and still stops at once on SIGINT.
#[test]
fn idle_sub_does_not_wake_up_and_stops_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let mut sub = Proc::spawn(shmbus(dir.path()).args(["sub", "idle"]));
    wait_for("the subscriber to park", || status(dir.path(), "idle").is_some_and(|s| s.data_waiters == 1));
    let before = shmbus_testkit::voluntary_switches(sub.pid() as u32);
    // A measurement window, not a synchronisation.
    std::thread::sleep(Duration::from_secs(1));
    let woke = shmbus_testkit::voluntary_switches(sub.pid() as u32) - before;
    assert!(woke <= 2, "an idle sub woke up {woke} times in 1 s");
    sub.signal(libc::SIGINT);
    let (code, _, err) = sub.finish();
    assert_eq!(code, 0, "{err}");
    assert!(!bus_file(dir.path(), "idle").exists());
}

/// Issue 9, finding 6: a publisher that claimed a place and never committed
/// it (here: a claim left open by this test process, which stays alive) is
/// counted as abandoned by `sub --verify` after the unblock timeout; nothing
/// is reported corrupt or lost, and the summary says `abandoned=1`.
#[test]
fn verify_accounts_for_an_abandoned_claim() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = shmbus::BusConfig::default().dir(dir.path());
    let mut sub = Proc::spawn(shmbus(dir.path()).args(["sub", "ab", "--verify", "--count", "100"]));
    wait_for("the subscriber to attach", || live_subscribers(dir.path(), "ab") == 1);
    let mut stalled = shmbus::core::Producer::new(
        shmbus::core::Bus::attach("ab", &cfg, shmbus::core::PeerKind::Publisher).unwrap(),
        shmbus::WaitStrategy::Park,
    );
    let claim = stalled.try_claim(64).unwrap();
    let (code, _, err) = run(shmbus(dir.path()).args(["pub", "ab", "--count", "100", "--linger", "10"]));
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = sub.finish();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("received=100 lost=0 corrupt=0 reordered=0 duplicated=0 abandoned=1"), "{out}{err}");
    assert!(matches!(stalled.commit(claim, false), Err(shmbus::core::ClaimError::Abandoned { .. })));
}

/// Issue 9, finding 3: `shmbus pub` held back by a stopped subscriber says
/// once on stderr which one (slot, pid) instead of hanging silently.
#[test]
fn pub_names_the_subscriber_that_holds_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut sub = Proc::spawn(shmbus(dir.path()).args(["sub", "stuck", "--quiet"]));
    wait_for("the subscriber to attach", || live_subscribers(dir.path(), "stuck") == 1);
    sub.signal(libc::SIGSTOP);
    let mut publ = Proc::spawn(shmbus(dir.path()).args(["pub", "stuck", "--count", "100000"]));
    wait_for("the publisher to be held back", || {
        status(dir.path(), "stuck").is_some_and(|s| s.peers.iter().any(|p| p.holding_back_ns > 1_000_000_000))
    });
    // Give pub's one-second report a moment past the hold-back being recorded, then stop it.
    wait_for("the bus to show the stall for 1.5 s", || {
        status(dir.path(), "stuck").is_some_and(|s| s.peers.iter().any(|p| p.holding_back_ns > 1_500_000_000))
    });
    publ.signal(libc::SIGINT);
    sub.signal(libc::SIGCONT);
    sub.signal(libc::SIGINT);
    let (_, _, err) = publ.finish();
    let _ = sub.finish();
    assert!(err.contains(&format!("(pid {})", sub.pid())) && err.contains("subscriber"), "{err}");
    assert_eq!(err.matches("waiting").count(), 1, "said once: {err}");
}
