//! `shmbus`: publish to, subscribe to, list, inspect and clean up shmbus
//! buses from the shell, and run a first demo. See docs/cli.md.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod admin;
mod attach;
mod clock;
mod demo;
mod error;
mod output;
mod publish;
mod signals;
mod subscribe;
mod synthetic;
mod top;
mod units;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use shmbus::{BusConfig, Overflow, StartAt};

use crate::error::CliError;

/// A shared-memory message bus between processes on one machine.
#[derive(Debug, Parser)]
#[command(name = "shmbus", version, propagate_version = true)]
struct Cli {
    /// The directory holding bus files [default: $SHMBUS_DIR, else /dev/shm/shmbus-<uid>].
    #[arg(long, global = true, value_name = "DIR")]
    dir: Option<PathBuf>,

    /// Trust this group (a name or a gid): open bus files of other users in it, and use a
    /// root-owned group directory of it (mode 3770); pair with --mode 0660 [default: no group].
    #[arg(long, global = true, value_name = "GROUP", value_parser = parse_group)]
    share_group: Option<u32>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a bus without attaching to it.
    Create(CreateArgs),
    /// Publish lines from stdin, or synthetic messages, to a bus (creating it if needed).
    Pub(PubArgs),
    /// Print every message of a bus (creating it if needed), or verify synthetic messages.
    Sub(SubArgs),
    /// List the buses in the directory.
    Ls(LsArgs),
    /// Show a bus's header, peer slots and counters.
    Inspect(InspectArgs),
    /// Remove every non-persistent bus that has no live peer.
    Gc,
    /// Remove one bus.
    Rm(RmArgs),
    /// A live view of every bus: peers, message and byte rates, lag, losses.
    Top(top::TopArgs),
    /// Stream between processes for a few seconds and compare with a Unix socket.
    Demo(demo::DemoArgs),
    /// Run the cross-process benchmarks against raw shared memory, sockets and pipes.
    Bench(shmbus_bench::BenchArgs),
    /// Forward messages between local buses and Zenoh key expressions (see docs/bridge.md).
    #[cfg(feature = "zenoh")]
    Bridge(shmbus_zenoh::BridgeArgs),
    #[command(name = "__demo-pub", hide = true)]
    DemoPub(demo::DemoPubArgs),
    #[command(name = "__demo-sub", hide = true)]
    DemoSub(demo::DemoSubArgs),
    #[command(name = "__demo-uds-recv", hide = true)]
    DemoUdsRecv(demo::DemoUdsArgs),
}

/// Settings used only when the command creates the bus. Given for an existing
/// bus, each must match it.
#[derive(Debug, Args, Clone, Default)]
pub struct SizingArgs {
    /// Ring size in bytes, a power of two (e.g. 64KiB, 1MiB) [default when creating: 1MiB].
    #[arg(long, value_name = "BYTES", value_parser = units::parse_size)]
    pub capacity: Option<u64>,
    /// Largest message in bytes, at most a quarter of the capacity [default when creating: 64KiB].
    #[arg(long, value_name = "BYTES", value_parser = units::parse_size)]
    pub max_message: Option<u64>,
    /// What publishers do when the slowest subscriber is a whole ring behind [default when creating: block].
    #[arg(long, value_name = "POLICY", value_parser = parse_overflow)]
    pub overflow: Option<Overflow>,
    /// Keep the bus file after the last peer detaches.
    #[arg(long)]
    pub persistent: bool,
    /// The bus file's permission bits, in octal (e.g. 0660) [default when creating: 0600].
    #[arg(long, value_name = "OCTAL", value_parser = units::parse_mode)]
    pub mode: Option<u32>,
    /// Peer slots: the most publishers and subscribers attached at once, 1 to 1024 [default when creating: 64].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(shmbus::core::layout::MAX_PEERS)))]
    pub max_peers: Option<u32>,
    /// Block mode: evict a subscriber that has held publishers back this many seconds (a stopped or
    /// stuck reader); it then reports what it lost and goes on [default when creating: never].
    #[arg(long, value_name = "SECONDS", value_parser = parse_evict_after)]
    pub evict_after: Option<f64>,
}

fn parse_evict_after(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.001..=86_400.0).contains(&v) {
        return Err(format!("{s} is not between 0.001 and 86400 seconds"));
    }
    Ok(v)
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// The bus name: 1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit.
    #[arg(value_parser = parse_name)]
    name: String,
    #[command(flatten)]
    sizing: SizingArgs,
}

