//! `shmbus pub`: lines from stdin, or synthetic messages, onto a bus.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shmbus::{BusConfig, Publisher, SendError, StartAt};

use crate::error::{CliError, CliResult};
use crate::output::{progress_wanted, spinner};
use crate::signals::{Stop, SLICE};
use crate::units::{human_ns, human_rate};
use crate::{attach, clock, synthetic, PubArgs};

/// Synthetic messages sent when `--count` is not given.
pub const DEFAULT_COUNT: u64 = 1000;

/// Publishes one message, waiting for space in slices so a signal is noticed.
/// Returns false if a stop was requested before it was sent.
pub fn send(publ: &mut Publisher, msg: &[u8], stop: &Stop) -> Result<bool, CliError> {
    loop {
        match publ.send_timeout(msg, SLICE) {
            Ok(()) => return Ok(true),
            Err(SendError::Timeout | SendError::Full) => {
                if stop.requested() {
                    return Ok(false);
                }
            }
            Err(e) => {
                return Err(CliError::new(format!("bus '{}' at {}: {e}", publ.name(), publ.path().display())));
            }
        }
    }
}

/// Sleeps until message `i` is due at `rate` per second from `start`.
fn pace(start: Instant, i: u64, rate: Option<f64>, stop: &Stop) -> bool {
    let Some(rate) = rate else { return !stop.requested() };
    let due = start + Duration::from_secs_f64(i as f64 / rate);
    let now = Instant::now();
    if due > now {
        stop.sleep(due - now)
    } else {
        !stop.requested()
    }
}

struct Progress {
    bar: Option<crate::output::Spinner>,
    start: Instant,
    last: Instant,
}

impl Progress {
    fn new() -> Self {
        let now = Instant::now();
        Progress { bar: None, start: now, last: now }
    }

    /// Shows a progress line once the run has lasted a second (only on a terminal).
    fn update(&mut self, sent: u64, total: Option<u64>) {
        if !progress_wanted() || self.last.elapsed() < Duration::from_millis(100) {
            return;
        }
        self.last = Instant::now();
        let elapsed = self.start.elapsed();
        if elapsed < Duration::from_secs(1) {
            return;
        }
        if self.bar.is_none() {
            self.bar = spinner("pub", self.start);
        }
        if let Some(bar) = &self.bar {
            let rate = sent as f64 / elapsed.as_secs_f64();
            let of = total.map(|t| format!(" of {t}")).unwrap_or_default();
            bar.set_message(format!("sent {sent}{of}  {} msgs/s", human_rate(rate)));
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `shmbus pub NAME`.
pub fn run(a: &PubArgs, base: &BusConfig) -> CliResult {
    let stop = Stop::install();
    let mut publ = attach::open::<Publisher>(&a.name, base, &a.sizing, StartAt::Latest)?;
    let mut progress = Progress::new();
    let sent = if a.stdin {
        publish_stdin(&mut publ, a, &stop, &mut progress)?
    } else {
        publish_synthetic(&mut publ, a, &stop, &mut progress)?
    };
    progress.finish();
    if sent > 0 && !stop.requested() {
        linger(&publ, base, Duration::from_secs_f64(a.linger), &stop);
    }
    drop(publ);
    Ok(0)
}

fn publish_synthetic(publ: &mut Publisher, a: &PubArgs, stop: &Stop, progress: &mut Progress) -> Result<u64, CliError> {
    let count = a.count.unwrap_or(DEFAULT_COUNT);
    let max = publ.max_message();
    if a.size > max {
        return Err(CliError::new(format!(
            "bus '{}' at {}: --size {} is larger than the bus's max_message of {max} bytes",
            publ.name(),
            publ.path().display(),
            a.size
        )));
    }
    let id = synthetic::publisher_id();
    let mut buf = vec![0u8; a.size];
    let start = Instant::now();
    let mut sent = 0;
    for seq in 0..count {
        if !pace(start, seq, a.rate, stop) {
            break;
        }
        synthetic::encode(&mut buf, id, seq, 0, clock::monotonic_ns());
        if !send(publ, &buf, stop)? {
            break;
        }
        sent += 1;
        progress.update(sent, Some(count));
    }
    Ok(sent)
}

enum Line {
    Data(Vec<u8>),
    Failed(std::io::Error),
}

/// Reads stdin on its own thread, so that the main thread can look at the
/// stop flag while a read blocks.
fn stdin_lines() -> mpsc::Receiver<Line> {
    let (tx, rx) = mpsc::sync_channel(1024);
    std::thread::spawn(move || {
        let mut input = BufReader::with_capacity(1 << 16, std::io::stdin().lock());
        loop {
            let mut line = Vec::new();
            match input.by_ref().read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    if tx.send(Line::Data(line)).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Line::Failed(e));
                    return;
                }
            }
        }
    });
    rx
}

fn publish_stdin(publ: &mut Publisher, a: &PubArgs, stop: &Stop, progress: &mut Progress) -> Result<u64, CliError> {
    let lines = stdin_lines();
    let limit = a.count.unwrap_or(u64::MAX);
    let max = publ.max_message();
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < limit {
        let line = match lines.recv_timeout(SLICE) {
            Ok(Line::Data(l)) => l,
            Ok(Line::Failed(e)) => {
                return Err(CliError::new(format!("bus '{}': cannot read stdin: {e}", publ.name())));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if stop.requested() {
                    break;
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if line.len() > max {
            return Err(CliError::new(format!(
                "bus '{}' at {}: line {} of stdin is {} bytes, larger than the bus's max_message of {max} bytes",
                publ.name(),
                publ.path().display(),
                sent + 1,
                line.len()
            )));
        }
        if !pace(start, sent, a.rate, stop) || !send(publ, &line, stop)? {
            break;
        }
        sent += 1;
        progress.update(sent, a.count);
    }
    Ok(sent)
}

/// The messages of a non-persistent bus go with its file when the last peer
/// detaches. When no subscriber is attached at the end, waits (at most `max`)
/// until a subscriber attached and caught up, or attached and left again (the
/// bus's attach epoch moved, so even a subscriber that came and went between
/// two looks is noticed), so that a subscriber started right after `pub`
/// (e.g. `--from oldest`) still gets them.
fn linger(publ: &Publisher, base: &BusConfig, max: Duration, stop: &Stop) {
    if publ.info().persistent || max.is_zero() {
        return;
    }
    let deadline = Instant::now() + max;
    let mut first_epoch = None;
    loop {
        let Ok(st) = shmbus::inspect(publ.name(), base) else { return };
        let live: Vec<_> = st.peers.iter().filter(|p| p.alive && p.kind == shmbus::PeerKind::Subscriber).collect();
        match first_epoch {
            None => {
                if !live.is_empty() {
                    // Subscribers are attached: the bus outlives us.
                    return;
                }
                if progress_wanted() {
                    eprintln!(
                        "shmbus: no subscriber on bus '{}' yet; keeping its messages for up to {} (--linger)",
                        publ.name(),
                        human_ns(max.as_nanos() as u64)
                    );
                }
                first_epoch = Some(st.attach_epoch);
            }
            Some(epoch) => {
                let came = st.attach_epoch != epoch;
                if (came && live.is_empty()) || (!live.is_empty() && live.iter().all(|p| p.lag_bytes == 0)) {
                    return;
                }
            }
        }
        if Instant::now() >= deadline || !stop.sleep(Duration::from_millis(2)) {
            return;
        }
    }
}
