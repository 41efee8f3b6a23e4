//! Test support shared by the multi-process test suites.
//!
//! A test binary re-executes itself to get real child processes: the parent
//! calls [`spawn`] with a role; the child runs the test named `__child`
//! (`--exact`), which looks at [`role`] and does its part, printing results
//! as `RESULT:` lines that [`finish`] collects. Every wait here has a
//! deadline and polls something observable; nothing sleeps "long enough".
#![warn(missing_docs)]

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variable carrying a child's role.
pub const ROLE: &str = "SHMBUS_TEST_ROLE";
/// Environment variable carrying a child's arguments (space-separated).
pub const ARGS: &str = "SHMBUS_TEST_ARGS";

/// Starts this test binary again as a child running the `__child` test with
/// `role` and `args`, with `SHMBUS_DIR` set to `dir`. Its stdout is captured.
pub fn spawn(role: &str, dir: &Path, args: &[&str]) -> Child {
    Command::new(std::env::current_exe().expect("current_exe"))
        .args(["__child", "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE, role)
        .env(ARGS, args.join(" "))
        .env("SHMBUS_DIR", dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the test binary")
}

/// In a child: its role, or `None` in the parent (where `__child` is a no-op).
pub fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

/// In a child: its arguments.
pub fn args() -> Vec<String> {
    std::env::var(ARGS).unwrap_or_default().split_whitespace().map(str::to_owned).collect()
}

/// Waits for a child to exit successfully within `limit` and returns its
/// `RESULT:` lines; kills it and panics on timeout or failure.
pub fn finish(mut child: Child, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let mut out = String::new();
            if let Some(mut stdout) = child.stdout.take() {
                let _ = stdout.read_to_string(&mut out);
            }
            assert!(status.success(), "child failed: {status}\n{out}");
            return out.lines().filter_map(|l| l.strip_prefix("RESULT:")).map(str::to_owned).collect();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `cond` every 2 ms until it holds; panics naming `what` after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Voluntary context switches of every thread of process `pid` so far (from
/// `/proc/PID/task/*/status`): how often it went to sleep, i.e. how often a
/// parked process woke up.
pub fn voluntary_switches(pid: u32) -> u64 {
    let mut total = 0;
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    for task in tasks.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        for line in status.lines() {
            if let Some(v) = line.strip_prefix("voluntary_ctxt_switches:") {
                total += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    total
}

/// Whether process `pid` is stopped (state `T` in `/proc/PID/stat`).
pub fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('T')))
        .unwrap_or(false)
}

/// Sends signal `sig` to child process `pid` (which must exist).
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child process id the caller spawned.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0, "kill({pid}, {sig})");
}

/// A self-checking message: publisher id, counter, then bytes derived from
/// both (at least 16 bytes).
pub fn checked_message(publisher: u64, n: u64, len: usize) -> Vec<u8> {
    let mut m: Vec<u8> = (0..len.max(16)).map(|i| (publisher * 7 + n * 13 + i as u64) as u8).collect();
    m[..8].copy_from_slice(&publisher.to_le_bytes());
    m[8..16].copy_from_slice(&n.to_le_bytes());
    m
}

/// The (publisher, counter) of a [`checked_message`], panicking if any byte
/// is not what it should be (a torn or corrupt message).
pub fn parse_checked(m: &[u8]) -> (u64, u64) {
    assert!(m.len() >= 16, "short message");
    let p = u64::from_le_bytes(m[..8].try_into().unwrap());
    let n = u64::from_le_bytes(m[8..16].try_into().unwrap());
    assert_eq!(m, &checked_message(p, n, m.len())[..], "torn or corrupt message {p}/{n}");
    (p, n)
}
