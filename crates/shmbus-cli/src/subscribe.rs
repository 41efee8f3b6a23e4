//! `shmbus sub`: print every message, or verify synthetic ones.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::time::{Duration, Instant};

use shmbus::{BusConfig, Overflow, RecvError, Subscriber};

use crate::error::{CliError, CliResult, EXIT_TIMEOUT, EXIT_VERIFY};
use crate::output::{progress_wanted, spinner};
use crate::signals::{Stop, SLICE};
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

fn receive(
    sub: &mut Subscriber,
    a: &SubArgs,
    stop: &Stop,
    mut verifier: Option<&mut Verifier>,
) -> Result<End, CliError> {
    let print_messages = !a.verify && !a.quiet;
    let stdout = io::stdout();
    let tty = stdout.is_terminal();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let idle = a.timeout.map(Duration::from_secs_f64);
    let limit = a.count.unwrap_or(u64::MAX);
    let mut received = 0u64;
    let mut last_message = Instant::now();
    let mut buf = Vec::new();
    let mut progress = Progress::new(a.verify);
    let bus_err = |e: RecvError, sub: &Subscriber| {
        CliError::new(format!("bus '{}' at {}: {e}", sub.name(), sub.path().display()))
    };
    let write_err = |e: io::Error| {
        if e.kind() == io::ErrorKind::BrokenPipe {
            None
        } else {
            Some(CliError::new(format!("cannot write to stdout: {e}")))
        }
    };
    let end = loop {
        if received >= limit {
            break End::Count;
        }
        if stop.requested() {
            break End::Signal;
        }
        // Take what is there without waiting; flush before waiting.
        let got = match sub.recv_into(&mut buf, Some(Duration::ZERO)) {
            Err(RecvError::Timeout) => {
                if let Err(e) = out.flush() {
                    match write_err(e) {
                        None => break End::ClosedStdout,
                        Some(e) => return Err(e),
                    }
                }
                progress.update(verifier.as_deref(), received);
                let wait = match idle {
                    Some(t) => {
                        let left = t.saturating_sub(last_message.elapsed());
                        if left.is_zero() {
                            break End::Timeout;
                        }
                        left.min(SLICE)
                    }
                    None => SLICE,
                };
                sub.recv_into(&mut buf, Some(wait))
            }
            other => other,
        };
        match got {
            Ok(seq) => {
                received += 1;
                last_message = Instant::now();
                progress.update(verifier.as_deref(), received);
                if let Some(v) = verifier.as_deref_mut() {
                    v.on_message(seq, &buf);
                } else if print_messages {
                    let r = out.write_all(&buf).and_then(|()| out.write_all(b"\n"));
                    let r = if tty { r.and_then(|()| out.flush()) } else { r };
                    if let Err(e) = r {
                        match write_err(e) {
                            None => break End::ClosedStdout,
                            Some(e) => return Err(e),
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
    if let Err(e) = out.flush() {
        if let Some(e) = write_err(e) {
            return Err(e);
        }
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
