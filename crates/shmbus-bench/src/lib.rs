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
//! cargo run --release -p shmbus-bench -- --sizes 64,1024,65536 --json bench.json --svg docs/img
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

const USAGE: &str = "\
usage: shmbus bench [options]        (or: cargo run --release -p shmbus-bench -- [options])

Cross-process benchmarks of shmbus against raw shared memory, sockets, pipes and iceoryx2.

options:
  --sizes LIST        message sizes in bytes (k/K = KiB), default 64,1024,65536
  --transports LIST   transports or groups (all, shmbus, raw, sockets), default all:
                      shmbus-spin shmbus-spin-park shmbus-park shmbus-loan raw-atomic
                      raw-futex raw-ring uds-stream uds-seqpacket tcp pipe iceoryx2
  --patterns LIST     pingpong, stream, fanout, mpsc (default: all)
  --runs N            repetitions of every case, interleaved (default 3; 1 with --quick)
  --quick             small counts (30 ms warm-up, 100 ms measured per run), for tests
  --warmup-ms N       warm-up per run (default 300)
  --measure-ms N      measuring time per run (default 1000)
  --max-retries N     repeat a run while other processes took more than 10% of a CPU
                      during it, at most N times (default 6; 0 with --quick)
  --json FILE         write one JSON record per case
  --svg DIR           write SVG charts (latency per size, throughput against size)
  --inproc COUNT      instead: send and receive COUNT messages in this one thread through
                      each selected shmbus transport and raw-ring, and print ns/message
                      (for instruction counts under valgrind --tool=callgrind)
  -h, --help          this text

The exit code is 0 when every case ran, 1 when any failed, 2 on a usage error.";

fn parse_size(word: &str) -> Result<usize, String> {
    let w = word.trim();
    let (num, mul) = match w.strip_suffix("KiB").or_else(|| w.strip_suffix(['k', 'K'])) {
        Some(n) => (n, 1024),
        None => (w.strip_suffix('B').unwrap_or(w), 1),
    };
    num.trim().parse::<usize>().map(|n| n * mul).map_err(|_| format!("bad message size {word:?}"))
}

/// Parsed command line.
struct Cli {
    opts: Options,
    json: Option<PathBuf>,
    svg: Option<PathBuf>,
    inproc: Option<u64>,
}

