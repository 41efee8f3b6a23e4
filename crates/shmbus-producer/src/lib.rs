//! The publishing side of shmbus: [`Publisher`] attaches to a bus by name and
//! sends messages, copying them into the shared ring or writing them in place
//! through a zero-copy [`Loan`].
//!
//! Most users reach this through the `shmbus` crate, which re-exports it.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::time::{Duration, Instant};

use shmbus_core::{Bus, Claim, ClaimError, PeerKind, Producer};
pub use shmbus_core::{BusConfig, Error, HeaderInfo, Overflow, WaitStrategy};

/// Why a message was not published.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmbus_producer::{BusConfig, Publisher, SendError};
/// let dir = tempfile::tempdir()?;
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
    /// The bus file is damaged or could not be used.
    Bus(Error),
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
            SendError::Bus(e) => e.fmt(f),
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
/// use shmbus_producer::{BusConfig, Publisher};
/// let dir = tempfile::tempdir()?;
/// let cfg = BusConfig::default().dir(dir.path());
/// let mut publ = Publisher::open_or_create("orders", &cfg)?;
/// publ.send(b"buy 100")?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Publisher {
    raw: Producer,
}

fn claim_err(e: ClaimError, timeout: bool) -> SendError {
    match e {
        ClaimError::Full if timeout => SendError::Timeout,
        ClaimError::Full => SendError::Full,
        ClaimError::TooLarge { len, max } => SendError::TooLarge { len, max },
        ClaimError::Bus(e) => SendError::Bus(e),
    }
}

impl Publisher {
    /// Attaches to the bus `name`, creating it with `cfg` if it does not exist.
    /// An existing bus with other settings is an error naming both values.
    pub fn open_or_create(name: &str, cfg: &BusConfig) -> Result<Publisher, Error> {
        let bus = Bus::open_or_create(name, cfg, PeerKind::Publisher)?;
        Ok(Publisher { raw: Producer::new(bus, cfg.get_wait_strategy()) })
    }

    /// Attaches to an existing bus (only `cfg`'s directory and wait strategy are read).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmbus_producer::{BusConfig, Error, Publisher};
    /// let dir = tempfile::tempdir()?;
    /// let cfg = BusConfig::default().dir(dir.path());
    /// assert!(matches!(Publisher::attach("nope", &cfg), Err(Error::NotFound { .. })));
    /// # Ok(()) }
    /// ```
    pub fn attach(name: &str, cfg: &BusConfig) -> Result<Publisher, Error> {
        let bus = Bus::attach(name, cfg, PeerKind::Publisher)?;
        Ok(Publisher { raw: Producer::new(bus, cfg.get_wait_strategy()) })
    }

    /// Publishes `bytes`. In block mode waits for space as long as it takes
    /// (parking in bounded slices, and reaping dead subscribers that held it back).
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        self.raw.send(bytes, None).map(drop).map_err(|e| claim_err(e, false))
    }

    /// Publishes `bytes` if there is space now; `Err(SendError::Full)` otherwise.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmbus_producer::{BusConfig, Publisher, SendError};
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
    /// # use shmbus_producer::{BusConfig, Publisher};
    /// # let dir = tempfile::tempdir()?;
    /// # let cfg = BusConfig::default().dir(dir.path());
    /// let mut publ = Publisher::open_or_create("prices", &cfg)?;
    /// publ.send_pod(&[1.5f64, 2.5])?;
    /// # Ok(()) }
    /// ```
    pub fn send_pod<T: bytemuck::Pod>(&mut self, value: &T) -> Result<(), SendError> {
        self.send(bytemuck::bytes_of(value))
    }

    /// Publishes a value encoded with bincode 2 (standard configuration) through serde.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use shmbus_producer::{BusConfig, Publisher};
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
    /// # use shmbus_producer::{BusConfig, Publisher};
    /// # let dir = tempfile::tempdir()?;
    /// # let cfg = BusConfig::default().dir(dir.path());
    /// let mut publ = Publisher::open_or_create("frames", &cfg)?;
    /// let mut loan = publ.loan(128)?;
    /// loan.fill(7);
    /// loan[0] = 1;
    /// loan.commit();
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
}

/// Space claimed in the ring, written in place. Derefs to `[u8]` of the
/// requested length; [`commit`](Loan::commit) publishes it, dropping it
/// publishes nothing (the space becomes padding that subscribers skip).
///
/// While a loan is open, subscribers cannot read past it, so keep it short.
///
/// A loan borrows its publisher mutably, so no second send can start while it lives:
/// ```compile_fail
/// # fn f(publ: &mut shmbus_producer::Publisher) {
/// let loan = publ.loan(8).unwrap();
/// publ.send(b"x").unwrap();
/// loan.commit();
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
    /// loan.commit();
    /// # Ok(()) }
    /// ```
    pub fn seq(&self) -> u64 {
        self.claim.as_ref().map_or(0, Claim::seq)
    }

    /// Publishes the written bytes.
    pub fn commit(mut self) {
        if let Some(c) = self.claim.take() {
            self.publ.raw.commit(c, false);
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
                // `len` bytes of the ring until commit (no other publisher writes
                // there: they never lap an announced claim; subscribers only read,
                // and cannot pass the uncommitted frame). The loan borrows the
                // publisher mutably, so this slice cannot outlive the claim.
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
            self.publ.raw.commit(c, true);
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
