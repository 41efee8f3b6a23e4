//! The publishing side of shmbus: [`Publisher`] attaches to a bus by name and
//! sends messages, copying them into the shared ring or writing them in place
//! through a zero-copy [`Loan`].
//!
//! Most users reach this through the `shmbus` crate, which re-exports it.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

#[cfg(feature = "async")]
mod notify;
#[cfg(feature = "async")]
pub use notify::SendAsync;

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::time::{Duration, Instant};

pub use shmbus_core::{Blocker, BusConfig, Error, HeaderInfo, MessageType, Overflow, TypeKind, WaitStrategy};
use shmbus_core::{Bus, Claim, ClaimError, Linger, PeerKind, Producer};

/// Why a message was not published.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmbus::{BusConfig, Publisher, SendError};
/// # let dir = tempfile::tempdir()?;
/// let cfg = BusConfig::default().dir(dir.path()).capacity(4096).max_message(64);
/// let mut publ = Publisher::open_or_create("small", &cfg)?;
/// let err = publ.send(&[0u8; 65]).unwrap_err();
/// assert!(matches!(err, SendError::TooLarge { len: 65, max: 64 }));
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError {
    /// No space now (block mode: the slowest subscriber is a full ring behind).
    /// Returned by `try_send` and `try_loan`.
    Full,
    /// No space before the timeout of `send_timeout`.
    Timeout,
    /// The payload is larger than the bus's `max_message`.
    TooLarge {
        /// Payload length.
        len: usize,
        /// The bus's limit.
        max: usize,
    },
    /// A typed message could not be encoded.
    Encode(String),
    /// `send_pod` of a type other than the Pod type this publisher declared
    /// (kind, size or alignment differ); nothing was sent.
    WrongType {
        /// The declared type.
        declared: String,
        /// The type given to `send_pod`.
        sent: String,
    },
    /// The bus file is damaged or could not be used.
    Bus(Error),
    /// The message was abandoned: this publisher was stopped (or too slow)
    /// between claiming its space and committing it for longer than another
    /// peer's unblock timeout, so the others skipped it. Nothing was
    /// published; subscribers count its sequence number as abandoned.
    Abandoned {
        /// The sequence number the message had taken.
        seq: u64,
    },
    /// A signal interrupted the wait (only after `set_interruptible(true)`).
    Interrupted,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full => f.write_str("the bus is full: the slowest subscriber is a whole ring behind"),
            SendError::Timeout => f.write_str("timed out waiting for space on the bus"),
            SendError::TooLarge { len, max } => {
                write!(f, "message of {len} bytes is larger than the bus's max_message of {max} bytes")
            }
            SendError::Encode(e) => write!(f, "could not encode the message: {e}"),
            SendError::WrongType { declared, sent } => {
                write!(f, "this publisher declared messages of type {declared}, not {sent}; nothing was sent")
            }
            SendError::Bus(e) => e.fmt(f),
            SendError::Abandoned { seq } => write!(
                f,
                "message #{seq} was abandoned: this publisher held its claim longer than another peer's unblock timeout (stopped or too slow between claim and commit), so nothing was published; send it again"
            ),
            SendError::Interrupted => f.write_str("interrupted by a signal while waiting for space on the bus"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Bus(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for SendError {
    fn from(e: Error) -> Self {
        SendError::Bus(e)
    }
}

/// A publisher attached to a bus.
///
/// `Publisher` is `Send` (move it into a thread or task) and `Sync`: every
/// operation that touches the ring takes `&mut self`, so a shared reference
/// only reads immutable settings. Several publishers (in one process or many)
/// may publish to one bus at once; subscribers see a single total order.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmbus::{BusConfig, Publisher};
/// # let dir = tempfile::tempdir()?;
/// let cfg = BusConfig::default().dir(dir.path());
/// let mut publ = Publisher::open_or_create("orders", &cfg)?;
/// publ.send(b"buy 100")?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Publisher {
    raw: Producer,
    /// The type declared at attach ([`BusConfig::message_type`]), checked by `send_pod`.
    declared: Option<MessageType>,
}

fn claim_err(e: ClaimError, timeout: bool) -> SendError {
    match e {
        ClaimError::Full if timeout => SendError::Timeout,
        ClaimError::Full => SendError::Full,
        ClaimError::TooLarge { len, max } => SendError::TooLarge { len, max },
        ClaimError::Bus(e) => SendError::Bus(e),
        ClaimError::Abandoned { seq } => SendError::Abandoned { seq },
        ClaimError::Interrupted => SendError::Interrupted,
        ClaimError::Pending => SendError::Bus(Error::InvalidConfig {
            what: "a claim of this publisher is still open (commit or drop its loan first)".into(),
        }),
    }
}

fn producer(bus: Bus, cfg: &BusConfig) -> Producer {
    let mut raw = Producer::new(bus, cfg.get_wait_strategy());
    raw.set_unblock_timeout(cfg.get_unblock_timeout());
    raw
}

impl Publisher {
    /// Attaches to the bus `name`, creating it with `cfg` if it does not exist.
    /// An existing bus is accepted whatever its settings, unless a setting
    /// `cfg` set explicitly differs ([`Error::Incompatible`], naming both
    /// values); a message type declared with [`BusConfig::message_type`] must
    /// match the bus's ([`Error::TypeMismatch`]).
    pub fn open_or_create(name: &str, cfg: &BusConfig) -> Result<Publisher, Error> {
        let bus = Bus::open_or_create(name, cfg, PeerKind::Publisher)?;
        Ok(Publisher { raw: producer(bus, cfg), declared: cfg.get_message_type().cloned() })
    }

    /// Attaches to an existing bus, never creating it: only `cfg`'s directory,
    /// wait strategy and declared message type are read.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmbus::{BusConfig, Error, Publisher};
    /// # let dir = tempfile::tempdir()?;
    /// let cfg = BusConfig::default().dir(dir.path());
    /// assert!(matches!(Publisher::attach("nope", &cfg), Err(Error::NotFound { .. })));
    /// # Ok(()) }
    /// ```
    pub fn attach(name: &str, cfg: &BusConfig) -> Result<Publisher, Error> {
        let bus = Bus::attach(name, cfg, PeerKind::Publisher)?;
        Ok(Publisher { raw: producer(bus, cfg), declared: cfg.get_message_type().cloned() })
    }

    /// Publishes `bytes`. In block mode waits for space as long as it takes
    /// (parking in bounded slices, and reaping dead subscribers that held it back).
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        self.raw.send(bytes, None).map(drop).map_err(|e| claim_err(e, false))
    }

    /// Publishes a batch: the longest prefix of `msgs` that fits in one claim
    /// (their frames together at most `max_message` + 32 bytes; at least the
    /// first message) with one claim, one commit and at most one wake call,
    /// waiting for space like [`Publisher::send`]. Returns how many messages
    /// were published; call again with the rest (or use
    /// [`Publisher::send_batch_all`]). The messages get consecutive sequence
    /// numbers: subscribers see them in order, with nothing from other
    /// publishers in between.
    ///
    /// A batch is published whole or not at all. If this process is stopped
    /// between the claim and the commit for longer than a peer's unblock
    /// timeout, the whole batch is abandoned: `Err(SendError::Abandoned {
    /// seq })` names its first message, and every message of the batch
    /// counts as abandoned at every subscriber. See docs/batching.md.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmbus::{BusConfig, Publisher, StartAt, Subscriber};
    /// # let dir = tempfile::tempdir()?;
    /// let cfg = BusConfig::default().dir(dir.path());
    /// let mut sub = Subscriber::open_or_create("ticks", &cfg, StartAt::Latest)?;
    /// let mut publ = Publisher::open_or_create("ticks", &cfg)?;
    /// let msgs: Vec<[u8; 8]> = (0..100u64).map(|i| i.to_le_bytes()).collect();
    /// publ.send_batch_all(&msgs)?;
    /// let mut got = Vec::new();
    /// while got.len() < 100 {
    ///     sub.recv_batch(64, None, |_seq, bytes| got.push(bytes.to_vec()))?;
    /// }
    /// assert_eq!(got[99], 99u64.to_le_bytes());
    /// # Ok(()) }
    /// ```
    pub fn send_batch<M: AsRef<[u8]>>(&mut self, msgs: &[M]) -> Result<usize, SendError> {
        self.raw.send_batch(msgs, None).map_err(|e| claim_err(e, false))
    }

    /// [`Publisher::send_batch`] without waiting: `Err(SendError::Full)` when
    /// not even the first message fits now.
    pub fn try_send_batch<M: AsRef<[u8]>>(&mut self, msgs: &[M]) -> Result<usize, SendError> {
        self.raw.send_batch(msgs, Some(Instant::now())).map_err(|e| claim_err(e, false))
    }

    /// [`Publisher::send_batch`] waiting at most `timeout` for space
    /// (`Err(SendError::Timeout)`).
    pub fn send_batch_timeout<M: AsRef<[u8]>>(&mut self, msgs: &[M], timeout: Duration) -> Result<usize, SendError> {
        self.raw.send_batch(msgs, Some(Instant::now() + timeout)).map_err(|e| claim_err(e, true))
    }

    /// Publishes every message of `msgs`, in order, in as few batches
    /// ([`Publisher::send_batch`]) as they fit in. On an error, the messages
    /// of the batches before the failing one were published.
    pub fn send_batch_all<M: AsRef<[u8]>>(&mut self, mut msgs: &[M]) -> Result<(), SendError> {
        while !msgs.is_empty() {
            let n = self.send_batch(msgs)?;
            msgs = &msgs[n..];
        }
        Ok(())
    }

    /// Publishes `bytes` if there is space now; `Err(SendError::Full)` otherwise.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmbus::{BusConfig, Publisher, SendError};
    /// # let dir = tempfile::tempdir()?;
    /// let cfg = BusConfig::default().dir(dir.path());
    /// let mut publ = Publisher::open_or_create("t", &cfg)?;
    /// match publ.try_send(b"tick") {
    ///     Ok(()) | Err(SendError::Full) => {}
    ///     Err(e) => return Err(e.into()),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn try_send(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        self.raw.send(bytes, Some(Instant::now())).map(drop).map_err(|e| claim_err(e, false))
    }

    /// Publishes `bytes`, waiting at most `timeout` for space (`Err(SendError::Timeout)`).
    pub fn send_timeout(&mut self, bytes: &[u8], timeout: Duration) -> Result<(), SendError> {
        let deadline = Instant::now() + timeout;
        self.raw.send(bytes, Some(deadline)).map(drop).map_err(|e| claim_err(e, true))
    }

    /// Publishes a plain-old-data value as its bytes.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use shmbus::{BusConfig, Publisher};
    /// # let dir = tempfile::tempdir()?;
    /// # let cfg = BusConfig::default().dir(dir.path());
    /// let mut publ = Publisher::open_or_create("prices", &cfg)?;
    /// publ.send_pod(&[1.5f64, 2.5])?;
    /// # Ok(()) }
    /// ```
    ///
    /// A publisher that declared a message type ([`BusConfig::message_type`])
    /// refuses a value whose type is not a Pod type of the declared size and
    /// alignment (`Err(SendError::WrongType)`).
    pub fn send_pod<T: bytemuck::Pod>(&mut self, value: &T) -> Result<(), SendError> {
        if let Some(d) = &self.declared {
            let same = d.kind() == TypeKind::Pod
                && d.size() as usize == std::mem::size_of::<T>()
                && d.align() as usize == std::mem::align_of::<T>();
            if !same {
                return Err(SendError::WrongType {
                    declared: d.to_string(),
                    sent: MessageType::pod::<T>().to_string(),
                });
            }
        }
        self.send(bytemuck::bytes_of(value))
    }

    /// Publishes a value encoded with bincode 2 (standard configuration) through serde.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use shmbus::{BusConfig, Publisher};
    /// # let dir = tempfile::tempdir()?;
    /// # let cfg = BusConfig::default().dir(dir.path());
    /// let mut publ = Publisher::open_or_create("events", &cfg)?;
    /// publ.send_serde(&("login", 42u32))?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "serde")]
    pub fn send_serde<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SendError> {
        let bytes = bincode::serde::encode_to_vec(value, bincode::config::standard())
            .map_err(|e| SendError::Encode(e.to_string()))?;
        self.send(&bytes)
    }

    /// Claims `len` bytes in the ring to write in place (zero-copy), waiting
    /// for space like [`send`](Self::send). Publish with [`Loan::commit`];
    /// dropping the loan publishes nothing.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use shmbus::{BusConfig, Publisher};
    /// # let dir = tempfile::tempdir()?;
    /// # let cfg = BusConfig::default().dir(dir.path());
    /// let mut publ = Publisher::open_or_create("frames", &cfg)?;
    /// let mut loan = publ.loan(128)?;
    /// loan.fill(7);
    /// loan[0] = 1;
    /// loan.commit()?;
    /// # Ok(()) }
    /// ```
    pub fn loan(&mut self, len: usize) -> Result<Loan<'_>, SendError> {
        let claim = self.raw.claim(len, None).map_err(|e| claim_err(e, false))?;
        Ok(Loan { publ: self, claim: Some(claim) })
    }

    /// Like [`loan`](Self::loan) but returns `Err(SendError::Full)` instead of waiting.
    pub fn try_loan(&mut self, len: usize) -> Result<Loan<'_>, SendError> {
        let claim = self.raw.claim(len, Some(Instant::now())).map_err(|e| claim_err(e, false))?;
        Ok(Loan { publ: self, claim: Some(claim) })
    }

    /// msync: what was published is durable when the bus directory is on disk.
    pub fn flush(&self) -> Result<(), Error> {
        self.raw.flush()
    }

    /// The bus name.
    pub fn name(&self) -> &str {
        self.raw.bus().name()
    }
    /// The bus file.
    pub fn path(&self) -> &Path {
        self.raw.bus().path()
    }
    /// The bus's settings as found in its header.
    pub fn info(&self) -> &HeaderInfo {
        self.raw.bus().info()
    }
    /// Largest payload.
    pub fn max_message(&self) -> usize {
        self.raw.max_message()
    }
    /// This publisher's peer slot.
    pub fn slot(&self) -> u32 {
        self.raw.bus().slot()
    }
    /// Chooses how this publisher waits for space.
    pub fn set_wait_strategy(&mut self, wait: WaitStrategy) {
        self.raw.set_wait_strategy(wait);
    }
    /// The peer that has held this publisher back for a second or more in
    /// its current (or last unfinished) wait for space: in block mode a
    /// subscriber that does not read (stopped, stuck, or slow), with its
    /// slot, pid and how far behind it is. `None` once a send goes through.
    pub fn blocked_by(&self) -> Option<&Blocker> {
        self.raw.blocked_by()
    }
    /// With `true`, a signal (e.g. SIGINT with a handler installed) that
    /// interrupts a wait for space ends it with [`SendError::Interrupted`].
    pub fn set_interruptible(&mut self, on: bool) {
        self.raw.set_interruptible(on);
    }

    /// The message type recorded in the bus (declared by a typed handle), if any.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmbus::{BusConfig, MessageType, Publisher};
    /// # let dir = tempfile::tempdir()?;
    /// # let cfg = BusConfig::default().dir(dir.path());
    /// let publ = Publisher::open_or_create("temps", &cfg.message_type(MessageType::pod::<f32>()))?;
    /// assert_eq!(publ.message_type().map(|t| t.to_string()).as_deref(), Some("f32 (pod, 4 bytes, align 4)"));
    /// # Ok(()) }
    /// ```
    pub fn message_type(&self) -> Option<MessageType> {
        self.raw.bus().message_type()
    }

    /// Live subscribers attached to the bus now.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmbus::{BusConfig, Publisher, StartAt, Subscriber};
    /// # let dir = tempfile::tempdir()?;
    /// # let cfg = BusConfig::default().dir(dir.path());
    /// let publ = Publisher::open_or_create("t", &cfg)?;
    /// assert_eq!(publ.subscribers(), 0);
    /// let _sub = Subscriber::attach("t", &cfg, StartAt::Latest)?;
    /// assert_eq!(publ.subscribers(), 1);
    /// # Ok(()) }
    /// ```
    pub fn subscribers(&self) -> usize {
        self.raw.bus().live_peers(PeerKind::Subscriber)
    }

    /// Waits until at least `n` subscribers are attached, at most `timeout`
    /// (`Err(SendError::Timeout)`). Returns how many are attached. Messages
    /// published before a subscriber attaches reach it only if it starts at
    /// [`StartAt::Oldest`](shmbus_core::StartAt::Oldest) and the ring still holds them.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmbus::{BusConfig, Publisher, StartAt, Subscriber};
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// # let cfg = BusConfig::default().dir(dir.path());
    /// let publ = Publisher::open_or_create("ticks", &cfg)?;
    /// let sub = std::thread::spawn(move || Subscriber::open_or_create("ticks", &cfg, StartAt::Latest));
    /// assert!(publ.wait_for_subscribers(1, Duration::from_secs(10))? >= 1);
    /// # drop(sub.join().unwrap()?);
    /// # Ok(()) }
    /// ```
    pub fn wait_for_subscribers(&self, n: usize, timeout: Duration) -> Result<usize, SendError> {
        let deadline = Instant::now().checked_add(timeout);
        self.raw.bus().wait_for_peers(PeerKind::Subscriber, n, deadline).ok_or(SendError::Timeout)
    }

    /// Keeps this publisher (and so a non-persistent bus and its messages)
    /// attached until the subscribers present have read everything published
    /// so far (or detached), at most `timeout` (`Err(SendError::Timeout)`). With no
    /// subscriber present it waits for one to attach and read everything (or
    /// to attach and leave again); a persistent bus returns at once, since its
    /// file keeps the messages. Call it before dropping the last publisher of
    /// a bus whose subscribers may not have caught up yet.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmbus::{BusConfig, Publisher, StartAt, Subscriber};
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// # let cfg = BusConfig::default().dir(dir.path());
    /// let mut publ = Publisher::open_or_create("jobs", &cfg)?;
    /// let mut sub = Subscriber::open_or_create("jobs", &cfg, StartAt::Latest)?;
    /// publ.send(b"last job")?;
    /// let reader = std::thread::spawn(move || sub.recv().map(|m| (m.to_vec(), sub)));
    /// publ.linger(Duration::from_secs(10))?; // returns once `sub` has read it
    /// assert_eq!(reader.join().unwrap()?.0, b"last job");
    /// # Ok(()) }
    /// ```
    pub fn linger(&self, timeout: Duration) -> Result<(), SendError> {
        match self.raw.bus().linger(Instant::now().checked_add(timeout)) {
            Linger::Delivered => Ok(()),
            Linger::TimedOut => Err(SendError::Timeout),
        }
    }
}

