//! `shmbus-zenoh`: bridges local shmbus buses and Zenoh key expressions.
//! See docs/bridge.md.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use shmbus::BusConfig;

/// Forward messages between local shmbus buses and Zenoh key expressions.
#[derive(Debug, Parser)]
#[command(name = "shmbus-zenoh", version)]
struct Cli {
    /// The directory holding bus files [default: $SHMBUS_DIR, else /dev/shm/shmbus-<uid>].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    #[command(flatten)]
    bridge: shmbus_zenoh::BridgeArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match &cli.dir {
        Some(d) => BusConfig::default().dir(d),
        None => BusConfig::default(),
    };
    ExitCode::from(shmbus_zenoh::run(&cli.bridge, &cfg))
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
    fn malformed_mappings_are_usage_errors() {
        for bad in [["--out", "x=a//b"], ["--in", "a/b=../x"], ["--out", "nokey"], ["--listen", "nowhere"]] {
            let err = Cli::try_parse_from(["shmbus-zenoh"].into_iter().chain(bad)).expect_err("rejected");
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }
}
