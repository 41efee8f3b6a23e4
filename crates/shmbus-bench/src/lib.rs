//! Cross-process benchmark harness: shmbus against raw shared-memory
//! baselines (the hardware's floor and ceiling), Unix sockets, TCP over
//! loopback, pipes and iceoryx2, all in one run.
//!
//! Every measurement runs between separate processes: the harness
//! re-executes its own binary ([`std::env::current_exe`]) with the
//! environment variable [`spec::CHILD_ENV`] describing the child's role, and
//! [`child_main_if_requested`], called first thing in `main`, turns such a
//! process into that child. This works from the `shmbus-bench` binary and
//! from the `shmbus` CLI (`shmbus bench ...`) alike.
//!
//! ```text
//! cargo run --release -p shmbus-bench --features iceoryx2 -- --sizes 64,1024,65536 --json bench.json --svg docs/img
//! ```
//!
//! See docs/benchmarks.md for the method and the figures.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

pub mod child;
pub mod harness;
pub mod plot;
pub mod profile;
pub mod report;
pub mod spec;
pub mod sys;
pub mod transport;

use std::path::PathBuf;

use harness::Options;
use spec::{Pattern, Transport};

/// If this process was started as a benchmark child (by the harness
/// re-executing its own binary), runs the child's role and exits; otherwise
/// returns at once. Call it first thing in `main`.
pub fn child_main_if_requested() {
    if let Some(json) = std::env::var_os(spec::CHILD_ENV) {
        std::process::exit(child::main(json));
    }
}

/// Cross-process benchmarks of shmbus against raw shared memory, Unix
/// sockets, TCP, pipes and (built with the `iceoryx2` feature) iceoryx2.
///
/// Transports: shmbus-spin shmbus-spin-park shmbus-park shmbus-loan
/// shmbus-batch raw-atomic raw-futex raw-ring uds-stream uds-stream-poll
/// uds-seqpacket tcp pipe iceoryx2, or the groups all, shmbus, raw, sockets.
#[derive(Clone, Debug, Default, clap::Args)]
#[command(after_help = "Exit code: 0 when every case ran, 1 when any failed, 2 on a usage error. \
    The same harness runs as `cargo run --release -p shmbus-bench --features iceoryx2 -- [OPTIONS]`.")]
pub struct BenchArgs {
    /// Message sizes in bytes (k, K or KiB = 1024), 9 B to 256 MiB [default: 64,1024,65536].
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_size)]
    pub sizes: Option<Vec<usize>>,
    /// Transports or groups, comma-separated [default: all].
    #[arg(long, value_name = "LIST")]
    pub transports: Option<Transports>,
    /// Patterns: pingpong, stream, fanout, mpsc [default: all].
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub patterns: Option<Vec<Pattern>>,
    /// Repetitions of every case, interleaved [default: 3; 1 with --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub runs: Option<u64>,
    /// Small counts (30 ms warm-up, 100 ms measured per run), for tests.
    #[arg(long)]
    pub quick: bool,
    /// Warm-up per run in milliseconds [default: 300].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub warmup_ms: Option<u64>,
    /// Measuring time per run in milliseconds [default: 1000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub measure_ms: Option<u64>,
    /// Repeat a run while other processes took more than 10% of a CPU during
    /// it (or its CPU-to-CPU floor moved), at most N times [default: 6; 0 with --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=100))]
    pub max_retries: Option<u32>,
    /// Write one JSON record per case to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write SVG charts (latency per size, throughput against size) into DIR.
    #[arg(long, value_name = "DIR")]
    pub svg: Option<PathBuf>,
    /// Instead: send and receive COUNT messages in this one thread through each
    /// selected shmbus transport and raw-ring, and print ns/message (for
    /// instruction counts under valgrind --tool=callgrind).
    #[arg(long, value_name = "COUNT")]
    pub inproc: Option<u64>,
}

/// A `--transports` list: transports and groups, each named once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transports(pub Vec<Transport>);

impl std::str::FromStr for Transports {
    type Err = String;
    fn from_str(s: &str) -> Result<Transports, String> {
        let mut all = Vec::new();
        for w in s.split(',') {
            for t in Transport::parse_group(w.trim())? {
                if !all.contains(&t) {
                    all.push(t);
                }
            }
        }
        Ok(Transports(all))
    }
}

fn parse_size(word: &str) -> Result<usize, String> {
    let w = word.trim();
    let (num, mul) = match w.strip_suffix("KiB").or_else(|| w.strip_suffix(['k', 'K'])) {
        Some(n) => (n, 1024),
        None => (w.strip_suffix('B').unwrap_or(w), 1),
    };
    let n = num
        .trim()
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or(format!("bad message size {word:?}"))?;
    if !(spec::MSG_HEADER..=(256 << 20)).contains(&n) {
        return Err(format!("message size {word:?} is not between {} bytes and 256 MiB", spec::MSG_HEADER));
    }
    Ok(n)
}

