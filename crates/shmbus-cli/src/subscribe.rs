//! `shmbus sub`: print every message, or verify synthetic ones.

use std::time::{Duration, Instant};

use shmbus::{BusConfig, Overflow, RecvError, Subscriber};

use crate::error::{CliError, CliResult, EXIT_TIMEOUT, EXIT_VERIFY};
use crate::output::{progress_wanted, spinner, Flushed, Sink};
use crate::signals::Stop;
use crate::units::human_rate;
use crate::verify::Verifier;
use crate::{attach, SubArgs};

/// How a run ended.
enum End {
    Count,
    Timeout,
    Signal,
    ClosedStdout,
}

/// `shmbus sub NAME`.
pub fn run(a: &SubArgs, base: &BusConfig) -> CliResult {
    let stop = Stop::install();
    let mut sub = attach::open::<Subscriber>(&a.name, base, &a.sizing, a.from)?;
    // Waits end on SIGINT/SIGTERM (and on the stdout watcher's wake-up)
    // without polling: an idle `sub` makes no periodic wake-ups.
    sub.set_interruptible(true);
    let overwrite = sub.info().overflow == Overflow::Overwrite;
    let mut verifier = a.verify.then(|| Verifier::new(overwrite));
    let result = receive(&mut sub, a, &stop, verifier.as_mut());
    let bus = format!("bus '{}' at {}", sub.name(), sub.path().display());
    drop(sub);
    let mut code = 0;
    if let Some(v) = &mut verifier {
        v.finish();
        for note in v.notes() {
            eprintln!("shmbus: {bus}: {note}");
        }
        let _ = crate::output::print(&format!("{}\n", v.summary()));
        if v.failed() {
            code = EXIT_VERIFY;
        }
    }
    match result? {
        End::Timeout => {
            if let Some(t) = a.timeout {
                eprintln!("shmbus: {bus}: no message for {t} s (--timeout)");
            }
            if code == 0 {
                code = EXIT_TIMEOUT;
            }
        }
        End::Count | End::Signal | End::ClosedStdout => {}
    }
    Ok(code)
}

/// How `sub` prints each message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The bytes as they are, then `\n`.
    Raw,
    /// Printable UTF-8 as it is; control characters (but tab), bytes that are
    /// not UTF-8 and `\` escaped as `\xNN` (`\\`); then `\n`.
    Text,
    /// Two lowercase hex digits per byte, then `\n`.
    Hex,
    /// One JSON object per line: `seq`, `publisher`, `len`, and `text` (valid
    /// UTF-8) or `base64`.
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "raw" => Ok(Format::Raw),
            "text" => Ok(Format::Text),
            "hex" => Ok(Format::Hex),
            "json" => Ok(Format::Json),
            _ => Err(format!("{s:?} is not a format (expected raw, text, hex or json)")),
        }
    }
}

impl Format {
    /// Appends one message, as this format prints it, to `out`.
    pub fn render(self, seq: u64, msg: &[u8], out: &mut Vec<u8>) {
        match self {
            Format::Raw => out.extend_from_slice(msg),
            Format::Text => escape_text(msg, out),
            Format::Hex => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                for b in msg {
                    out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
                }
            }
            Format::Json => {
                // The library does not report which publisher slot wrote a
                // message yet: `publisher` is null until it does.
                let payload = match std::str::from_utf8(msg) {
                    Ok(t) => format!("\"text\":{}", serde_json::Value::from(t)),
                    Err(_) => format!("\"base64\":\"{}\"", base64(msg)),
                };
                out.extend_from_slice(
                    format!("{{\"seq\":{seq},\"publisher\":null,\"len\":{},{payload}}}", msg.len()).as_bytes(),
                );
            }
        }
        out.push(b'\n');
    }
}

fn escape_text(msg: &[u8], out: &mut Vec<u8>) {
    let hex = |b: u8, out: &mut Vec<u8>| out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
    for chunk in msg.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.extend_from_slice(b"\\\\");
            } else if c.is_control() && c != '\t' {
                let mut tmp = [0u8; 4];
                for &b in c.encode_utf8(&mut tmp).as_bytes() {
                    hex(b, out);
                }
            } else {
                let mut tmp = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
        }
        for &b in chunk.invalid() {
            hex(b, out);
        }
    }
}

