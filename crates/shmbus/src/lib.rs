//! shmbus: a shared-memory message bus between processes on one machine.
//!
//! One bus is one file-backed shared mapping holding a lock-free ring.
//! Publishers and subscribers attach to it by name; there is no daemon and no
//! broker. Every subscriber sees every message in one total order; a bus is
//! either lossless ([`Overflow::Block`]: publishers wait for the slowest live
//! subscriber) or never blocks publishers ([`Overflow::Overwrite`]: an overrun
//! subscriber learns exactly how many messages it lost). Linux only.
//!
//! # Add it
//!
//! ```toml
//! [dependencies]
//! shmbus = { path = "path/to/shmbus/crates/shmbus" }  # not on crates.io
//! # for typed messages:
//! bytemuck = { version = "1", features = ["derive"] } # Pod structs
//! serde = { version = "1", features = ["derive"] }    # serde types (bincode 2 is re-exported)
//! ```
//!
//! # A publisher and a subscriber
//!
//! Two processes (here two threads) name the same bus; whichever comes
//! first creates it.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use shmbus::{BusConfig, Publisher, RecvError, StartAt, Subscriber};
//! use std::time::Duration;
//! # let dir = tempfile::tempdir()?;
//! let cfg = BusConfig::default()          // capacity 1 MiB, max_message 64 KiB, Overflow::Block
//! #   .dir(dir.path())
//!     .capacity(1 << 20);                 // set one size, the other follows
//!
//! let mut sub = Subscriber::open_or_create("orders", &cfg, StartAt::Oldest)?;
//! let publisher = {
//!     let cfg = cfg.clone();
//!     std::thread::spawn(move || -> Result<(), shmbus::SendError> {
//!         let mut publ = Publisher::open_or_create("orders", &cfg)?;
//!         for i in 0..3 {
//!             publ.send(format!("buy {i}").as_bytes())?; // waits while a subscriber is a ring behind
//!         }
//!         publ.linger(Duration::from_secs(5)) // stay until the subscribers read it all
//!     })
//! };
//! for i in 0..3 {
//!     let msg = sub.recv_timeout(Duration::from_secs(5))?;
//!     assert_eq!(&msg[..], format!("buy {i}").as_bytes());
//! }
//! assert!(matches!(sub.try_recv(), Ok(None)));
//! publisher.join().unwrap()?;
//! # let _ = RecvError::Timeout;
//! # Ok(()) }
//! ```
//!
//! Settings ([`BusConfig`]): `dir` (else `$SHMBUS_DIR`, else
//! `/dev/shm/shmbus-<uid>`), `capacity` (default 1 MiB), `max_message`
//! (default 64 KiB; setting only one of the two derives the other), `overflow`,
//! `persistent`, `mode`, `max_peers`, `wait_strategy`. They apply when the bus
//! is created; [`Publisher::open_or_create`] on an existing bus accepts it as
//! it is unless a setting you set explicitly differs ([`Error::Incompatible`]),
//! and [`Publisher::attach`] / [`Subscriber::attach`] never create and read no settings.
//!
//! # Typed messages
//!
//! `send_pod` / `recv_pod` send a [`bytemuck::Pod`] value as its bytes;
//! `send_serde` / `recv_serde` encode with [`bincode`] 2 through serde, using
//! `bincode::config::standard()` (little-endian, variable-length integers, no
//! size limit; re-exported here as `shmbus::bincode`, so decoding by hand
//! needs no second dependency). Each receive has a blocking, a
//! `try_` (returns `Option`) and a `_timeout` form.
//!
//! Declaring the type with [`BusConfig::message_type`] records it in the bus
//! (the first typed handle, publisher or subscriber, does); a handle declaring
//! another type is refused at attach with [`Error::TypeMismatch`] naming both,
//! and a typed publisher's `send_pod` refuses a Pod value of another size or
//! alignment. Untyped handles are not checked. [`MessageType`] identifies a
//! type by its name without module path (one struct compiled into two
//! programs matches), for Pod its size and alignment, and an optional schema
//! value; serde types are known by name only, so give a schema hash or
//! version to tell two same-named types apart.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use shmbus::{BusConfig, Error, MessageType, Publisher, StartAt, Subscriber};
//! use std::time::Duration;
//!
//! #[repr(C)]
//! #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
//! struct Reading { micros: u64, celsius: f32, sensor: u32 }
//!
//! #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
//! enum Event { Started { by: String }, Stopped }
//!
//! # let dir = tempfile::tempdir()?;
//! let cfg = BusConfig::default()
//! #   .dir(dir.path())
//!     ;
//! let readings = cfg.clone().message_type(MessageType::pod::<Reading>());
//! let mut sensor = Publisher::open_or_create("readings", &readings)?;
//! let mut logger = Subscriber::open_or_create("readings", &readings, StartAt::Latest)?;
//! let r = Reading { micros: 1, celsius: 21.5, sensor: 7 };
//! sensor.send_pod(&r)?;
//! assert_eq!(logger.recv_pod_timeout::<Reading>(Duration::from_secs(1))?, r);
//! assert_eq!(logger.try_recv_pod::<Reading>()?, None);
//!
//! // Another type on the same bus is refused at attach.
//! let wrong = cfg.clone().message_type(MessageType::serde::<Event>());
//! let err = Subscriber::attach("readings", &wrong, StartAt::Latest).unwrap_err();
//! assert!(matches!(err, Error::TypeMismatch { .. }));
//!
//! let events = cfg.clone().message_type(MessageType::serde::<Event>());
//! let mut events_out = Publisher::open_or_create("events", &events)?;
//! let mut events_in = Subscriber::open_or_create("events", &events, StartAt::Latest)?;
//! events_out.send_serde(&Event::Started { by: "ada".into() })?;
//! let e: Event = events_in.recv_serde_timeout(Duration::from_secs(1))?;
//! assert_eq!(e, Event::Started { by: "ada".into() });
//!
//! // The same bytes by hand, with the re-exported bincode and the same configuration.
//! let bytes = shmbus::bincode::serde::encode_to_vec(&Event::Stopped, shmbus::bincode::config::standard())?;
//! events_out.send(&bytes)?;
//! assert_eq!(events_in.recv_serde::<Event>()?, Event::Stopped);
//! # Ok(()) }
//! ```
//!
//! # Zero-copy
//!
//! [`Publisher::loan`] claims space in the ring to write in place, published
//! by [`Loan::commit`]; [`Subscriber::recv_ref`] lends a message in place (in
//! block mode; overwrite mode copies, since a publisher may overwrite it).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use shmbus::{BusConfig, Publisher, StartAt, Subscriber};
//! # let dir = tempfile::tempdir()?;
//! # let cfg = BusConfig::default().dir(dir.path());
//! let mut sub = Subscriber::open_or_create("frames", &cfg, StartAt::Latest)?;
//! let mut publ = Publisher::open_or_create("frames", &cfg)?;
//! let mut loan = publ.loan(4096)?;
//! loan.fill(0x7f); // write the frame where subscribers will read it
//! loan.commit();
//! let frame = sub.recv_ref(None)?;
//! assert!(frame.iter().all(|&b| b == 0x7f));
//! drop(frame); // publishers may reuse the space once it is dropped
//! # Ok(()) }
//! ```
//!
//! # Lifecycle
//!
//! - **Created** by the first `open_or_create` (publisher or subscriber) as
//!   `<dir>/<name>.bus`, or by [`create_bus`] (`shmbus create`) without
//!   attaching. [`Publisher::attach`] / [`Subscriber::attach`] never create.
//! - **Removed** when the last attached handle is dropped, unless the bus was
//!   created `persistent`; its unread messages go with it. So a publisher that
//!   finishes before any subscriber attached takes its messages away: call
//!   [`Publisher::wait_for_subscribers`] before publishing, or
//!   [`Publisher::linger`] before dropping (the subscribers present read
//!   everything first, or, with none present, one comes and reads it).
//!   [`Subscriber::wait_for_publishers`] is the other side's wait.
//! - A subscriber sees what is published after it attached
//!   ([`StartAt::Latest`]), or what the ring still holds ([`StartAt::Oldest`]).
//! - **Persistent** buses (`BusConfig::persistent(true)`) stay until
//!   [`remove`]d (`shmbus rm`); on a disk directory, [`Publisher::flush`]
//!   makes messages durable and a later subscriber replays them from `Oldest`.
//! - **Crashes**: a handle's liveness is a lock the kernel drops when its
//!   process dies, so a dead subscriber stops holding publishers back and a
//!   dead publisher's unfinished message is skipped. The file of a bus whose
//!   peers all died stays until [`gc`] (`shmbus gc`) removes it; the next
//!   `open_or_create` reuses it.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use shmbus::{BusConfig, Publisher, StartAt, Subscriber};
//! use std::time::Duration;
//! # let dir = tempfile::tempdir()?;
//! # let cfg = BusConfig::default().dir(dir.path());
//! let mut publ = Publisher::open_or_create("jobs", &cfg)?;
//! publ.send(b"job 1")?;
//! let path = publ.path().to_owned();
//! let late = std::thread::spawn(move || -> Result<_, shmbus::RecvError> {
//!     let mut sub = Subscriber::attach("jobs", &cfg, StartAt::Oldest)?;
//!     Ok((sub.recv_timeout(Duration::from_secs(5))?.to_vec(), sub))
//! });
//! publ.linger(Duration::from_secs(5))?; // a late subscriber still gets "job 1"
//! drop(publ);
//! let (job, sub) = late.join().unwrap()?;
//! assert_eq!(job, b"job 1");
//! drop(sub);
//! assert!(!path.exists()); // the last one out removed the bus
//! # Ok(()) }
//! ```
//!
//! # Errors
//!
//! Attaching returns [`Error`]: each variant names the bus and its file and
//! says what was expected and found (a missing bus, a missing directory, a
//! setting or message type that differs, a damaged or foreign file, no free
//! peer slot). Sending returns [`SendError`] (`Full`, `Timeout`, `TooLarge`,
//! ...), receiving [`RecvError`] (`Timeout`, `Lagged { lost }` in overwrite
//! mode, `WrongSize` / `Decode` for typed messages). Nothing read from the
//! shared file is trusted: corruption is an error, never a panic.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use shmbus::{BusConfig, Error, Publisher};
//! # let dir = tempfile::tempdir()?;
//! # let cfg = BusConfig::default().dir(dir.path());
//! let err = Publisher::attach("nobody", &cfg).unwrap_err();
//! assert!(matches!(err, Error::NotFound { .. }));
//! println!("{err}"); // bus 'nobody' does not exist (no file .../nobody.bus); ...
//! # Ok(()) }
//! ```
//!
//! The `examples/` directory of the source tree has a runnable program per
//! feature (the sensor/logger pair among them), and `docs/` describes the
//! design and the file layout.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

pub use shmbus_consumer::{Drained, Iter, Message, MessageRef, RecvError, Subscriber, TryIter};
/// The futures and stream of the `tokio` feature (runtime-agnostic; see docs/async.md).
#[cfg(feature = "tokio")]
pub use shmbus_consumer::{MessageStream, Recv};
pub use shmbus_core::{
    create_bus, gc, inspect, list, remove, validate_name, BusConfig, BusStatus, Error, GcAction, HeaderInfo, Overflow,
    PeerInfo, PeerKind, StartAt, WaitStrategy,
};
pub use shmbus_core::{MessageType, TypeKind};
#[cfg(feature = "tokio")]
pub use shmbus_producer::SendAsync;
pub use shmbus_producer::{Loan, Publisher, SendError};

/// bincode 2, as `send_serde` / `recv_serde` use it: with
/// `bincode::config::standard()` and its `serde` functions.
#[cfg(feature = "serde")]
pub use bincode;
/// bytemuck, for `#[derive(Pod, Zeroable)]` message structs.
pub use bytemuck;

/// Lower-level access to the bus file and the ring protocol.
pub mod core {
    pub use shmbus_core::*;
}
