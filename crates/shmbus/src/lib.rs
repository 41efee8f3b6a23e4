//! shmbus: a shared-memory message bus between processes on one machine.
//!
//! One bus is one file-backed shared mapping holding a lock-free ring.
//! Publishers and subscribers attach to it by name; there is no daemon and no
//! broker. Every subscriber sees every message in one total order; a bus is
//! either lossless ([`Overflow::Block`]: publishers wait for the slowest live
//! subscriber) or never blocks publishers ([`Overflow::Overwrite`]: an overrun
//! subscriber learns exactly how many messages it lost).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use shmbus::{BusConfig, Overflow, StartAt, Publisher, Subscriber, SendError, RecvError};
//! use std::time::Duration;
//! # let dir = tempfile::tempdir()?;
//! let cfg = BusConfig::default()          // capacity 1 MiB, max_message 64 KiB, Overflow::Block
//!     .dir(dir.path())                    // else $SHMBUS_DIR, else /dev/shm/shmbus-<uid>
//!     .capacity(1 << 20)
//!     .overflow(Overflow::Block);
//!
//! let mut sub = Subscriber::open_or_create("orders", &cfg, StartAt::Latest)?;
//! let mut publ = Publisher::open_or_create("orders", &cfg)?;
//! publ.send(b"buy 100 @ 42")?;
//!
//! let msg = sub.recv_timeout(Duration::from_secs(1))?;
//! assert_eq!(&msg[..], b"buy 100 @ 42");
//! assert!(matches!(sub.try_recv(), Ok(None)));
//! # let _ = (SendError::Full, RecvError::Timeout);
//! # Ok(()) }
//! ```
//!
//! See the `examples/` directory of the repository for a publisher and a
//! subscriber to run in two terminals, and typed messages (Pod and serde).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

pub use shmbus_consumer::{Message, MessageRef, RecvError, Subscriber};
pub use shmbus_core::{
    create_bus, gc, inspect, list, remove, validate_name, BusConfig, BusStatus, Error, GcAction, HeaderInfo, Overflow,
    PeerInfo, PeerKind, StartAt, WaitStrategy,
};
pub use shmbus_producer::{Loan, Publisher, SendError};

/// Lower-level access to the bus file and the ring protocol.
pub mod core {
    pub use shmbus_core::*;
}