/// Standard base64 with padding (RFC 4648).
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(char::from(ABC[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Bytes buffered for stdout before they are written even though messages
/// keep coming.
const OUT_BUFFER: usize = 1 << 16;

fn receive(
    sub: &mut Subscriber,
    a: &SubArgs,
    stop: &Stop,
    mut verifier: Option<&mut Verifier>,
) -> Result<End, CliError> {
    let print_messages = !a.verify && !a.quiet;
    let mut out = Sink::stdout();
    let format = a.format.unwrap_or(if out.tty { Format::Text } else { Format::Raw });
    let idle = a.timeout.map(Duration::from_secs_f64);
    let limit = a.count.unwrap_or(u64::MAX);
    let mut received = 0u64;
    let mut last_message = Instant::now();
    let mut buf = Vec::new();
    let mut line = Vec::new();
    let mut progress = Progress::new(a.verify);
    let bus_err = |e: RecvError, sub: &Subscriber| {
        CliError::new(format!("bus '{}' at {}: {e}", sub.name(), sub.path().display()))
    };
    if print_messages {
        crate::signals::watch_stdout_gone(crate::signals::MainWaker::here());
    }
    let mut abandoned = sub.abandoned();
    let end = loop {
        if received >= limit {
            break End::Count;
        }
        if stop.requested() {
            break End::Signal;
        }
        // Take what is there without waiting; write out before waiting.
        let got = match sub.recv_into(&mut buf, Some(Duration::ZERO)) {
            Err(RecvError::Timeout) => {
                match out.flush(stop)? {
                    Flushed::All => {}
                    Flushed::Stopped => break End::Signal,
                    Flushed::Closed => break End::ClosedStdout,
                }
                // Nothing to print and nothing arriving: notice a reader
                // that went away (`| head -1`) without waiting for a message.
                if print_messages && out.closed()? {
                    break End::ClosedStdout;
                }
                progress.update(verifier.as_deref(), received);
                let wait = match idle {
                    Some(t) => {
                        let left = t.saturating_sub(last_message.elapsed());
                        if left.is_zero() {
                            break End::Timeout;
                        }
                        Some(left)
                    }
                    None => None,
                };
                sub.recv_into(&mut buf, wait)
            }
            other => other,
        };
        let now_abandoned = sub.abandoned();
        if now_abandoned != abandoned {
            if let Some(v) = verifier.as_deref_mut() {
                v.on_abandoned(now_abandoned - abandoned);
            }
            abandoned = now_abandoned;
        }
        match got {
            Ok(seq) => {
                received += 1;
                last_message = Instant::now();
                progress.update(verifier.as_deref(), received);
                if let Some(v) = verifier.as_deref_mut() {
                    v.on_message(seq, &buf);
                } else if print_messages {
                    line.clear();
                    format.render(seq, &buf, &mut line);
                    out.push(&line);
                    if out.tty || out.pending() >= OUT_BUFFER {
                        match out.flush(stop)? {
                            Flushed::All => {}
                            Flushed::Stopped => break End::Signal,
                            Flushed::Closed => break End::ClosedStdout,
                        }
                    }
                }
            }
            Err(RecvError::Timeout) => {}
            Err(RecvError::Lagged { lost }) => match verifier.as_deref_mut() {
                Some(v) => v.on_lagged(lost),
                None => eprintln!("shmbus: bus '{}': this subscriber was overrun and lost {lost} messages", sub.name()),
            },
            Err(e) => return Err(bus_err(e, sub)),
        }
    };
    progress.finish();
    if matches!(end, End::Count | End::Timeout) {
        // What was received is printed in full; after a signal or with
        // nobody reading, what is left is dropped.
        out.flush(stop)?;
    }
    Ok(end)
}

struct Progress {
    enabled: bool,
    bar: Option<crate::output::Spinner>,
    start: Instant,
    last: Instant,
    last_received: u64,
}

impl Progress {
    fn new(verify: bool) -> Self {
        let now = Instant::now();
        Progress { enabled: verify && progress_wanted(), bar: None, start: now, last: now, last_received: 0 }
    }

    fn update(&mut self, v: Option<&Verifier>, received: u64) {
        // Cheap when disabled (the common, non-terminal case): one branch.
        if !self.enabled || self.last.elapsed() < Duration::from_millis(250) {
            return;
        }
        let dt = self.last.elapsed().as_secs_f64();
        let rate = (received - self.last_received) as f64 / dt;
        self.last = Instant::now();
        self.last_received = received;
        if self.start.elapsed() < Duration::from_secs(1) {
            return;
        }
        if self.bar.is_none() {
            self.bar = spinner("sub --verify", self.start);
        }
        if let (Some(bar), Some(v)) = (&self.bar, v) {
            bar.set_message(format!("{}  {} msgs/s", v.summary(), human_rate(rate)));
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
