//! `shmbus demo`: one publisher and two subscriber processes stream over a
//! temporary bus, then one sender and one receiver over a Unix domain socket,
//! and a short table compares the two. Everything lives in a fresh temporary
//! directory that is removed at the end.
//!
//! Both transports carry the same traffic from one sender to two receiver
//! processes: over the bus, one publisher process and two subscribers; over
//! sockets, a sender thread of the demo process writing every message to two
//! connected receiver processes.
//!
//! Each transport runs two phases with 64-byte synthetic messages carrying
//! their send time (CLOCK_MONOTONIC, one clock for every process):
//! - throughput: the sender sends as fast as it can; the rate is what each
//!   receiver got between its first and last message of the phase;
//! - latency: the sender sends at a fixed, modest rate so that no queue
//!   builds up, and each message's one-way latency (send to receive) is a sample.
//!
//! The children are this same binary re-executed with hidden subcommands;
//! the receivers report to the parent in lines on their stdout: `STAT` every
//! 200 ms, then `DONE` (counts) and `LAT` (every latency sample, in ns).

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;
use shmbus::{BusConfig, Publisher, RecvError, StartAt, Subscriber, WaitStrategy};

use crate::error::{CliError, CliResult, EXIT_VERIFY};
use crate::output::{print, spinner, table};
use crate::signals::{Stop, SLICE};
use crate::synthetic::{self, FLAG_LAST, FLAG_SAMPLE};
use crate::units::{human_bytes, human_ns, human_rate, parse_secs};
use crate::verify::Verifier;
use crate::{clock, publish};

const BUS: &str = "demo";
const SIZE: usize = 64;
const CAPACITY: u64 = 1 << 20;
/// Messages per second in the latency phase: slow enough that no queue builds up.
const PACED_RATE: f64 = 5000.0;
/// Receivers give up when nothing arrives for this long (a sender died).
const IDLE_LIMIT: Duration = Duration::from_secs(10);

/// `shmbus demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Seconds to stream over each transport.
    #[arg(long, value_name = "SECS", default_value = "3", value_parser = parse_secs)]
    duration: f64,
    /// How the receivers wait: auto (busy-spin with at least 4 CPUs, else
    /// park), busy-spin (socket receivers then busy-poll), spin-then-park, or
    /// park (socket receivers then block in read, as the bus's subscribers
    /// sleep in the kernel).
    #[arg(long, value_name = "STRATEGY", default_value = "auto", value_parser = parse_wait)]
    wait: DemoWait,
}

/// `--wait`: a strategy, or `auto` (chosen from the CPUs this process may use).
#[derive(Clone, Copy, Debug)]
pub struct DemoWait(Option<WaitStrategy>);

fn parse_wait(s: &str) -> Result<DemoWait, String> {
    match s {
        "auto" => Ok(DemoWait(None)),
        other => other.parse().map(|w| DemoWait(Some(w))),
    }
}

/// Busy-spinning receivers need a CPU each, and the publisher one more: with
/// fewer CPUs than this (the demo's 3 processes and one for everything
/// else), spinning processes take turns on a CPU and the bus looks slower
/// than a socket. Measured on the 2-CPU development machine with other work
/// running: busy-spin fell below the Unix socket, park did not.
const CPUS_FOR_BUSY_SPIN: usize = 4;

