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

/// Whether `send` already said who holds this process's publisher back.
static BLOCKED_SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Publishes one message, waiting for space in slices so a signal is noticed.
/// A message abandoned while this process was stopped between claim and
/// commit is sent again. The first time a subscriber holds the publisher back
/// for a second or more, says so once on stderr. Returns false if a stop was
/// requested before it was sent.
pub fn send(publ: &mut Publisher, msg: &[u8], stop: &Stop) -> Result<bool, CliError> {
    loop {
        match publ.send_timeout(msg, SLICE) {
            Ok(()) => return Ok(true),
            Err(SendError::Abandoned { .. }) => {}
            Err(SendError::Timeout | SendError::Full) => {
                if let Some(b) = publ.blocked_by() {
                    if !BLOCKED_SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        eprintln!(
                            "shmbus: bus '{}': waiting {:.1} s for the {} in slot {} (pid {}), {} behind: it is not \
                             reading (stopped, stuck or slow); block mode waits for it (create the bus with \
                             --evict-after to drop such a reader, or stop that process)",
                            publ.name(),
                            b.waited.as_secs_f64(),
                            b.kind,
                            b.slot,
                            b.pid,
                            crate::units::human_bytes(b.behind)
                        );
                    }
                }
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
    // `--rate` is bounded (see `parse_rate`), but a far-away due time must
    // still not overflow: it is then simply never reached.
    let Some(due) = Duration::try_from_secs_f64(i as f64 / rate).ok().and_then(|d| start.checked_add(d)) else {
        while stop.sleep(Duration::from_secs(3600)) {}
        return false;
    };
    let now = Instant::now();
    if due > now {
        stop.sleep(due - now)
    } else {
        !stop.requested()
    }
}

struct Progress {
    /// Whether stderr is a terminal, asked once (not once per message: that
    /// is an `ioctl` each time).
    enabled: bool,
    bar: Option<crate::output::Spinner>,
    start: Instant,
    last: Instant,
}

impl Progress {
    fn new() -> Self {
        let now = Instant::now();
        Progress { enabled: progress_wanted(), bar: None, start: now, last: now }
    }

    /// Shows a progress line once the run has lasted a second (only on a terminal).
    fn update(&mut self, sent: u64, total: Option<u64>) {
        if !self.enabled || self.last.elapsed() < Duration::from_millis(100) {
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
    let audience = Audience::now(&publ, base);
    let mut progress = Progress::new();
    let sent = if !a.messages.is_empty() {
        publish_args(&mut publ, a, &stop)?
    } else if a.stdin {
        publish_stdin(&mut publ, a, &stop, &mut progress)?
    } else {
        publish_synthetic(&mut publ, a, &stop, &mut progress)?
    };
    progress.finish();
    if sent > 0 && !stop.requested() {
        linger(&publ, base, audience, Duration::from_secs_f64(a.linger), &stop);
    }
    drop(publ);
    Ok(0)
}

fn too_long(publ: &Publisher, what: String, len: String) -> CliError {
    CliError::new(format!(
        "bus '{}' at {}: {what} is {len}, larger than the bus's max_message of {} bytes",
        publ.name(),
        publ.path().display(),
        publ.max_message()
    ))
}

/// `shmbus pub NAME MESSAGE...`: each argument is one message.
fn publish_args(publ: &mut Publisher, a: &PubArgs, stop: &Stop) -> Result<u64, CliError> {
    let max = publ.max_message();
    if let Some((i, m)) = a.messages.iter().enumerate().find(|(_, m)| m.len() > max) {
        return Err(too_long(publ, format!("message argument {}", i + 1), format!("{} bytes", m.len())));
    }
    let start = Instant::now();
    let mut sent = 0;
    for m in &a.messages {
        if !pace(start, sent, a.rate, stop) || !send(publ, m.as_bytes(), stop)? {
            break;
        }
        sent += 1;
    }
    Ok(sent)
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
    /// A line longer than the bus's max message: reading stopped after
    /// max + 1 bytes of it.
    TooLong,
    Failed(std::io::Error),
}

/// Reads one line of at most `max` bytes (without its `\n`) into `line`.
/// Never holds more than `max + 1` bytes of a line: a longer one is
/// [`Line::TooLong`]. `None` at the end of the input.
fn read_line(input: &mut impl BufRead, max: usize, line: &mut Vec<u8>) -> Option<Line> {
    line.clear();
    let limit = max as u64 + 1;
    loop {
        let room = limit - line.len() as u64;
        match input.by_ref().take(room).read_until(b'\n', line) {
            Ok(0) if line.is_empty() => return None,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                    return Some(Line::Data(std::mem::take(line)));
                }
                if line.len() as u64 >= limit {
                    return Some(Line::TooLong);
                }
                // End of input: a last line without `\n`.
                return Some(Line::Data(std::mem::take(line)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Some(Line::Failed(e)),
        }
    }
}

/// Reads stdin on its own thread, so that the main thread can look at the
/// stop flag while a read blocks. Lines longer than `max` end the reading.
fn stdin_lines(max: usize) -> mpsc::Receiver<Line> {
    let (tx, rx) = mpsc::sync_channel(1024);
    std::thread::spawn(move || {
        let mut input = BufReader::with_capacity(1 << 16, std::io::stdin().lock());
        let mut line = Vec::new();
        while let Some(l) = read_line(&mut input, max, &mut line) {
            let last = !matches!(l, Line::Data(_));
            if tx.send(l).is_err() || last {
                return;
            }
        }
    });
    rx
}

fn publish_stdin(publ: &mut Publisher, a: &PubArgs, stop: &Stop, progress: &mut Progress) -> Result<u64, CliError> {
    let max = publ.max_message();
    let lines = stdin_lines(max);
    let limit = a.count.unwrap_or(u64::MAX);
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < limit {
        let line = match lines.recv_timeout(SLICE) {
            Ok(Line::Data(l)) => l,
            Ok(Line::TooLong) => {
                return Err(too_long(publ, format!("line {} of stdin", sent + 1), format!("more than {max} bytes")));
            }
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
        if !pace(start, sent, a.rate, stop) || !send(publ, &line, stop)? {
            break;
        }
        sent += 1;
        progress.update(sent, a.count);
    }
    Ok(sent)
}

/// Whether subscribers were there when `pub` attached, and the bus's attach
/// epoch then: what [`linger`] compares the end with.
#[derive(Clone, Copy)]
struct Audience {
    subscribers: bool,
    epoch: Option<u64>,
}

impl Audience {
    fn now(publ: &Publisher, base: &BusConfig) -> Audience {
        match shmbus::inspect(publ.name(), base) {
            Ok(st) => Audience { subscribers: st.live_subscribers() > 0, epoch: Some(st.attach_epoch) },
            Err(_) => Audience { subscribers: false, epoch: None },
        }
    }
}

/// First and longest pause between two looks at the bus while lingering.
const LINGER_FIRST_LOOK: Duration = Duration::from_millis(2);
const LINGER_LONGEST_LOOK: Duration = Duration::from_millis(50);

/// The messages of a non-persistent bus go with its file when the last peer
/// detaches. When no subscriber is attached at the end, waits (at most `max`)
/// until a subscriber attached and caught up, or attached and left again, so
/// that a subscriber started right after `pub` (e.g. `--from oldest`) still
/// gets them. A subscriber that was attached while `pub` published (there
/// when it attached, or the bus's attach epoch moved since) and has left
/// already took what it wanted: then `pub` leaves at once. Looks at the bus
/// after 2 ms, then ever less often, up to every 50 ms: the attach epoch
/// tells of a subscriber that came and went between two looks.
fn linger(publ: &Publisher, base: &BusConfig, audience: Audience, max: Duration, stop: &Stop) {
    if publ.info().persistent || max.is_zero() {
        return;
    }
    let deadline = Instant::now() + max;
    let mut pause = LINGER_FIRST_LOOK;
    let mut first = true;
    loop {
        let Ok(st) = shmbus::inspect(publ.name(), base) else { return };
        let live: Vec<_> = st.peers.iter().filter(|p| p.alive && p.kind == shmbus::PeerKind::Subscriber).collect();
        let came = audience.subscribers || audience.epoch.is_some_and(|e| e != st.attach_epoch);
        if first {
            // Subscribers attached: the bus outlives us. None now, but one
            // came while we published: it has left with what it wanted.
            if !live.is_empty() || came {
                return;
            }
            if progress_wanted() {
                eprintln!(
                    "shmbus: no subscriber on bus '{}' yet; keeping its messages for up to {} (--linger)",
                    publ.name(),
                    human_ns(max.as_nanos() as u64)
                );
            }
            first = false;
        } else if (came && live.is_empty()) || (!live.is_empty() && live.iter().all(|p| p.lag_bytes == 0)) {
            return;
        }
        let now = Instant::now();
        if now >= deadline || !stop.sleep(pause.min(deadline - now)) {
            return;
        }
        pause = (pause * 2).min(LINGER_LONGEST_LOOK);
    }
}
