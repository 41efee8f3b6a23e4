//! The parent side: plans the cases, runs each case's processes (servers
//! first, then clients), collects what they report, repeats every case
//! `runs` times interleaved across transports, and reduces the runs to one
//! record per case (median, with min and max).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::child::PREFIX;
use crate::spec::{size_label, Case, ChildResult, ChildSpec, Pattern, Role, Transport, CHILD_ENV, MSG_HEADER};

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Message sizes in bytes.
    pub sizes: Vec<usize>,
    /// Transports.
    pub transports: Vec<Transport>,
    /// Patterns (each transport runs those of its own patterns listed here).
    pub patterns: Vec<Pattern>,
    /// Repetitions of every case.
    pub runs: usize,
    /// Warm-up per run.
    pub warmup_ms: u64,
    /// Measuring time per run.
    pub measure_ms: u64,
    /// The program to re-execute as children (normally `current_exe()`).
    pub exe: Option<PathBuf>,
    /// Print progress on stderr.
    pub progress: bool,
    /// A run during which other processes used more than
    /// [`FOREIGN_CPU_LIMIT`] of a CPU is repeated, at most this many times.
    pub max_retries: u32,
}

/// Share of one CPU that other processes may use during a run before the
/// run counts as disturbed (busy-spin figures on 2 CPUs are meaningless when
/// a third process competes for them).
pub const FOREIGN_CPU_LIMIT: f64 = 0.10;

impl Options {
    /// The full run.
    pub fn full() -> Options {
        Options {
            sizes: vec![64, 1024, 65536],
            transports: Transport::ALL.iter().copied().filter(|t| t.available()).collect(),
            patterns: Pattern::ALL.to_vec(),
            runs: 3,
            warmup_ms: 300,
            measure_ms: 1000,
            exe: None,
            progress: true,
            max_retries: 6,
        }
    }

    /// Small counts for smoke tests.
    pub fn quick() -> Options {
        Options { runs: 1, warmup_ms: 30, measure_ms: 100, max_retries: 0, ..Options::full() }
    }

    /// The cases, in the order one run visits them.
    pub fn cases(&self) -> Vec<Case> {
        let mut cases = Vec::new();
        for &pattern in &self.patterns {
            for &size in &self.sizes {
                for &transport in &self.transports {
                    if transport.patterns().contains(&pattern) {
                        cases.push(Case { pattern, size, transport });
                    }
                }
            }
        }
        cases.sort();
        cases.dedup();
        cases
    }
}

/// One case reduced over its runs: the JSON record.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    /// `shmbus`, `shmbus-loan`, `raw-atomic`, `uds-stream`, ...
    pub transport: String,
    /// How the receiver waits: busy-spin, spin-then-park, park, blocking, busy-poll.
    pub mode: String,
    /// Message size in bytes.
    pub size: usize,
    /// pingpong, stream, fanout-1x4, mpsc-2x1.
    pub pattern: String,
    /// One-way latency (round trip / 2), median over runs of each run's p50.
    pub p50_ns: Option<f64>,
    /// Median over runs of p99.
    pub p99_ns: Option<f64>,
    /// Median over runs of p99.9.
    pub p999_ns: Option<f64>,
    /// Largest one-way time seen in any run.
    pub max_ns: Option<f64>,
    /// Messages per second per receiver, median over runs.
    pub msgs_per_s: Option<f64>,
    /// Payload bytes per second per receiver (`msgs_per_s * size`).
    pub bytes_per_s: Option<f64>,
    /// Runs reduced into this record.
    pub runs: usize,
    /// The `--transports` name of the transport (distinguishes shmbus modes).
    pub id: String,
    /// Smallest and largest p50 over runs.
    pub p50_min_ns: Option<f64>,
    /// See `p50_min_ns`.
    pub p50_max_ns: Option<f64>,
    /// Smallest and largest msgs_per_s over runs.
    pub msgs_per_s_min: Option<f64>,
    /// See `msgs_per_s_min`.
    pub msgs_per_s_max: Option<f64>,
    /// Measured round trips per run (median), ping-pong only.
    pub samples: Option<u64>,
    /// Senders and receivers.
    pub senders: u32,
    /// See `senders`.
    pub receivers: u32,
    /// Whether the processes were pinned to distinct CPUs.
    pub pinned: bool,
    /// Runs repeated because other processes took CPU during them.
    pub retried: u32,
    /// Runs kept although other processes took CPU during them (retries ran out).
    pub disturbed: u32,
    /// Median over runs of the CPU-to-CPU floor (one-way cache-line latency
    /// between the two pinned processes, probed before and after each run).
    pub floor_ns: Option<f64>,
    /// Per run, in run order: p50 (ping-pong), msgs_per_s (streams) and floor.
    pub p50_runs_ns: Vec<f64>,
    /// See `p50_runs_ns`.
    pub msgs_per_s_runs: Vec<f64>,
    /// See `p50_runs_ns`.
    pub floor_runs_ns: Vec<Option<f64>>,
}

