//! A bridge between local shmbus buses and Zenoh key expressions.
//!
//! Processes on each host keep talking to a local bus; one bridge process
//! per host carries messages between buses and Zenoh (`--out BUS=KEYEXPR`:
//! bus to Zenoh, `--in KEYEXPR=BUS`: Zenoh to bus). shmbus has no network
//! layer of its own: Zenoh does discovery, routing and transport. The
//! guarantees (order, back-pressure, losses, restarts) are in docs/bridge.md.
//!
//! The binary `shmbus-zenoh` and `shmbus bridge` (the CLI built with its
//! `zenoh` feature) both run [`run`] with [`BridgeArgs`]:
//!
//! ```no_run
//! use clap::Parser;
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     bridge: shmbus_zenoh::BridgeArgs,
//! }
//! let cli = Cli::parse_from(["x", "--out", "orders=site/a/orders", "--multicast-scouting", "off"]);
//! let status = shmbus_zenoh::run(&cli.bridge, &shmbus::BusConfig::default());
//! std::process::exit(status.into());
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

mod args;
mod bridge;
mod inbox;
pub mod marker;
mod stats;

pub use args::{parse_in, parse_out, BridgeArgs, InMap, Mode, OutMap, Switch};
pub use bridge::{run, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
pub use stats::{InStats, OutStats};
