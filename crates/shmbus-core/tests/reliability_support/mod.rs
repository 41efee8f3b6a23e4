//! Shared helpers of the reliability suite (docs/reliability.md): scaling,
//! a seeded RNG, figures, checked messages, and child processes (the test
//! binary re-executes itself with a role in `SHMBUS_REL_ROLE`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The environment variable naming a child's role.
pub const ROLE: &str = "SHMBUS_REL_ROLE";
/// The environment variable carrying a child's arguments (space separated).
pub const ARGS: &str = "SHMBUS_REL_ARGS";

/// True when `SHMBUS_RELIABILITY_FULL=1`: run the full counts of the issue.
pub fn full() -> bool {
    std::env::var("SHMBUS_RELIABILITY_FULL").is_ok_and(|v| v == "1")
}

/// `ci` normally, `full` under `SHMBUS_RELIABILITY_FULL=1`.
pub fn scale(ci: u64, full_count: u64) -> u64 {
    if full() {
        full_count
    } else {
        ci
    }
}

/// Prints `FIGURE <test> <fields>` (and appends it to `$SHMBUS_RELIABILITY_FIGURES`).
pub fn figure(test: &str, fields: &str) {
    let line = format!("FIGURE {test} scale={} {fields}", if full() { "full" } else { "ci" });
    println!("{line}");
    if let Some(path) = std::env::var_os("SHMBUS_RELIABILITY_FIGURES") {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// splitmix64: a small, seedable generator (no dependency).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from `$SHMBUS_RELIABILITY_SEED`, else the clock; the seed is printed.
    pub fn new(test: &str) -> Rng {
        let seed = std::env::var("SHMBUS_RELIABILITY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        });
        eprintln!("{test}: SHMBUS_RELIABILITY_SEED={seed}");
        Rng(seed)
    }
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }
    /// Uniform in `lo..hi` (hi > lo).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next_u64() as u8;
        }
    }
}

/// The splitmix64 finaliser.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// CLOCK_MONOTONIC in nanoseconds: comparable between processes.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we pass; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Header of a checked message: id, seq, send time, length, then a body
/// derived from (id, seq) word by word.
pub const MSG_HEADER: usize = 32;

/// A checked message of `len` (>= 32) bytes.
pub fn make_msg(id: u64, seq: u64, send_ns: u64, len: usize) -> Vec<u8> {
    let len = len.max(MSG_HEADER);
    let mut m = vec![0u8; len];
    fill_msg(&mut m, id, seq, send_ns);
    m
}

/// Writes a checked message into `m` (its length is the message length).
pub fn fill_msg(m: &mut [u8], id: u64, seq: u64, send_ns: u64) {
    let len = m.len() as u64;
    m[..8].copy_from_slice(&id.to_le_bytes());
    m[8..16].copy_from_slice(&seq.to_le_bytes());
    m[16..24].copy_from_slice(&send_ns.to_le_bytes());
    m[24..32].copy_from_slice(&len.to_le_bytes());
    let key = mix(id.wrapping_mul(0x1000_0000_01b3) ^ seq ^ send_ns.rotate_left(17));
    for (i, chunk) in m[MSG_HEADER..].chunks_mut(8).enumerate() {
        let w = mix(key.wrapping_add(i as u64)).to_le_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
}

/// Checks a message made by `make_msg`: `Ok((id, seq, send_ns))`, or what is wrong.
pub fn check_msg(m: &[u8]) -> Result<(u64, u64, u64), String> {
    if m.len() < MSG_HEADER {
        return Err(format!("message of {} bytes is shorter than its header", m.len()));
    }
    let word = |i: usize| u64::from_le_bytes(m[i..i + 8].try_into().unwrap());
    let (id, seq, send_ns, len) = (word(0), word(8), word(16), word(24));
    if len != m.len() as u64 {
        return Err(format!("id {id} seq {seq}: length field {len} but {} bytes delivered", m.len()));
    }
    let key = mix(id.wrapping_mul(0x1000_0000_01b3) ^ seq ^ send_ns.rotate_left(17));
    for (i, chunk) in m[MSG_HEADER..].chunks(8).enumerate() {
        let w = mix(key.wrapping_add(i as u64)).to_le_bytes();
        if chunk != &w[..chunk.len()] {
            return Err(format!("id {id} seq {seq}: body differs at byte {}", MSG_HEADER + i * 8));
        }
    }
    Ok((id, seq, send_ns))
}

/// A child process running one role of the current test binary, with its
/// stdout lines collected by a thread.
pub struct Proc {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

/// Starts the current test binary's `__child` test with `role`.
pub fn spawn(role: &str, dir: &Path, args: &[String]) -> Proc {
    spawn_env(role, dir, args, &[])
}

/// As `spawn`, with extra environment variables.
pub fn spawn_env(role: &str, dir: &Path, args: &[String], env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["__child", "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE, role)
        .env("SHMBUS_DIR", dir)
        .env(ARGS, args.join(" "))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn a child test process");
    let stdout = child.stdout.take().unwrap();
    let stdin = child.stdin.take();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(r) = line.strip_prefix("R:") {
                if tx.send(r.to_owned()).is_err() {
                    break;
                }
            }
        }
    });
    Proc { child, stdin, lines: rx }
}

impl Proc {
    /// The next `R:` line, or `None` at end of output or after `limit`.
    pub fn line(&self, limit: Duration) -> Option<String> {
        match self.lines.recv_timeout(limit) {
            Ok(l) => Some(l),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }
    /// The next `R:` line; panics (after killing the child) if none comes within `limit`.
    pub fn expect_line(&mut self, what: &str, limit: Duration) -> String {
        match self.line(limit) {
            Some(l) => l,
            None => {
                let _ = self.child.kill();
                let status = self.child.wait();
                panic!("child gave no {what} within {limit:?} (status {status:?})");
            }
        }
    }
    /// Sends one line to the child's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write to child");
        stdin.flush().unwrap();
    }
    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    /// Closes stdin and waits up to `limit` for a successful exit; returns the remaining lines.
    pub fn finish(mut self, limit: Duration) -> Vec<String> {
        drop(self.stdin.take());
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "child failed: {status}");
                // The reader thread may still hold the last lines: read to the end of output.
                let mut out = Vec::new();
                while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(10)) {
                    out.push(l);
                }
                return out;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!("child did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
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

/// In a child: the arguments.
pub fn args() -> Vec<String> {
    std::env::var(ARGS).unwrap_or_default().split_whitespace().map(str::to_owned).collect()
}

/// In a child: prints an `R:` line to the parent (flushed).
pub fn say(line: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "R:{line}");
    let _ = out.flush();
}

/// In a child: reads one line from stdin (`None` at end of input).
pub fn hear() -> Option<String> {
    let mut s = String::new();
    match std::io::stdin().read_line(&mut s) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(s.trim_end().to_owned()),
    }
}

/// Waits for `cond` with a deadline; panics naming `what` on timeout.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Names of the entries of a directory, sorted.
pub fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Percentile of a sorted slice.
pub fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