#[derive(Debug, Args)]
pub struct PubArgs {
    /// The bus name.
    #[arg(value_parser = parse_name)]
    pub name: String,
    /// Messages to publish, one per argument (instead of --stdin or synthetic messages).
    #[arg(value_name = "MESSAGE", conflicts_with_all = ["stdin", "count", "size"])]
    pub messages: Vec<String>,
    /// Publish every line of stdin (without its newline) as one message.
    #[arg(long)]
    pub stdin: bool,
    /// Number of synthetic messages [default: 1000]; with --stdin, the most lines to publish.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Size of each synthetic message in bytes (40 to 4 GiB - 1, and at most the bus's max message).
    #[arg(long, value_name = "BYTES", default_value = "64", value_parser = parse_synthetic_size, conflicts_with = "stdin")]
    pub size: usize,
    /// Send at most this many messages per second (0.001 to 1e9).
    #[arg(long, value_name = "MSGS_PER_SEC", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// When no subscriber is attached at the end, keep the bus (and its messages) for up to
    /// SECS, until a subscriber attached and caught up.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = units::parse_secs)]
    pub linger: f64,
    #[command(flatten)]
    pub sizing: SizingArgs,
}

#[derive(Debug, Args)]
pub struct SubArgs {
    /// The bus name.
    #[arg(value_parser = parse_name)]
    pub name: String,
    /// Exit 0 after this many messages.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Exit 3 when no message arrives for SECS.
    #[arg(long, value_name = "SECS", value_parser = units::parse_secs)]
    pub timeout: Option<f64>,
    /// Start with the next message published (latest) or the oldest one the ring still holds.
    #[arg(long, value_name = "WHERE", default_value = "latest", value_parser = parse_start)]
    pub from: StartAt,
    /// Check synthetic messages and print one summary line at the end instead of the messages.
    #[arg(long)]
    pub verify: bool,
    /// Print nothing per message.
    #[arg(long)]
    pub quiet: bool,
    /// How to print each message: raw (the bytes and a newline), text (printable
    /// UTF-8, other bytes escaped as \xNN), hex, or json (one object per line)
    /// [default: text on a terminal, raw otherwise].
    #[arg(long, value_name = "FORMAT", conflicts_with_all = ["verify", "quiet"])]
    pub format: Option<subscribe::Format>,
    #[command(flatten)]
    pub sizing: SizingArgs,
}

#[derive(Debug, Args)]
struct LsArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// The bus name.
    #[arg(value_parser = parse_name)]
    name: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct RmArgs {
    /// The bus name.
    #[arg(value_parser = parse_name)]
    name: String,
    /// Remove it even while live peers are attached.
    #[arg(long)]
    force: bool,
}

pub(crate) fn parse_name(s: &str) -> Result<String, String> {
    shmbus::validate_name(s).map_err(|e| e.to_string())?;
    Ok(s.to_owned())
}

fn parse_overflow(s: &str) -> Result<Overflow, String> {
    s.parse()
}

fn parse_start(s: &str) -> Result<StartAt, String> {
    s.parse()
}

fn parse_synthetic_size(s: &str) -> Result<usize, String> {
    let n = units::parse_size(s)?;
    if n > u64::from(u32::MAX) {
        return Err(format!("{} is larger than any bus's max message (4 GiB - 1)", units::size_arg(n)));
    }
    if n < synthetic::MIN_SIZE as u64 {
        return Err(format!(
            "synthetic messages need at least {} bytes (a {}-byte header and an {}-byte checksum)",
            synthetic::MIN_SIZE,
            synthetic::HEADER_LEN,
            synthetic::CHECKSUM_LEN
        ));
    }
    usize::try_from(n).map_err(|_| format!("{n} bytes is too large"))
}

fn parse_group(s: &str) -> Result<u32, String> {
    shmbus::core::group_id(s).ok_or_else(|| format!("no group named {s:?} (give a group name or a numeric gid)"))
}
/// Slowest `--rate`: one message in 1000 s. Anything slower is a mistake,
/// and the pause before message `i` must stay representable.
const MIN_RATE: f64 = 1e-3;
/// Fastest `--rate`: beyond it pacing means nothing.
const MAX_RATE: f64 = 1e9;

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (MIN_RATE..=MAX_RATE).contains(&r) => Ok(r),
        _ => Err(format!("{s:?} is not a number of messages per second between {MIN_RATE} and {MAX_RATE:e}")),
    }
}