/// One run of one case.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Pinger's figures (ping-pong).
    pub latency: Option<ChildResult>,
    /// Mean over receivers of msgs/s (streams).
    pub msgs_per_s: Option<f64>,
    /// Share of a CPU other processes used during the run.
    pub foreign_cpu: f64,
    /// Earlier attempts thrown away as disturbed.
    pub retried: u32,
    /// The floor probe before and after (pinned cases): one-way ns.
    pub floor: Option<(f64, f64)>,
}

impl Sample {
    /// The floor the run ran on (mean of the probes before and after).
    pub fn floor_ns(&self) -> Option<f64> {
        self.floor.map(|(a, b)| (a + b) / 2.0)
    }

    /// Whether the floor moved by more than [`FLOOR_DRIFT_LIMIT`] during the run.
    pub fn floor_moved(&self) -> bool {
        self.floor.is_some_and(|(a, b)| (a - b).abs() > FLOOR_DRIFT_LIMIT * a.min(b))
    }
}

/// A run whose floor probes before and after differ by more than this share
/// ran on two different placements of the virtual CPUs: it is repeated.
pub const FLOOR_DRIFT_LIMIT: f64 = 0.3;

/// The result of a whole run.
#[derive(Debug, Default)]
pub struct Outcome {
    /// One record per case that succeeded at least once.
    pub records: Vec<Record>,
    /// What failed, one line each.
    pub failures: Vec<String>,
    /// CPUs the processes were pinned to (empty: not pinned).
    pub pinned_cpus: Vec<usize>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// Runs repeated because other processes took CPU during them.
    pub retried: u32,
    /// Runs kept although disturbed (retries ran out).
    pub disturbed: u32,
}

/// Where per-run private directories go: tmpfs when there is one, so that
/// nothing is ever written back to a disk while measuring.
pub fn scratch_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

enum Event {
    Line(usize, String),
    Eof(usize),
}

/// The processes of one case run; kills whatever is left when dropped.
struct Kids {
    kids: Vec<Child>,
    tx: mpsc::Sender<Event>,
    rx: mpsc::Receiver<Event>,
}

impl Kids {
    fn new() -> Kids {
        let (tx, rx) = mpsc::channel();
        Kids { kids: Vec::new(), tx, rx }
    }

    fn spawn(&mut self, exe: &Path, spec: &ChildSpec) -> Result<usize, String> {
        let json = serde_json::to_string(spec).map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .env(CHILD_ENV, json)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let idx = self.kids.len();
        let out = child.stdout.take().ok_or("child has no stdout")?;
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(Event::Line(idx, l)).is_err() {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
            let _ = tx.send(Event::Eof(idx));
        });
        self.kids.push(child);
        Ok(idx)
    }

    /// Waits for `what` ("READY" or "RESULT") from each child in `from`.
    fn collect(&self, from: &[usize], what: &str, deadline: Instant) -> Result<Vec<(usize, String)>, String> {
        let mut got: Vec<(usize, String)> = Vec::new();
        while got.len() < from.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("timed out waiting for {what} ({} of {} came)", got.len(), from.len()));
            }
            match self.rx.recv_timeout(left) {
                Ok(Event::Line(i, line)) => {
                    let Some(rest) = line.strip_prefix(PREFIX) else {
                        eprintln!("  child: {line}");
                        continue;
                    };
                    let (word, arg) = rest.split_once(' ').unwrap_or((rest, ""));
                    if word == "ERROR" {
                        return Err(arg.to_string());
                    }
                    if word == what && from.contains(&i) && !got.iter().any(|(j, _)| *j == i) {
                        got.push((i, arg.to_string()));
                    }
                }
                Ok(Event::Eof(i)) if from.contains(&i) && !got.iter().any(|(j, _)| *j == i) => {
                    return Err(format!("a child exited before {what}"));
                }
                Ok(Event::Eof(_)) => {}
                Err(_) => return Err(format!("timed out waiting for {what}")),
            }
        }
        got.sort_by_key(|(i, _)| *i);
        Ok(got)
    }

    /// Waits for every child to exit, then checks their statuses.
    fn finish(&mut self, deadline: Instant) -> Result<(), String> {
        for child in &mut self.kids {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) if status.success() => break,
                    Ok(Some(status)) => return Err(format!("a child failed: {status}")),
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
                    Ok(None) => return Err("a child did not exit after reporting".into()),
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
        self.kids.clear();
        Ok(())
    }
}