/// The strategy `auto` picks, and why.
fn choose_wait(w: DemoWait) -> (WaitStrategy, String) {
    if let Some(w) = w.0 {
        return (w, "(--wait)".to_owned());
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus >= CPUS_FOR_BUSY_SPIN {
        (WaitStrategy::BusySpin, format!("(auto: {cpus} CPUs, enough for 3 busy-spinning processes)"))
    } else {
        (
            WaitStrategy::Park,
            format!(
                "(auto: {cpus} CPUs; busy-spinning 2 subscribers and a publisher needs {CPUS_FOR_BUSY_SPIN}; \
                 try --wait busy-spin)"
            ),
        )
    }
}

/// How the socket receivers read: busy-polling a non-blocking socket when
/// the bus's subscribers busy-spin, blocking in `read` otherwise (like with like).
fn socket_spins(wait: WaitStrategy) -> bool {
    wait == WaitStrategy::BusySpin
}

/// Hidden: the demo's publisher.
#[derive(Debug, Args)]
pub struct DemoPubArgs {
    name: String,
    #[arg(long)]
    burst_secs: f64,
    #[arg(long)]
    paced_secs: f64,
    #[arg(long)]
    parent: u32,
}

/// Hidden: one of the demo's subscribers.
#[derive(Debug, Args)]
pub struct DemoSubArgs {
    name: String,
    #[arg(long)]
    parent: u32,
    #[arg(long, default_value = "park")]
    wait: WaitStrategy,
}

/// Hidden: one of the demo's Unix socket receivers.
#[derive(Debug, Args)]
pub struct DemoUdsArgs {
    socket: PathBuf,
    #[arg(long)]
    parent: u32,
    /// Busy-poll a non-blocking socket instead of blocking in `read`.
    #[arg(long)]
    spin: bool,
}

// ---------------------------------------------------------------- measuring

/// What a receiver measured.
struct Meter {
    verifier: Verifier,
    burst_first_ns: Option<u64>,
    burst_last_ns: u64,
    burst_count: u64,
    samples: Vec<u64>,
    window: Vec<u64>,
    last_seen: bool,
}

impl Meter {
    fn new() -> Self {
        Meter {
            verifier: Verifier::new(false),
            burst_first_ns: None,
            burst_last_ns: 0,
            burst_count: 0,
            samples: Vec::new(),
            window: Vec::new(),
            last_seen: false,
        }
    }

    fn on_message(&mut self, order: u64, msg: &[u8]) {
        let now = clock::monotonic_ns();
        let Some(m) = self.verifier.on_message(order, msg) else { return };
        if m.flags & FLAG_LAST != 0 {
            self.last_seen = true;
        } else if m.flags & FLAG_SAMPLE != 0 {
            let lat = now.saturating_sub(m.sent_ns);
            self.samples.push(lat);
            self.window.push(lat);
        } else {
            self.burst_first_ns.get_or_insert(now);
            self.burst_last_ns = now;
            self.burst_count += 1;
        }
    }

    /// Messages per second in the throughput phase.
    fn burst_rate(&self) -> f64 {
        match self.burst_first_ns {
            Some(first) if self.burst_last_ns > first && self.burst_count > 1 => {
                (self.burst_count - 1) as f64 * 1e9 / (self.burst_last_ns - first) as f64
            }
            _ => 0.0,
        }
    }

    /// p50 and p99 of the samples since the last call.
    fn take_window(&mut self) -> (u64, u64) {
        let w = percentiles(&mut self.window);
        self.window.clear();
        w
    }
}

/// p50 and p99 (nearest rank) of `v`, which is sorted in place; 0 when empty.
fn percentiles(v: &mut [u64]) -> (u64, u64) {
    if v.is_empty() {
        return (0, 0);
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    (at(0.50), at(0.99))
}

// ---------------------------------------------------------------- children

/// Dies with the parent, so an interrupted demo leaves no process behind.
fn follow_parent(parent: u32) -> Result<(), CliError> {
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM);
    if nix::unistd::getppid().as_raw() as u32 != parent {
        return Err(CliError::new("demo: the parent process is gone"));
    }
    Ok(())
}

fn say(line: &str) -> bool {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

/// Sends the throughput phase, a pause, the latency phase and a last message
/// through `send`. Returns how many were sent, or `None` if stopped.
fn sender_phases(
    burst: Duration,
    paced: Duration,
    stop: &Stop,
    mut send: impl FnMut(&[u8]) -> Result<bool, CliError>,
) -> Result<Option<u64>, CliError> {
    let id = synthetic::publisher_id();
    let mut buf = vec![0u8; SIZE];
    let mut seq = 0u64;
    let start = Instant::now();
    loop {
        if seq.is_multiple_of(64) && (start.elapsed() >= burst || stop.requested()) {
            break;
        }
        synthetic::encode(&mut buf, id, seq, 0, clock::monotonic_ns());
        if !send(&buf)? {
            return Ok(None);
        }
        seq += 1;
    }
    // Let the receivers drain the queue before latency is measured.
    if !stop.sleep(Duration::from_millis(100)) {
        return Ok(None);
    }
    let start = Instant::now();
    let mut i = 0u64;
    while start.elapsed() < paced {
        let due = start + Duration::from_secs_f64(i as f64 / PACED_RATE);
        let now = Instant::now();
        if due > now && !stop.sleep(due - now) {
            return Ok(None);
        }
        synthetic::encode(&mut buf, id, seq, FLAG_SAMPLE, clock::monotonic_ns());
        if !send(&buf)? {
            return Ok(None);
        }
        seq += 1;
        i += 1;
    }
    synthetic::encode(&mut buf, id, seq, FLAG_LAST, clock::monotonic_ns());
    if !send(&buf)? {
        return Ok(None);
    }
    Ok(Some(seq + 1))
}

/// The receiving loop of a demo child: `poll` waits at most a slice and
/// feeds what arrived to the meter (`Ok(false)`: end of stream). Reports
/// `STAT` lines while it runs.
fn receive(stop: &Stop, mut poll: impl FnMut(&mut Meter) -> Result<bool, CliError>) -> Result<Meter, CliError> {
    let mut meter = Meter::new();
    let mut last_stat = Instant::now();
    let mut last_received = 0;
    let mut last_arrival = Instant::now();
    while !meter.last_seen && !stop.requested() && last_arrival.elapsed() < IDLE_LIMIT {
        let before = meter.verifier.received;
        if !poll(&mut meter)? {
            break;
        }
        if meter.verifier.received != before {
            last_arrival = Instant::now();
        }
        if last_stat.elapsed() >= Duration::from_millis(200) {
            let received = meter.verifier.received;
            let rate = (received - last_received) as f64 / last_stat.elapsed().as_secs_f64();
            let (p50, p99) = meter.take_window();
            if !say(&format!("STAT received={received} rate={rate:.0} p50={p50} p99={p99}")) {
                break;
            }
            last_stat = Instant::now();
            last_received = received;
        }
    }
    Ok(meter)
}

/// The last lines of a demo receiver.
fn report(mut meter: Meter) {
    meter.verifier.finish();
    let v = &meter.verifier;
    say(&format!("DONE {} rate={:.0} failed={}", v.summary(), meter.burst_rate(), v.failed()));
    let lat: Vec<String> = meter.samples.iter().map(u64::to_string).collect();
    say(&format!("LAT {}", lat.join(" ")));
}

/// `shmbus __demo-pub`.
pub fn child_pub(a: &DemoPubArgs, cfg: &BusConfig) -> CliResult {
    follow_parent(a.parent)?;
    let stop = Stop::install();
    let mut publ = Publisher::attach(&a.name, cfg)?;
    sender_phases(Duration::from_secs_f64(a.burst_secs), Duration::from_secs_f64(a.paced_secs), &stop, |m| {
        publish::send(&mut publ, m, &stop)
    })?;
    Ok(0)
}

/// `shmbus __demo-sub`.
pub fn child_sub(a: &DemoSubArgs, cfg: &BusConfig) -> CliResult {
    follow_parent(a.parent)?;
    let stop = Stop::install();
    let mut sub = Subscriber::attach(&a.name, &cfg.clone().wait_strategy(a.wait), StartAt::Latest)?;
    let mut buf = Vec::new();
    let meter = receive(&stop, |meter| {
        match sub.recv_into(&mut buf, Some(SLICE)) {
            Ok(seq) => meter.on_message(seq, &buf),
            Err(RecvError::Timeout) => {}
            Err(RecvError::Lagged { lost }) => meter.verifier.on_lagged(lost),
            Err(e) => return Err(CliError::new(format!("bus '{}': {e}", a.name))),
        }
        Ok(true)
    })?;
    drop(sub);
    report(meter);
    Ok(0)
}

/// `shmbus __demo-uds-recv`.
pub fn child_uds_recv(a: &DemoUdsArgs) -> CliResult {
    follow_parent(a.parent)?;
    let stop = Stop::install();
    let io_err = |e: std::io::Error| CliError::new(format!("demo: socket {}: {e}", a.socket.display()));
    let mut stream = UnixStream::connect(&a.socket).map_err(io_err)?;
    if a.spin {
        stream.set_nonblocking(true).map_err(io_err)?;
    } else {
        stream.set_read_timeout(Some(SLICE)).map_err(io_err)?;
    }
    let mut pending = Vec::with_capacity(1 << 16);
    let mut chunk = vec![0u8; 1 << 16];
    let mut order = 0u64;
    let meter = receive(&stop, |meter| {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                pending.extend_from_slice(&chunk[..n]);
                let whole = pending.len() / SIZE * SIZE;
                for msg in pending[..whole].chunks_exact(SIZE) {
                    meter.on_message(order, msg);
                    order += 1;
                }
                pending.drain(..whole);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {
                std::hint::spin_loop();
            }
            Err(e) => return Err(io_err(e)),
        }
        Ok(true)
    })?;
    drop(stream);
    report(meter);
    Ok(0)
}

// ---------------------------------------------------------------- parent

/// A child process that is stopped (SIGTERM, then SIGKILL) if still running when dropped.
struct Kid {
    child: Child,
    what: &'static str,
}

impl Kid {
    fn spawn(cmd: &mut Command, what: &'static str) -> Result<Kid, CliError> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| CliError::new(format!("demo: cannot start the {what} process: {e}")))?;
        Ok(Kid { child, what })
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `limit` for the child to exit.
    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) => return Some(st),
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(10)),
                _ => return None,
            }
        }
    }

    fn check_exit(&mut self, limit: Duration) -> Result<(), CliError> {
        match self.wait(limit) {
            Some(st) if st.success() => Ok(()),
            Some(st) => Err(CliError::new(format!("demo: the {} process failed ({st})", self.what))),
            None => Err(CliError::new(format!("demo: the {} process did not finish", self.what))),
        }
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            if self.wait(Duration::from_secs(2)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// The receivers' stdout lines, tagged with the receiver's index.
type Reports = mpsc::Receiver<(usize, String)>;

/// Starts the two receiver processes; their stdout lines arrive on the
/// returned channel tagged with the receiver's index.
fn spawn_receivers(mut command: impl FnMut() -> Command, what: &'static str) -> Result<(Vec<Kid>, Reports), CliError> {
    let (tx, rx) = mpsc::channel();
    let mut kids = Vec::new();
    for i in 0..2 {
        let mut kid = Kid::spawn(&mut command(), what)?;
        if let Some(out) = kid.child.stdout.take() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { return };
                    if tx.send((i, line)).is_err() {
                        return;
                    }
                }
            });
        }
        kids.push(kid);
    }
    Ok((kids, rx))
}