impl BenchArgs {
    fn options(&self) -> Options {
        let mut opts = if self.quick { Options::quick() } else { Options::full() };
        if let Some(v) = &self.sizes {
            opts.sizes = v.clone();
        }
        if let Some(v) = &self.transports {
            opts.transports = v.0.clone();
        }
        if let Some(v) = &self.patterns {
            opts.patterns = v.clone();
        }
        if let Some(v) = self.runs {
            opts.runs = v as usize;
        }
        if let Some(v) = self.warmup_ms {
            opts.warmup_ms = v;
        }
        if let Some(v) = self.measure_ms {
            opts.measure_ms = v;
        }
        if let Some(v) = self.max_retries {
            opts.max_retries = v;
        }
        opts
    }
}

/// The command line as typed (program name without its directory), for the report.
fn command_line() -> String {
    let mut args = std::env::args();
    let prog = args.next().map(|p| p.rsplit('/').next().unwrap_or(&p).to_owned()).unwrap_or_default();
    std::iter::once(prog).chain(args).collect::<Vec<_>>().join(" ")
}

/// Runs the benchmarks as `args` say. Returns the process exit code.
pub fn run(args: BenchArgs) -> i32 {
    let opts = args.options();
    if let Some(count) = args.inproc {
        return inproc_main(&opts, count);
    }
    let machine = report::Machine::probe();
    let cases = opts.cases();
    if cases.is_empty() {
        eprintln!("shmbus bench: no case matches these transports, patterns and sizes");
        return 2;
    }
    let estimate = cases.len() as f64 * opts.runs as f64 * ((opts.warmup_ms + opts.measure_ms) as f64 / 1e3 + 0.05);
    eprintln!(
        "shmbus bench: {} cases x {} runs, about {:.0} s; CPU {}, {} CPUs, kernel {}, {}",
        cases.len(),
        opts.runs,
        estimate,
        machine.cpu,
        machine.cores,
        machine.kernel,
        machine.libc
    );
    let outcome = match harness::run_all(&opts) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("shmbus bench: {e}");
            return 1;
        }
    };
    println!("{}", report::markdown(&machine, &outcome, &command_line()));
    let mut code = if outcome.failures.is_empty() { 0 } else { 1 };
    if let Some(path) = &args.json {
        let written = serde_json::to_string_pretty(&outcome.records)
            .map_err(|e| e.to_string())
            .and_then(|s| std::fs::write(path, s + "\n").map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("shmbus bench: cannot write {}: {e}", path.display());
            code = 1;
        }
    }
    if let Some(dir) = &args.svg {
        match plot::write_all(dir, &outcome.records) {
            Ok(files) => {
                for f in files {
                    eprintln!("shmbus bench: wrote {}", f.display());
                }
            }
            Err(e) => {
                eprintln!("shmbus bench: cannot write charts to {}: {e}", dir.display());
                code = 1;
            }
        }
    }
    code
}

fn inproc_main(opts: &Options, count: u64) -> i32 {
    let mut code = 0;
    for &t in opts.transports.iter().filter(|t| profile::TRANSPORTS.contains(t)) {
        for &size in &opts.sizes {
            match profile::inproc(t, size, count) {
                Ok(ns) => {
                    println!("inproc {t} {}: {count} messages, {ns:.1} ns per send+receive", spec::size_label(size))
                }
                Err(e) => {
                    eprintln!("shmbus bench: inproc {t} {}: {e}", spec::size_label(size));
                    code = 1;
                }
            }
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(s: &str) -> Result<BenchArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(s.split_whitespace())).map(|c| c.args)
    }

    #[test]
    fn options_parse() {
        let a = parse("--quick --sizes 64,1k,64KiB --transports shmbus-spin,raw --runs=2 --json x.json").unwrap();
        let opts = a.options();
        assert_eq!(opts.sizes, vec![64, 1024, 65536]);
        assert_eq!(opts.runs, 2);
        assert_eq!(opts.transports.len(), 4);
        assert_eq!(a.json, Some(PathBuf::from("x.json")));
        for bad in ["--sizes 4", "--bogus", "--runs", "--runs 0", "--transports nope", "--patterns sideways"] {
            assert_eq!(parse(bad).map(|_| ()).unwrap_err().exit_code(), 2, "{bad}");
        }
        assert_eq!(parse("--help").map(|_| ()).unwrap_err().exit_code(), 0);
    }
}