impl Cli {
    fn config(&self) -> BusConfig {
        let cfg = match &self.dir {
            Some(d) => BusConfig::default().dir(d),
            None => BusConfig::default(),
        };
        match self.share_group {
            Some(gid) => cfg.share_with_group(gid),
            None => cfg,
        }
    }
}

fn run(cli: Cli) -> Result<u8, CliError> {
    let cfg = cli.config();
    match cli.command {
        Command::Create(a) => admin::create(&a.name, &cfg, &a.sizing),
        Command::Pub(a) => publish::run(&a, &cfg),
        Command::Sub(a) => subscribe::run(&a, &cfg),
        Command::Ls(a) => admin::ls(&cfg, a.json),
        Command::Inspect(a) => admin::inspect(&a.name, &cfg, a.json),
        Command::Gc => admin::gc(&cfg),
        Command::Rm(a) => admin::rm(&a.name, &cfg, a.force),
        Command::Top(a) => top::run(&a, &cfg),
        Command::Demo(a) => demo::run(&a, &cfg),
        Command::Bench(a) => Ok(exit_byte(shmbus_bench::run(a))),
        #[cfg(feature = "zenoh")]
        Command::Bridge(a) => Ok(shmbus_zenoh::run(&a, &cfg)),
        Command::DemoPub(a) => demo::child_pub(&a, &cfg),
        Command::DemoSub(a) => demo::child_sub(&a, &cfg),
        Command::DemoUdsRecv(a) => demo::child_uds_recv(&a),
    }
}

fn exit_byte(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(1)
}

/// Parses the command line. A bad value is one line on stderr and exit code
/// 2 (the parser's usage lines and tips are left out, so that a script sees
/// a single `error: ...` line); other parse errors, help and version are
/// printed as the parser prints them.
fn parse_args() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if matches!(e.kind(), clap::error::ErrorKind::InvalidValue | clap::error::ErrorKind::ValueValidation) =>
        {
            let text = e.to_string();
            eprintln!("{}", text.lines().next().unwrap_or("error: invalid value"));
            std::process::exit(i32::from(error::EXIT_USAGE));
        }
        Err(e) => e.exit(),
    }
}

fn main() -> ExitCode {
    shmbus_bench::child_main_if_requested();
    let cli = parse_args();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => e.report(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bench_arguments_are_parsed_like_the_other_subcommands() {
        let cli = Cli::try_parse_from(["shmbus", "bench", "--sizes", "64,1k", "--quick"]).expect("parses");
        match cli.command {
            Command::Bench(a) => assert_eq!(a.sizes, Some(vec![64, 1024])),
            other => panic!("parsed as {other:?}"),
        }
        for bad in [vec!["--bogus"], vec!["--sizes", "4"], vec!["--runs", "0"], vec!["--transports", "carrier-pigeon"]]
        {
            let err =
                Cli::try_parse_from(["shmbus", "bench"].into_iter().chain(bad.iter().copied())).expect_err("rejected");
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
        let help = Cli::try_parse_from(["shmbus", "bench", "--help"]).expect_err("help");
        assert_eq!(help.exit_code(), 0);
    }

    #[test]
    fn absurd_rates_and_sizes_are_usage_errors() {
        for args in [
            vec!["pub", "x", "--rate", "1e-300"],
            vec!["pub", "x", "--rate", "inf"],
            vec!["pub", "x", "--rate", "NaN"],
            vec!["pub", "x", "--rate", "-5"],
            vec!["pub", "x", "--size", "5GiB"],
            vec!["create", "x", "--max-peers", "0"],
            vec!["create", "x", "--max-peers", "5000"],
        ] {
            let err = Cli::try_parse_from(["shmbus"].into_iter().chain(args.iter().copied())).expect_err("rejected");
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
        assert!(Cli::try_parse_from(["shmbus", "pub", "x", "--rate", "0.5"]).is_ok());
        assert!(Cli::try_parse_from(["shmbus", "create", "x", "--max-peers", "2"]).is_ok());
    }

    #[test]
    fn invalid_names_are_usage_errors() {
        for name in ["../x", "a/b", "", &"x".repeat(65)] {
            let err = Cli::try_parse_from(["shmbus", "sub", name]).expect_err("rejected");
            assert_eq!(err.exit_code(), 2, "{name:?}");
        }
    }

    #[test]
    fn too_small_synthetic_size_is_a_usage_error() {
        let err = Cli::try_parse_from(["shmbus", "pub", "x", "--size", "39"]).expect_err("rejected");
        assert_eq!(err.exit_code(), 2);
        assert!(Cli::try_parse_from(["shmbus", "pub", "x", "--size", "40"]).is_ok());
    }
}