fn field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// One row of the result table.
struct Row {
    transport: &'static str,
    /// Messages per second in the throughput phase, of the slower receiver.
    rate: f64,
    /// Latency samples of both receivers, in ns.
    samples: Vec<u64>,
    received: u64,
    lost: u64,
    failed: bool,
}

/// Follows the receivers' reports (showing progress) until both are done,
/// then checks they exited and sums up their results.
fn collect(
    transport: &'static str,
    kids: &mut [Kid],
    rx: &Reports,
    d: f64,
    stop: &Stop,
) -> Result<Option<Row>, CliError> {
    let bar = spinner(&format!("{transport:<26}"), Instant::now());
    let started = Instant::now();
    let limit = Duration::from_secs_f64(d) + Duration::from_secs(20);
    let mut done = [None::<String>, None];
    let mut lat: [Option<Vec<u64>>; 2] = [None, None];
    while lat.iter().any(Option::is_none) {
        if stop.requested() {
            return Ok(None);
        }
        if started.elapsed() > limit {
            return Err(CliError::new(format!("demo: the {} processes did not finish in time", kids[0].what)));
        }
        match rx.recv_timeout(SLICE) {
            Ok((i, line)) => {
                if line.starts_with("STAT") && i == 0 {
                    if let Some(bar) = &bar {
                        let phase =
                            if started.elapsed().as_secs_f64() < phases(d).0 { "throughput" } else { "latency" };
                        let v = |k| field(&line, k).unwrap_or(0.0);
                        let (p50, p99) = (v("p50") as u64, v("p99") as u64);
                        let latency = if p50 > 0 {
                            format!("  p50 {}  p99 {}", human_ns(p50), human_ns(p99))
                        } else {
                            String::new()
                        };
                        bar.set_message(format!("{phase:<10} {:>8} msgs/s{latency}", human_rate(v("rate"))));
                    }
                } else if line.starts_with("DONE") {
                    done[i] = Some(line);
                } else if let Some(rest) = line.strip_prefix("LAT") {
                    lat[i] = Some(rest.split_whitespace().filter_map(|n| n.parse().ok()).collect());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    for kid in kids.iter_mut() {
        kid.check_exit(Duration::from_secs(10))?;
    }
    let mut row = Row { transport, rate: f64::INFINITY, samples: Vec::new(), received: 0, lost: 0, failed: false };
    for i in 0..2 {
        let (Some(line), Some(samples)) = (done[i].take(), lat[i].take()) else {
            return Err(CliError::new(format!("demo: a {} process did not report its results", kids[i].what)));
        };
        row.rate = row.rate.min(field(&line, "rate").unwrap_or(0.0));
        row.received += field(&line, "received").unwrap_or(0.0) as u64;
        row.lost += field(&line, "lost").unwrap_or(0.0) as u64;
        row.failed |= !line.contains("failed=false");
        row.samples.extend(samples);
    }
    Ok(Some(row))
}

fn demo_dir(base: &BusConfig) -> Result<tempfile::TempDir, CliError> {
    let parent = match base.get_dir() {
        Some(d) => d.to_path_buf(),
        None if Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm"),
        None => std::env::temp_dir(),
    };
    tempfile::Builder::new()
        .prefix("shmbus-demo-")
        .tempdir_in(&parent)
        .map_err(|e| CliError::new(format!("demo: cannot create a temporary directory in {}: {e}", parent.display())))
}

/// Seconds of the throughput and the latency phase.
fn phases(d: f64) -> (f64, f64) {
    (d * 0.6, d * 0.4)
}

fn run_bus(exe: &Path, dir: &Path, d: f64, wait: WaitStrategy, stop: &Stop) -> Result<Option<Row>, CliError> {
    let cfg = BusConfig::default().dir(dir).capacity(CAPACITY);
    shmbus::create_bus(BUS, &cfg)?;
    let parent = std::process::id().to_string();
    let (mut subs, rx) = spawn_receivers(
        || {
            let mut c = Command::new(exe);
            c.arg("--dir").arg(dir).args(["__demo-sub", BUS, "--parent", &parent, "--wait", &wait.to_string()]);
            c
        },
        "subscriber",
    )?;
    // Both subscribers attached before the first message: they see them all.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !shmbus::inspect(BUS, &cfg).is_ok_and(|st| st.ready_subscribers() == 2) {
        if subs.iter_mut().any(Kid::exited) {
            return Err(CliError::new("demo: a subscriber process exited before attaching"));
        }
        if Instant::now() >= deadline {
            return Err(CliError::new("demo: the subscriber processes did not attach within 10 s"));
        }
        if !stop.sleep(Duration::from_millis(10)) {
            return Ok(None);
        }
    }
    let (burst, paced) = phases(d);
    let mut publ = Kid::spawn(
        Command::new(exe).arg("--dir").arg(dir).args(["__demo-pub", BUS, "--parent", &parent]).args([
            "--burst-secs",
            &burst.to_string(),
            "--paced-secs",
            &paced.to_string(),
        ]),
        "publisher",
    )?;
    let row = collect("shmbus (1 pub -> 2 subs)", &mut subs, &rx, d, stop)?;
    if row.is_some() {
        publ.check_exit(Duration::from_secs(10))?;
    }
    Ok(row)
}

/// Writes all of `msg` to `s`, looking at the stop flag while the socket is full.
fn write_msg(s: &mut UnixStream, msg: &[u8], stop: &Stop) -> Result<bool, CliError> {
    let mut rest = msg;
    while !rest.is_empty() {
        match s.write(rest) {
            Ok(0) => return Ok(false),
            Ok(n) => rest = &rest[n..],
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {
                if stop.requested() {
                    return Ok(false);
                }
            }
            Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(false),
            Err(e) => return Err(CliError::new(format!("demo: cannot write to a socket: {e}"))),
        }
    }
    Ok(true)
}

fn run_socket(exe: &Path, dir: &Path, d: f64, spin: bool, stop: &Stop) -> Result<Option<Row>, CliError> {
    let path = dir.join("demo.sock");
    let io_err = |e: std::io::Error| CliError::new(format!("demo: socket {}: {e}", path.display()));
    let listener = UnixListener::bind(&path).map_err(io_err)?;
    listener.set_nonblocking(true).map_err(io_err)?;
    let parent = std::process::id().to_string();
    let (mut kids, rx) = spawn_receivers(
        || {
            let mut c = Command::new(exe);
            c.arg("__demo-uds-recv").arg(&path).args(["--parent", &parent]);
            if spin {
                c.arg("--spin");
            }
            c
        },
        "socket receiver",
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut streams = Vec::new();
    while streams.len() < 2 {
        match listener.accept() {
            Ok((s, _)) => streams.push(s),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if kids.iter_mut().any(Kid::exited) || Instant::now() >= deadline {
                    return Err(CliError::new("demo: the socket receivers did not connect"));
                }
                if !stop.sleep(Duration::from_millis(5)) {
                    return Ok(None);
                }
            }
            Err(e) => return Err(io_err(e)),
        }
    }
    for s in &streams {
        s.set_nonblocking(false).map_err(io_err)?;
        s.set_write_timeout(Some(SLICE)).map_err(io_err)?;
    }
    // The sender: a thread of this process, writing every message to both receivers.
    let (burst, paced) = phases(d);
    let sender_stop = stop.clone();
    let sender = std::thread::spawn(move || {
        let stop = sender_stop;
        sender_phases(Duration::from_secs_f64(burst), Duration::from_secs_f64(paced), &stop, |m| {
            for s in &mut streams {
                if !write_msg(s, m, &stop)? {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    });
    let row = collect("unix socket (1 -> 2)", &mut kids, &rx, d, stop)?;
    if row.is_some() {
        match sender.join() {
            Ok(r) => {
                r?;
            }
            Err(_) => return Err(CliError::new("demo: the socket sender failed")),
        }
    }
    Ok(row)
}

/// `shmbus demo`.
pub fn run(a: &DemoArgs, base: &BusConfig) -> CliResult {
    let stop = Stop::install();
    let exe = std::env::current_exe().map_err(|e| CliError::new(format!("demo: cannot find this program: {e}")))?;
    let tmp = demo_dir(base)?;
    let dir = tmp.path().to_path_buf();
    let d = a.duration.max(0.2);
    let (wait, why) = choose_wait(a.wait);
    let spin = socket_spins(wait);
    let socket_wait = if spin { "busy-poll a non-blocking socket" } else { "block in read()" };
    print(&format!(
        "shmbus demo: {SIZE}-byte messages from 1 sender to 2 receiver processes, {d} s per transport, in {}\n\
         bus '{BUS}': {} ring, block mode (lossless); subscribers wait with {wait} {why};\n\
         socket receivers {socket_wait}, to compare like with like\n",
        dir.display(),
        human_bytes(CAPACITY),
    ))?;
    let outcome = (|| -> Result<Option<(Row, Row)>, CliError> {
        let Some(bus) = run_bus(&exe, &dir, d, wait, &stop)? else { return Ok(None) };
        let file = dir.join(format!("{BUS}.bus"));
        if file.exists() {
            return Err(CliError::new(format!("demo: the bus file {} was not removed", file.display())));
        }
        let Some(sock) = run_socket(&exe, &dir, d, spin, &stop)? else { return Ok(None) };
        Ok(Some((bus, sock)))
    })();
    // Every child has been stopped by now (Kid's Drop); remove the directory.
    let removed = tmp.close();
    let Some((bus, sock)) = outcome? else {
        eprintln!("shmbus: demo interrupted; removed {}", dir.display());
        return Ok(0);
    };
    removed.map_err(|e| CliError::new(format!("demo: cannot remove {}: {e}", dir.display())))?;
    let mut rows = vec![["transport", "receivers", "msgs/s", "p50 latency", "p99 latency"].map(String::from).to_vec()];
    for (r, how) in [(&bus, wait.to_string()), (&sock, if spin { "busy-poll" } else { "blocking read" }.to_owned())] {
        let mut samples = r.samples.clone();
        let (p50, p99) = percentiles(&mut samples);
        rows.push(vec![r.transport.to_owned(), how, human_rate(r.rate), human_ns(p50), human_ns(p99)]);
    }
    let failed = bus.failed || sock.failed || bus.lost > 0 || sock.lost > 0;
    let mut text = String::from("\n");
    text.push_str(&table(&rows));
    text.push_str(&format!(
        "\nmsgs/s: sent as fast as possible, counted at the slower receiver; latency: one-way, send to\n\
         receive, at {PACED_RATE:.0} msgs/s (send time from CLOCK_MONOTONIC in each message), both receivers.\n\
         checked: {} messages received over the bus and {} over the sockets, {}.\n\
         removed the bus and {}.\n",
        bus.received,
        sock.received,
        if failed { "SOME LOST OR CORRUPT (see above)" } else { "none lost, corrupt, reordered or duplicated" },
        dir.display()
    ));
    print(&text)?;
    Ok(if failed { EXIT_VERIFY } else { 0 })
}
