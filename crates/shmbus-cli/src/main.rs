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
    /// Stream between processes for a few seconds and compare with a Unix socket.
    Demo(demo::DemoArgs),
    /// Run the cross-process benchmarks (all arguments go to the benchmark harness).
    #[command(disable_help_flag = true)]
    Bench(BenchArgs),
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
    /// Publish every line of stdin (without its newline) as one message.
    #[arg(long)]
    pub stdin: bool,
    /// Number of synthetic messages [default: 1000]; with --stdin, the most lines to publish.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Size of each synthetic message in bytes (at least 40).
    #[arg(long, value_name = "BYTES", default_value = "64", value_parser = parse_synthetic_size, conflicts_with = "stdin")]
    pub size: usize,
    /// Send at most this many messages per second.
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

#[derive(Debug, Args)]
struct BenchArgs {
    /// Arguments for the benchmark harness (try `shmbus bench --help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    args: Vec<String>,
}

fn parse_name(s: &str) -> Result<String, String> {
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

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a positive number of messages per second")),
    }
}

impl Cli {
    fn config(&self) -> BusConfig {
        match &self.dir {
            Some(d) => BusConfig::default().dir(d),
            None => BusConfig::default(),
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
        Command::Demo(a) => demo::run(&a, &cfg),
        Command::Bench(a) => Ok(exit_byte(shmbus_bench::cli_main(a.args))),
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

fn main() -> ExitCode {
    shmbus_bench::child_main_if_requested();
    let cli = Cli::parse();
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
    fn bench_forwards_hyphen_arguments_verbatim() {
        let cli = Cli::try_parse_from(["shmbus", "bench", "--sizes", "64,1024", "-x", "--help"]).expect("parses");
        match cli.command {
            Command::Bench(a) => assert_eq!(a.args, ["--sizes", "64,1024", "-x", "--help"]),
            other => panic!("parsed as {other:?}"),
        }
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