impl Drop for Kids {
    fn drop(&mut self) {
        for child in &mut self.kids {
            // Only our own children, by their handles.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs one case once.
pub fn run_once(exe: &Path, case: Case, opts: &Options, cpus: &[usize], tag: &str) -> Result<Sample, String> {
    let dir = tempfile::Builder::new()
        .prefix("shmbus-bench-")
        .tempdir_in(scratch_root())
        .map_err(|e| format!("cannot create a scratch directory: {e}"))?;
    let (senders, receivers) = case.pattern.shape();
    let pin = matches!(case.pattern, Pattern::Pingpong | Pattern::Stream) && cpus.len() >= 2;
    let base = ChildSpec {
        transport: case.transport,
        pattern: case.pattern,
        role: Role::Ponger,
        index: 0,
        size: case.size,
        cpu: None,
        dir: dir.path().to_path_buf(),
        tag: tag.to_string(),
        peer: None,
        warmup_ms: opts.warmup_ms,
        measure_ms: opts.measure_ms,
        senders,
        receivers,
        probe: None,
    };
    let base = if pin {
        let path = dir.path().join("floor-probe.shm");
        crate::sys::SharedFile::create(&path, crate::transport::probe::FILE_LEN)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        ChildSpec { probe: Some(path), ..base }
    } else {
        base
    };
    let (server_role, client_role, n_servers, n_clients) = match case.pattern {
        Pattern::Pingpong => (Role::Ponger, Role::Pinger, 1, 1),
        _ => (Role::Receiver, Role::Sender, receivers, senders),
    };
    let mut kids = Kids::new();
    let mut servers = Vec::new();
    for i in 0..n_servers {
        let spec = ChildSpec { role: server_role, index: i as u8, cpu: pin.then(|| cpus[1]), ..base.clone() };
        servers.push(kids.spawn(exe, &spec)?);
    }
    let ready = kids.collect(&servers, "READY", Instant::now() + Duration::from_secs(30))?;
    let peer = ready.first().map(|(_, info)| info.clone()).filter(|s| !s.is_empty());
    let mut clients = Vec::new();
    for i in 0..n_clients {
        let spec = ChildSpec {
            role: client_role,
            index: i as u8,
            cpu: pin.then(|| cpus[0]),
            peer: peer.clone(),
            ..base.clone()
        };
        clients.push(kids.spawn(exe, &spec)?);
    }
    let all: Vec<usize> = servers.iter().chain(&clients).copied().collect();
    let budget = Duration::from_millis(opts.warmup_ms + opts.measure_ms) * 2 + Duration::from_secs(30);
    let results = kids.collect(&all, "RESULT", Instant::now() + budget)?;
    kids.finish(Instant::now() + Duration::from_secs(10))?;
    let mut parsed = Vec::new();
    for (i, json) in results {
        let r: ChildResult = serde_json::from_str(&json).map_err(|e| format!("bad result {json:?}: {e}"))?;
        parsed.push((i, r));
    }
    let errors: u64 = parsed.iter().map(|(_, r)| r.errors).sum();
    if errors > 0 {
        return Err(format!("{errors} messages lost, out of order or wrongly echoed"));
    }
    let mut sample = Sample {
        floor: parsed.iter().find_map(|(_, r)| Some((r.floor_before_ns?, r.floor_after_ns?))),
        ..Sample::default()
    };
    match case.pattern {
        Pattern::Pingpong => {
            let (_, r) = parsed.iter().find(|(i, _)| clients.contains(i)).ok_or("no result from the pinger")?;
            if r.samples == 0 {
                return Err("no round trip measured".into());
            }
            sample.latency = Some(r.clone());
        }
        _ => {
            let rates: Vec<f64> = parsed
                .iter()
                .filter(|(i, _)| servers.contains(i))
                .map(|(_, r)| if r.secs > 0.0 { r.msgs as f64 / r.secs } else { 0.0 })
                .collect();
            if rates.is_empty() || rates.iter().any(|&r| r <= 0.0) {
                return Err("a receiver measured nothing".into());
            }
            sample.msgs_per_s = Some(rates.iter().sum::<f64>() / rates.len() as f64);
        }
    }
    drop(dir);
    Ok(sample)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

fn min_max(v: &[f64]) -> (Option<f64>, Option<f64>) {
    let min = v.iter().copied().min_by(f64::total_cmp);
    let max = v.iter().copied().max_by(f64::total_cmp);
    (min, max)
}

/// Reduces the runs of one case to its record.
pub fn reduce(case: Case, samples: &[Sample], pinned: bool) -> Record {
    let lat: Vec<&ChildResult> = samples.iter().filter_map(|s| s.latency.as_ref()).collect();
    let pick = |f: fn(&ChildResult) -> f64| lat.iter().map(|r| f(r)).collect::<Vec<f64>>();
    let p50s = pick(|r| r.p50_ns);
    let rates: Vec<f64> = samples.iter().filter_map(|s| s.msgs_per_s).collect();
    let (p50_min_ns, p50_max_ns) = min_max(&p50s);
    let (msgs_per_s_min, msgs_per_s_max) = min_max(&rates);
    let msgs_per_s = median(rates);
    let (senders, receivers) = case.pattern.shape();
    Record {
        transport: case.transport.family().to_string(),
        mode: case.transport.mode().to_string(),
        size: case.size,
        pattern: case.pattern.id().to_string(),
        p50_ns: median(p50s),
        p99_ns: median(pick(|r| r.p99_ns)),
        p999_ns: median(pick(|r| r.p999_ns)),
        max_ns: pick(|r| r.max_ns).into_iter().max_by(f64::total_cmp),
        msgs_per_s,
        bytes_per_s: msgs_per_s.map(|m| m * case.size as f64),
        runs: samples.len(),
        id: case.transport.id().to_string(),
        p50_min_ns,
        p50_max_ns,
        msgs_per_s_min,
        msgs_per_s_max,
        samples: median(pick(|r| r.samples as f64)).map(|s| s as u64),
        senders,
        receivers,
        pinned,
        retried: samples.iter().map(|s| s.retried).sum(),
        disturbed: samples.iter().filter(|s| s.foreign_cpu > FOREIGN_CPU_LIMIT).count() as u32,
        floor_ns: median(samples.iter().filter_map(Sample::floor_ns).collect()),
        p50_runs_ns: lat.iter().map(|r| r.p50_ns).collect(),
        msgs_per_s_runs: samples.iter().filter_map(|s| s.msgs_per_s).collect(),
        floor_runs_ns: samples.iter().map(Sample::floor_ns).collect(),
    }
}

/// Waits (at most `limit`) until other processes leave the CPUs alone for
/// half a second; returns whether they did.
fn wait_for_idle(limit: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        let Some(a) = crate::sys::cpu_snapshot() else { return true };
        let w0 = Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        let Some(b) = crate::sys::cpu_snapshot() else { return true };
        if a.foreign_since(&b) / w0.elapsed().as_secs_f64() <= FOREIGN_CPU_LIMIT {
            return true;
        }
    }
    false
}

/// How long a disturbed run waits for the machine to become quiet before it
/// is repeated anyway (and then kept, flagged, whatever happens).
const QUIET_WAIT: Duration = Duration::from_secs(90);

/// Runs one case once and measures how much CPU other processes took meanwhile.
fn attempt(exe: &Path, case: Case, opts: &Options, cpus: &[usize], tag: &str) -> Result<Sample, String> {
    let before = crate::sys::cpu_snapshot();
    let t0 = Instant::now();
    let mut sample = run_once(exe, case, opts, cpus, tag)?;
    let secs = t0.elapsed().as_secs_f64().max(1e-3);
    sample.foreign_cpu = match (before, crate::sys::cpu_snapshot()) {
        (Some(a), Some(b)) => a.foreign_since(&b) / secs,
        _ => 0.0,
    };
    Ok(sample)
}

/// Runs one case once, repeating the run (after waiting for quiet) while
/// other processes took more than [`FOREIGN_CPU_LIMIT`] of a CPU during it.
/// When the machine does not become quiet within [`QUIET_WAIT`], or the
/// retries run out, the last attempt is kept (and counted as disturbed).
pub fn run_undisturbed(exe: &Path, case: Case, opts: &Options, cpus: &[usize], tag: &str) -> Result<Sample, String> {
    let mut retried = 0;
    loop {
        let mut sample = attempt(exe, case, opts, cpus, &format!("{tag}-{retried}"))?;
        sample.retried = retried;
        let busy = sample.foreign_cpu > FOREIGN_CPU_LIMIT;
        if (!busy && !sample.floor_moved()) || retried >= opts.max_retries {
            return Ok(sample);
        }
        if opts.progress {
            let why = if busy {
                format!("other processes used {:.0}% of a CPU during the run", sample.foreign_cpu * 100.0)
            } else {
                let (a, b) = sample.floor.unwrap_or_default();
                format!("the CPU-to-CPU floor moved from {a:.0} to {b:.0} ns during the run")
            };
            eprintln!("  {} {} {}: {why}; repeating it", case.transport, case.pattern, size_label(case.size));
        }
        retried += 1;
        if !wait_for_idle(QUIET_WAIT) {
            // The machine stays busy: one more attempt, kept whatever happens.
            let mut last = attempt(exe, case, opts, cpus, &format!("{tag}-{retried}"))?;
            last.retried = retried;
            return Ok(last);
        }
    }
}

/// Runs every case `opts.runs` times, interleaved: run 1 of every case, then
/// run 2 of every case, and so on.
pub fn run_all(opts: &Options) -> Result<Outcome, String> {
    if let Some(&s) = opts.sizes.iter().find(|&&s| s < MSG_HEADER) {
        return Err(format!("message size {s} is below the {MSG_HEADER}-byte minimum"));
    }
    let exe = match &opts.exe {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| format!("cannot find the harness binary: {e}"))?,
    };
    let cpus = crate::sys::allowed_cpus();
    let pinned_cpus: Vec<usize> = if cpus.len() >= 2 { cpus[..2].to_vec() } else { Vec::new() };
    let cases = opts.cases();
    let started = Instant::now();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); cases.len()];
    let mut failures = Vec::new();
    let total = cases.len() * opts.runs;
    let mut done = 0;
    for run in 0..opts.runs {
        for (ci, &case) in cases.iter().enumerate() {
            done += 1;
            let tag = format!("{}-{run}-{ci}", std::process::id());
            let what = format!("{} {} {}", case.transport, case.pattern, size_label(case.size));
            match run_undisturbed(&exe, case, opts, &pinned_cpus, &tag) {
                Ok(s) => {
                    if opts.progress {
                        let mut fig = match (&s.latency, s.msgs_per_s) {
                            (Some(l), _) => format!("p50 {:.0} ns  p99 {:.0} ns", l.p50_ns, l.p99_ns),
                            (None, Some(m)) => format!("{:.3} M msg/s", m / 1e6),
                            _ => String::new(),
                        };
                        if let Some(f) = s.floor_ns() {
                            fig.push_str(&format!("  [floor {f:.0} ns]"));
                        }
                        let note = match (s.retried, s.foreign_cpu > FOREIGN_CPU_LIMIT) {
                            (0, false) => String::new(),
                            (n, false) => format!("  ({n} disturbed attempts repeated)"),
                            (n, true) => format!(
                                "  (DISTURBED: others used {:.0}% of a CPU; {n} attempts repeated)",
                                s.foreign_cpu * 100.0
                            ),
                        };
                        eprintln!("[{done}/{total}] run {}/{}: {what}: {fig}{note}", run + 1, opts.runs);
                    }
                    samples[ci].push(s);
                }
                Err(e) => {
                    eprintln!("[{done}/{total}] run {}/{}: {what}: FAILED: {e}", run + 1, opts.runs);
                    failures.push(format!("{what} (run {}): {e}", run + 1));
                }
            }
        }
    }
    let retried = samples.iter().flatten().map(|s| s.retried).sum();
    let disturbed = samples.iter().flatten().filter(|s| s.foreign_cpu > FOREIGN_CPU_LIMIT).count() as u32;
    let records = cases
        .iter()
        .zip(&samples)
        .filter(|(_, s)| !s.is_empty())
        .map(|(&case, s)| {
            let pinned = matches!(case.pattern, Pattern::Pingpong | Pattern::Stream) && !pinned_cpus.is_empty();
            reduce(case, s, pinned)
        })
        .collect();
    Ok(Outcome { records, failures, pinned_cpus, elapsed: started.elapsed(), retried, disturbed })
}
