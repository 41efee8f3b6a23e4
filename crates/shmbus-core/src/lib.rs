//! The core of shmbus: one bus is one file-backed shared mapping holding a
//! lock-free, multi-publisher, broadcast ring of variable-length frames.
//!
//! This crate lays out the file ([`layout`]), does the position arithmetic
//! ([`ring`]), creates, validates and maps the file ([`Region`]), manages peer
//! slots and their kernel-released liveness locks, parks and wakes peers on
//! shared futexes, and implements both sides of the ring protocol
//! ([`Producer`], [`Consumer`]). Users normally reach it through the `shmbus`
//! crate's `Publisher` and `Subscriber`.
//!
//! Everything read from the mapping is untrusted: another process may write
//! any byte at any time. The safe API here holds because every shared word is
//! reached through an atomic, payloads are copied out under a position check,
//! and every length and position is bounded before use (see [`Region`]).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use shmbus_core::*;
//! let dir = tempfile::tempdir()?;
//! let cfg = BusConfig::default().dir(dir.path());
//! let mut sub = Consumer::new(Bus::open_or_create("demo", &cfg, PeerKind::Subscriber)?, StartAt::Latest, WaitStrategy::default());
//! let mut publ = Producer::new(Bus::open_or_create("demo", &cfg, PeerKind::Publisher)?, WaitStrategy::default());
//! publ.send(b"hello", None).map_err(|e| format!("{e:?}"))?;
//! let mut buf = Vec::new();
//! assert_eq!(sub.try_read(&mut buf)?, Poll::Message { seq: 0, len: 5 });
//! assert_eq!(buf, b"hello");
//! # Ok(()) }
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

#[cfg(not(target_os = "linux"))]
compile_error!("shmbus-core currently supports Linux only (futexes and OFD locks); see docs/architecture.md");

mod admin;
#[cfg(not(loom))]
mod atomic128;
mod bus;
mod config;
mod consumer;
mod error;
pub mod layout;
#[cfg(not(loom))]
mod notify;
mod path;
mod peers;
mod presence;
mod producer;
mod region;
pub mod ring;
mod settings;
mod sync;
mod trust;
pub mod typetag;
mod wait;

#[cfg_attr(target_os = "linux", path = "os/linux.rs")]
mod os;

pub use admin::{gc, inspect, list, remove, BusStatus, GcAction, PeerInfo};
pub use bus::{create_bus, Bus};
pub use config::{BusConfig, Overflow, PeerKind, StartAt, WaitStrategy, DEFAULT_UNBLOCK_TIMEOUT};
pub use consumer::{Borrowed, Consumer, Drained, Poll};
pub use error::{Error, Result};
#[cfg(not(loom))]
pub use notify::{waiter_threads, HANDLES_PER_SHARD};
pub use path::{bus_path, default_dir, resolve_dir, validate_name, MAX_NAME_LEN};
pub use presence::Linger;
pub use producer::{Blocker, Claim, ClaimError, Producer, BLOCKED_REPORT_AFTER};
pub use region::{HeaderInfo, Region};
pub use trust::group_id;
pub use typetag::{MessageType, TypeKind};