/// Space claimed in the ring, written in place. Derefs to `[u8]` of the
/// requested length; [`commit`](Loan::commit) publishes it, dropping it
/// publishes nothing (the space becomes padding that subscribers skip, and
/// count as one abandoned message).
///
/// While a loan is open, subscribers cannot read past it, so keep it short:
/// a loan held longer than another peer's unblock timeout (default 1 s) is
/// abandoned by that peer, its bytes are quarantined (no one else writes or
/// reads them until the loan ends), and [`commit`](Loan::commit) returns
/// [`SendError::Abandoned`].
///
/// # What the `&mut [u8]` points at
///
/// The slice is the ring's bytes in a shared mapping, claimed for this loan
/// alone: no cooperating peer writes them until the loan ends (if it is
/// abandoned, they stay quarantined until then). Subscribers never read them
/// before the commit. Another process with write access to the bus file (a
/// buggy or hostile one) could still change them under you; what it can do
/// is limited to the bytes of the frame.
///
/// A loan borrows its publisher mutably, so no second send can start while it lives:
/// ```compile_fail
/// # fn f(publ: &mut shmbus::Publisher) {
/// let loan = publ.loan(8).unwrap();
/// publ.send(b"x").unwrap();
/// loan.commit().unwrap();
/// # }
/// ```
pub struct Loan<'a> {
    publ: &'a mut Publisher,
    claim: Option<Claim>,
}