fn parse(args: &[String]) -> Result<Option<Cli>, String> {
    let mut quick = false;
    let mut runs: Option<usize> = None;
    let mut sizes = None;
    let mut transports = None;
    let mut patterns = None;
    let mut warmup = None;
    let mut measure = None;
    let mut json = None;
    let mut svg = None;
    let mut inproc = None;
    let mut retries = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next().cloned()).ok_or(format!("{flag} needs a value"));
        match flag {
            "-h" | "--help" => return Ok(None),
            "--quick" => quick = true,
            "--runs" => {
                let v = value()?;
                runs = Some(v.parse().ok().filter(|&n: &usize| n > 0).ok_or(format!("bad --runs {v:?}"))?);
            }
            "--sizes" => sizes = Some(value()?.split(',').map(parse_size).collect::<Result<Vec<_>, _>>()?),
            "--transports" => {
                let mut all = Vec::new();
                for w in value()?.split(',') {
                    for t in Transport::parse_group(w.trim())? {
                        if !all.contains(&t) {
                            all.push(t);
                        }
                    }
                }
                transports = Some(all);
            }
            "--patterns" => {
                patterns = Some(value()?.split(',').map(|w| w.trim().parse()).collect::<Result<Vec<Pattern>, _>>()?)
            }
            "--warmup-ms" => {
                let v = value()?;
                warmup = Some(v.parse().map_err(|_| format!("bad --warmup-ms {v:?}"))?);
            }
            "--measure-ms" => {
                let v = value()?;
                measure = Some(v.parse().ok().filter(|&n: &u64| n > 0).ok_or(format!("bad --measure-ms {v:?}"))?);
            }
            "--json" => json = Some(PathBuf::from(value()?)),
            "--svg" => svg = Some(PathBuf::from(value()?)),
            "--max-retries" => {
                let v = value()?;
                retries = Some(v.parse().map_err(|_| format!("bad --max-retries {v:?}"))?);
            }
            "--inproc" => {
                let v = value()?;
                inproc = Some(v.parse().map_err(|_| format!("bad --inproc {v:?}"))?);
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let mut opts = if quick { Options::quick() } else { Options::full() };
    if let Some(v) = sizes {
        opts.sizes = v;
    }
    if let Some(v) = transports {
        opts.transports = v;
    }
    if let Some(v) = patterns {
        opts.patterns = v;
    }
    if let Some(v) = runs {
        opts.runs = v;
    }
    if let Some(v) = warmup {
        opts.warmup_ms = v;
    }
    if let Some(v) = measure {
        opts.measure_ms = v;
    }
    if let Some(v) = retries {
        opts.max_retries = v;
    }
    if opts.sizes.iter().any(|s| !(spec::MSG_HEADER..=(256 << 20)).contains(s)) {
        return Err(format!("message sizes must be between {} bytes and 256 MiB", spec::MSG_HEADER));
    }
    Ok(Some(Cli { opts, json, svg, inproc }))
}

/// Runs `shmbus bench` with its arguments (without the program name and the
/// `bench` word). Returns the process exit code.
pub fn cli_main(args: Vec<String>) -> i32 {
    let cli = match parse(&args) {
        Ok(Some(cli)) => cli,
        Ok(None) => {
            println!("{USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("shmbus bench: {e}\n\n{USAGE}");
            return 2;
        }
    };
    if let Some(count) = cli.inproc {
        return inproc_main(&cli.opts, count);
    }
    let machine = report::Machine::probe();
    let cases = cli.opts.cases();
    if cases.is_empty() {
        eprintln!("shmbus bench: no case matches these transports, patterns and sizes");
        return 2;
    }
    let estimate =
        cases.len() as f64 * cli.opts.runs as f64 * ((cli.opts.warmup_ms + cli.opts.measure_ms) as f64 / 1e3 + 0.05);
    eprintln!(
        "shmbus bench: {} cases x {} runs, about {:.0} s; CPU {}, {} CPUs, kernel {}, {}",
        cases.len(),
        cli.opts.runs,
        estimate,
        machine.cpu,
        machine.cores,
        machine.kernel,
        machine.libc
    );
    let outcome = match harness::run_all(&cli.opts) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("shmbus bench: {e}");
            return 1;
        }
    };
    let command = if args.is_empty() { "shmbus bench".to_string() } else { format!("shmbus bench {}", args.join(" ")) };
    println!("{}", report::markdown(&machine, &outcome, &command));
    let mut code = if outcome.failures.is_empty() { 0 } else { 1 };
    if let Some(path) = &cli.json {
        let written = serde_json::to_string_pretty(&outcome.records)
            .map_err(|e| e.to_string())
            .and_then(|s| std::fs::write(path, s + "\n").map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("shmbus bench: cannot write {}: {e}", path.display());
            code = 1;
        }
    }
    if let Some(dir) = &cli.svg {
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

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn options_parse() {
        let cli = parse(&args("--quick --sizes 64,1k,64KiB --transports shmbus-spin,raw --runs=2 --json x.json"))
            .unwrap()
            .unwrap();
        assert_eq!(cli.opts.sizes, vec![64, 1024, 65536]);
        assert_eq!(cli.opts.runs, 2);
        assert_eq!(cli.opts.transports.len(), 4);
        assert_eq!(cli.json, Some(PathBuf::from("x.json")));
        assert!(parse(&args("--sizes 4")).is_err());
        assert!(parse(&args("--bogus")).is_err());
        assert!(parse(&args("--runs")).is_err());
        assert!(parse(&args("--help")).unwrap().is_none());
    }
}