impl Loan<'_> {
    /// The global sequence number the message will have once committed (its
    /// place in the bus's total order, as subscribers see it in
    /// `Message::seq`). Known before the commit, so a process that both
    /// publishes and subscribes can recognise its own messages without a race.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use shmbus_producer::{BusConfig, Publisher};
    /// # let dir = tempfile::tempdir()?;
    /// # let cfg = BusConfig::default().dir(dir.path());
    /// let mut publ = Publisher::open_or_create("seqs", &cfg)?;
    /// publ.send(b"first")?;
    /// let loan = publ.loan(6)?;
    /// assert_eq!(loan.seq(), 1);
    /// loan.commit()?;
    /// # Ok(()) }
    /// ```
    pub fn seq(&self) -> u64 {
        self.claim.as_ref().map_or(0, Claim::seq)
    }

    /// Publishes the written bytes. Fails with [`SendError::Abandoned`] when
    /// the loan was held longer than another peer's unblock timeout and the
    /// others went on without it (nothing was published).
    pub fn commit(mut self) -> Result<(), SendError> {
        match self.claim.take() {
            Some(c) => self.publ.raw.commit(c, false).map(drop).map_err(|e| claim_err(e, false)),
            None => Ok(()),
        }
    }
}

impl Deref for Loan<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.claim {
            Some(c) => {
                let ptr = self.publ.raw.payload_ptr(c);
                // SAFETY: the claim gives this publisher exclusive ownership of
                // `len` bytes of the ring until commit: no other publisher writes
                // there (they never lap an announced claim, and once a peer
                // abandons it its bytes are quarantined, skipped by every later
                // claim, until commit returns); subscribers only read, and never
                // read an unfinished frame. The loan borrows the publisher
                // mutably, so this slice cannot outlive the claim.
                unsafe { std::slice::from_raw_parts(ptr, c.len()) }
            }
            None => &[],
        }
    }
}

impl DerefMut for Loan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &self.claim {
            Some(c) => {
                let ptr = self.publ.raw.payload_ptr(c);
                // SAFETY: as in `deref`; `&mut self` makes this the only slice.
                unsafe { std::slice::from_raw_parts_mut(ptr, c.len()) }
            }
            None => &mut [],
        }
    }
}

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.claim.take() {
            let _ = self.publ.raw.commit(c, true);
        }
    }
}

impl fmt::Debug for Loan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loan").field("len", &self.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}
    fn assert_sync<T: Sync>() {}

    #[test]
    fn publisher_is_send_and_sync() {
        assert_send::<Publisher>();
        assert_sync::<Publisher>();
    }
}
