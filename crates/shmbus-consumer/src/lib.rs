//! The subscribing side of shmbus: [`Subscriber`] attaches to a bus by name
//! and receives every message published after it attached (or, from
//! [`StartAt::Oldest`], everything the ring still holds), in the one total
//! order all subscribers share.
//!
//! Most users reach this through the `shmbus` crate, which re-exports it.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

use std::fmt;
use std::ops::Deref;
use std::path::Path;
use std::time::{Duration, Instant};

mod notify;
#[cfg(feature = "async")]
pub use notify::{MessageStream, Recv};

pub use shmbus_core::Drained;
use shmbus_core::{Bus, Consumer, PeerKind, Poll};
pub use shmbus_core::{BusConfig, Error, HeaderInfo, MessageType, Overflow, StartAt, TypeKind, WaitStrategy};

/// Why no message was received.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmbus::{BusConfig, RecvError, StartAt, Subscriber};
/// use std::time::Duration;
/// # let dir = tempfile::tempdir()?;
/// let cfg = BusConfig::default().dir(dir.path());
/// let mut sub = Subscriber::open_or_create("quiet", &cfg, StartAt::Latest)?;
/// let err = sub.recv_timeout(Duration::from_millis(1)).unwrap_err();
/// assert!(matches!(err, RecvError::Timeout));
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum RecvError {
    /// Nothing arrived before the timeout.
    Timeout,
    /// Overwrite mode: publishers overran this subscriber, which lost exactly
    /// `lost` messages. The next receive returns the oldest intact message.
    Lagged {
        /// Messages lost.
        lost: u64,
    },
    /// `recv_pod`: the message's length is not the size of the type.
    WrongSize {
        /// Size of the type.
        expected: usize,
        /// Length of the message.
        found: usize,
    },
    /// `recv_serde`: the message could not be decoded as the type.
    Decode(String),
    /// The bus file is damaged or could not be used.
    Bus(Error),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Timeout => f.write_str("timed out waiting for a message"),
            RecvError::Lagged { lost } => {
                write!(f, "subscriber was overrun and lost {lost} messages; continuing with the oldest intact one")
            }
            RecvError::WrongSize { expected, found } => {
                write!(f, "message of {found} bytes does not match the {expected}-byte type")
            }
            RecvError::Decode(e) => write!(f, "could not decode the message: {e}"),
            RecvError::Bus(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RecvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecvError::Bus(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for RecvError {
    fn from(e: Error) -> Self {
        RecvError::Bus(e)
    }
}

/// A received message: owns its bytes and derefs to `[u8]`.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use shmbus::{BusConfig, StartAt, Subscriber};
/// # let dir = tempfile::tempdir()?;
/// # let cfg = BusConfig::default().dir(dir.path());
/// # let mut sub = Subscriber::open_or_create("m", &cfg, StartAt::Latest)?;
/// # let mut publ = shmbus::Publisher::open_or_create("m", &cfg)?;
/// # publ.send(&7u64.to_ne_bytes())?;
/// let msg = sub.recv()?;
/// let bytes: &[u8] = &msg;
/// assert_eq!(bytes.len(), 8);
/// assert_eq!(msg.as_pod::<u64>().copied().or_else(|| bytemuck::try_pod_read_unaligned::<u64>(&msg).ok()), Some(7));
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    data: Vec<u8>,
    seq: u64,
}

impl Message {
    /// The message's global sequence number (its place in the bus's total order).
    pub fn seq(&self) -> u64 {
        self.seq
    }
    /// The bytes, without copying.
    pub fn into_vec(self) -> Vec<u8> {
        self.data
    }
    /// Views the message as a `T` in place, when its length is `size_of::<T>()`
    /// and its buffer is suitably aligned; `None` otherwise (use
    /// `bytemuck::pod_read_unaligned` or [`Subscriber::recv_pod`] then).
    pub fn as_pod<T: bytemuck::Pod>(&self) -> Option<&T> {
        bytemuck::try_from_bytes(&self.data).ok()
    }
}

impl Deref for Message {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl AsRef<[u8]> for Message {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message").field("seq", &self.seq).field("len", &self.data.len()).finish()
    }
}

/// A message borrowed in place from the ring (block mode), or copied where it
/// cannot be borrowed safely (overwrite mode, or a bus with an eviction
/// policy). The publisher cannot reuse the space until this is dropped.
///
/// # What the `&[u8]` points at
///
/// In block mode the slice is the ring's own bytes in a shared mapping. Every
/// cooperating publisher honours this subscriber's hold (binding from the
/// attach handshake on), so no shmbus code writes those bytes while the
/// `MessageRef` lives. Another process with write access to the bus file
/// (a buggy or hostile one) can still change them under you: you then read
/// whatever it wrote, but never outside the frame (the length and position
/// were checked and copied before the slice was made) and never memory that
/// is not mapped. Copy the bytes (`to_vec`) before trusting their contents
/// beyond that, or use `recv`, which copies under the same checks.
pub struct MessageRef<'a> {
    sub: &'a mut Subscriber,
    inner: RefInner,
}

enum RefInner {
    Borrowed(shmbus_core::Borrowed),
    Owned(Vec<u8>, u64),
}

impl MessageRef<'_> {
    /// The message's global sequence number.
    pub fn seq(&self) -> u64 {
        match &self.inner {
            RefInner::Borrowed(b) => b.seq(),
            RefInner::Owned(_, s) => *s,
        }
    }
}

impl Deref for MessageRef<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.inner {
            RefInner::Borrowed(b) => {
                // SAFETY: block mode on a bus without an eviction policy (only
                // there does `try_borrow` lend): the frame was committed (stamp
                // seen with Acquire), and our hold, binding on every publisher
                // since the attach handshake, keeps them from reusing these
                // bytes until `release` in Drop; the MessageRef borrows the
                // subscriber mutably, so the cursor cannot move while this
                // slice lives. A hostile process with write access to the file
                // can still change these bytes: the slice is then wrong, but
                // only as wrong as any byte it could have written (no length or
                // pointer is read from it).
                unsafe { std::slice::from_raw_parts(b.ptr(), b.len()) }
            }
            RefInner::Owned(v, _) => v,
        }
    }
}

impl Drop for MessageRef<'_> {
    fn drop(&mut self) {
        if let RefInner::Borrowed(b) = std::mem::replace(&mut self.inner, RefInner::Owned(Vec::new(), 0)) {
            self.sub.raw.release(b);
        }
    }
}

impl fmt::Debug for MessageRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageRef").field("seq", &self.seq()).field("len", &self.len()).finish()
    }
}

/// A subscriber attached to a bus.
///
/// `Subscriber` is `Send` (move it into a thread or task) and `Sync`: every
/// operation that reads the ring takes `&mut self`, so a shared reference only
/// reads immutable settings.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmbus::{BusConfig, StartAt, Subscriber};
/// # let dir = tempfile::tempdir()?;
/// let cfg = BusConfig::default().dir(dir.path());
/// let mut sub = Subscriber::open_or_create("orders", &cfg, StartAt::Latest)?;
/// assert!(sub.try_recv()?.is_none());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Subscriber {
    raw: Consumer,
    buf: Vec<u8>,
    interruptible: bool,
}

fn consumer(bus: Bus, cfg: &BusConfig, start: StartAt) -> Consumer {
    let mut raw = Consumer::new(bus, start, cfg.get_wait_strategy());
    raw.set_unblock_timeout(cfg.get_unblock_timeout());
    raw
}

impl Subscriber {
    /// Attaches to the bus `name`, creating it with `cfg` if it does not exist.
    /// An existing bus is accepted whatever its settings, unless a setting
    /// `cfg` set explicitly differs ([`Error::Incompatible`], naming both
    /// values); a message type declared with [`BusConfig::message_type`] must
    /// match the bus's ([`Error::TypeMismatch`]).
    pub fn open_or_create(name: &str, cfg: &BusConfig, start: StartAt) -> Result<Subscriber, Error> {
        let bus = Bus::open_or_create(name, cfg, PeerKind::Subscriber)?;
        Ok(Subscriber { raw: consumer(bus, cfg, start), buf: Vec::new(), interruptible: false })
    }

    /// Attaches to an existing bus, never creating it: only `cfg`'s directory,
    /// shared group, wait strategy and declared message type are read.
    pub fn attach(name: &str, cfg: &BusConfig, start: StartAt) -> Result<Subscriber, Error> {
        let bus = Bus::attach(name, cfg, PeerKind::Subscriber)?;
        Ok(Subscriber { raw: consumer(bus, cfg, start), buf: Vec::new(), interruptible: false })
    }

    fn poll(&mut self, deadline: Option<Instant>) -> Result<Option<u64>, RecvError> {
        match self.raw.read(&mut self.buf, deadline)? {
            Poll::Message { seq, .. } => Ok(Some(seq)),
            Poll::Empty => Ok(None),
            Poll::Lagged { lost } => Err(RecvError::Lagged { lost }),
        }
    }

    fn take(&mut self, seq: u64) -> Message {
        Message { data: std::mem::take(&mut self.buf), seq }
    }

    /// Receives the next message, waiting as long as it takes (spin, then park).
    pub fn recv(&mut self) -> Result<Message, RecvError> {
        match self.poll(None)? {
            Some(seq) => Ok(self.take(seq)),
            None => Err(RecvError::Timeout),
        }
    }

    /// Receives the next message, waiting at most `timeout` (`Err(RecvError::Timeout)`).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message, RecvError> {
        // A timeout too large for the clock waits as long as it takes.
        match self.poll(Instant::now().checked_add(timeout))? {
            Some(seq) => Ok(self.take(seq)),
            None => Err(RecvError::Timeout),
        }
    }

    /// Receives the next message if one is there; `Ok(None)` otherwise.
    pub fn try_recv(&mut self) -> Result<Option<Message>, RecvError> {
        match self.raw.try_read(&mut self.buf)? {
            Poll::Message { seq, .. } => Ok(Some(self.take(seq))),
            Poll::Empty => Ok(None),
            Poll::Lagged { lost } => Err(RecvError::Lagged { lost }),
        }
    }

    /// Receives every message that is ready now, up to `max`, passing each
    /// to `f` (its sequence number and payload) in order; waits at most
    /// `timeout` (`None`: as long as it takes) for the first one. The
    /// subscriber's progress (its hold, which frees the space for publishers,
    /// and its counters) is published once per call instead of once per
    /// message. Messages lost on the way (overwrite mode) are counted in the
    /// returned [`Drained`] instead of being reported as
    /// `RecvError::Lagged`; the messages passed to `f` are still the ones
    /// after the loss, in order. In block mode (without an eviction policy)
    /// the slices are the ring's own bytes, valid during the call to `f`
    /// (see [`MessageRef`] for what another process can do to them);
    /// otherwise they are copies. `Err(RecvError::Timeout)` when nothing
    /// arrived in time. If `f` panics, the message it failed on counts as
    /// received and the subscriber stays usable.
    pub fn recv_batch<F: FnMut(u64, &[u8])>(
        &mut self,
        max: usize,
        timeout: Option<Duration>,
        mut f: F,
    ) -> Result<Drained, RecvError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let d = self.raw.try_drain(max, &mut self.buf, &mut f)?;
            if d.messages > 0 || d.lost > 0 || max == 0 {
                return Ok(d);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(RecvError::Timeout);
            }
            if !self.raw.wait(deadline) && deadline.is_none() && self.interruptible {
                return Err(RecvError::Timeout);
            }
        }
    }

    /// [`Subscriber::recv_batch`] without waiting: `Ok` with 0 messages when
    /// nothing is ready.
    pub fn try_recv_batch<F: FnMut(u64, &[u8])>(&mut self, max: usize, f: F) -> Result<Drained, RecvError> {
        Ok(self.raw.try_drain(max, &mut self.buf, f)?)
    }

    /// Receives into a buffer of the caller's (no allocation once it is large
    /// enough), waiting at most `timeout` (`None`: as long as it takes).
    /// Returns the message's sequence number.
    pub fn recv_into(&mut self, buf: &mut Vec<u8>, timeout: Option<Duration>) -> Result<u64, RecvError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        match self.raw.read(buf, deadline)? {
            Poll::Message { seq, .. } => Ok(seq),
            Poll::Empty => Err(RecvError::Timeout),
            Poll::Lagged { lost } => Err(RecvError::Lagged { lost }),
        }
    }

    /// Receives the next message in place where possible (zero-copy in block
    /// mode), waiting at most `timeout` (`None`: as long as it takes).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use shmbus::{BusConfig, StartAt, Subscriber};
    /// # let dir = tempfile::tempdir()?;
    /// # let cfg = BusConfig::default().dir(dir.path());
    /// let mut sub = Subscriber::open_or_create("video", &cfg, StartAt::Latest)?;
    /// # let mut publ = shmbus::Publisher::open_or_create("video", &cfg)?;
    /// # publ.send(&[9u8; 4096])?;
    /// let frame = sub.recv_ref(None)?;
    /// assert_eq!(frame.len(), 4096);
    /// drop(frame); // releases the space to publishers
    /// # Ok(()) }
    /// ```
    pub fn recv_ref(&mut self, timeout: Option<Duration>) -> Result<MessageRef<'_>, RecvError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(b) = self.raw.try_borrow()? {
                return Ok(MessageRef { sub: self, inner: RefInner::Borrowed(b) });
            }
            match self.raw.try_read(&mut self.buf)? {
                Poll::Message { seq, .. } => {
                    let data = std::mem::take(&mut self.buf);
                    return Ok(MessageRef { sub: self, inner: RefInner::Owned(data, seq) });
                }
                Poll::Lagged { lost } => return Err(RecvError::Lagged { lost }),
                Poll::Empty => {}
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(RecvError::Timeout);
            }
            if !self.raw.wait(deadline) && deadline.is_none() && self.interruptible {
                return Err(RecvError::Timeout);
            }
        }
    }

    /// Receives a plain-old-data value, waiting as long as it takes; a
    /// message of another length is `Err(RecvError::WrongSize)` (and is consumed).
    pub fn recv_pod<T: bytemuck::Pod>(&mut self) -> Result<T, RecvError> {
        let msg = self.recv()?;
        pod_from(&msg)
    }

    /// Receives a plain-old-data value if one is there: `Ok(None)` otherwise.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmbus::{BusConfig, Publisher, StartAt, Subscriber};
    /// # let dir = tempfile::tempdir()?;
    /// # let cfg = BusConfig::default().dir(dir.path());
    /// let mut sub = Subscriber::open_or_create("temps", &cfg, StartAt::Latest)?;
    /// let mut publ = Publisher::open_or_create("temps", &cfg)?;
    /// assert_eq!(sub.try_recv_pod::<f64>()?, None);
    /// publ.send_pod(&21.5f64)?;
    /// assert_eq!(sub.try_recv_pod::<f64>()?, Some(21.5));
    /// # Ok(()) }
    /// ```
    pub fn try_recv_pod<T: bytemuck::Pod>(&mut self) -> Result<Option<T>, RecvError> {
        match self.try_recv()? {
            Some(msg) => pod_from(&msg).map(Some),
            None => Ok(None),
        }
    }

    /// Receives a plain-old-data value, waiting at most `timeout` (`Err(RecvError::Timeout)`).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmbus::{BusConfig, RecvError, StartAt, Subscriber};
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// # let cfg = BusConfig::default().dir(dir.path());
    /// let mut sub = Subscriber::open_or_create("temps", &cfg, StartAt::Latest)?;
    /// match sub.recv_pod_timeout::<f64>(Duration::from_millis(10)) {
    ///     Ok(celsius) => println!("{celsius} °C"),
    ///     Err(RecvError::Timeout) => println!("no reading for 10 ms"),
    ///     Err(e) => return Err(e.into()),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn recv_pod_timeout<T: bytemuck::Pod>(&mut self, timeout: Duration) -> Result<T, RecvError> {
        let msg = self.recv_timeout(timeout)?;
        pod_from(&msg)
    }

    /// Waits until at least `n` publishers are attached, at most `timeout`
    /// (`Err(RecvError::Timeout)`). Returns how many are attached.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmbus::{BusConfig, RecvError, StartAt, Subscriber};
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// # let cfg = BusConfig::default().dir(dir.path());
    /// let sub = Subscriber::open_or_create("quiet", &cfg, StartAt::Latest)?;
    /// assert!(matches!(sub.wait_for_publishers(1, Duration::from_millis(5)), Err(RecvError::Timeout)));
    /// # Ok(()) }
    /// ```
    pub fn wait_for_publishers(&self, n: usize, timeout: Duration) -> Result<usize, RecvError> {
        let deadline = Instant::now().checked_add(timeout);
        self.raw.bus().wait_for_peers(PeerKind::Publisher, n, deadline).ok_or(RecvError::Timeout)
    }

    /// The message type recorded in the bus (declared by a typed handle), if any.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmbus::{BusConfig, MessageType, Publisher, StartAt, Subscriber};
    /// # let dir = tempfile::tempdir()?;
    /// # let cfg = BusConfig::default().dir(dir.path());
    /// let _p = Publisher::open_or_create("temps", &cfg.clone().message_type(MessageType::pod::<f32>()))?;
    /// let any = Subscriber::attach("temps", &cfg, StartAt::Latest)?; // untyped
    /// assert_eq!(any.message_type(), Some(MessageType::pod::<f32>()));
    /// # Ok(()) }
    /// ```
    pub fn message_type(&self) -> Option<MessageType> {
        self.raw.bus().message_type()
    }

    /// Live publishers attached to the bus now (other than this handle).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmbus::{BusConfig, Publisher, StartAt, Subscriber};
    /// # let dir = tempfile::tempdir()?;
    /// # let cfg = BusConfig::default().dir(dir.path());
    /// let sub = Subscriber::open_or_create("t", &cfg, StartAt::Latest)?;
    /// assert_eq!(sub.publishers(), 0);
    /// let _publ = Publisher::attach("t", &cfg)?;
    /// assert_eq!(sub.publishers(), 1);
    /// # Ok(()) }
    /// ```
    pub fn publishers(&self) -> usize {
        self.raw.bus().live_peers(PeerKind::Publisher)
    }

    /// Every message, waiting for each as long as it takes (the iterator
    /// never ends by itself; overwrite-mode losses are `Err(RecvError::Lagged)` items).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmbus::{BusConfig, Publisher, StartAt, Subscriber};
    /// # let dir = tempfile::tempdir()?;
    /// # let cfg = BusConfig::default().dir(dir.path());
    /// let mut sub = Subscriber::open_or_create("log", &cfg, StartAt::Latest)?;
    /// # let mut publ = Publisher::open_or_create("log", &cfg)?;
    /// # for line in ["a", "b", "quit"] { publ.send(line.as_bytes())?; }
    /// for msg in sub.iter() {
    ///     let msg = msg?;
    ///     if &msg[..] == b"quit" {
    ///         break;
    ///     }
    ///     println!("{}", String::from_utf8_lossy(&msg));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn iter(&mut self) -> Iter<'_> {
        Iter { sub: self }
    }

    /// The messages already there: ends when none is left.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmbus::{BusConfig, Publisher, StartAt, Subscriber};
    /// # let dir = tempfile::tempdir()?;
    /// # let cfg = BusConfig::default().dir(dir.path());
    /// let mut sub = Subscriber::open_or_create("batch", &cfg, StartAt::Latest)?;
    /// let mut publ = Publisher::open_or_create("batch", &cfg)?;
    /// for i in 0..3u8 {
    ///     publ.send(&[i])?;
    /// }
    /// let got: Vec<u8> = sub.try_iter().map(|m| m.map(|m| m[0])).collect::<Result<_, _>>()?;
    /// assert_eq!(got, [0, 1, 2]);
    /// # Ok(()) }
    /// ```
    pub fn try_iter(&mut self) -> TryIter<'_> {
        TryIter { sub: self }
    }

    /// Receives a value encoded with bincode 2 (standard configuration) through
    /// serde; undecodable bytes are `Err(RecvError::Decode)`, never a panic.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use shmbus::{BusConfig, StartAt, Subscriber};
    /// # let dir = tempfile::tempdir()?;
    /// # let cfg = BusConfig::default().dir(dir.path());
    /// let mut sub = Subscriber::open_or_create("events", &cfg, StartAt::Latest)?;
    /// # let mut publ = shmbus::Publisher::open_or_create("events", &cfg)?;
    /// # publ.send_serde(&("login".to_string(), 42u32))?;
    /// let (what, who): (String, u32) = sub.recv_serde()?;
    /// assert_eq!((what.as_str(), who), ("login", 42));
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "serde")]
    pub fn recv_serde<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, RecvError> {
        let msg = self.recv()?;
        serde_from(&msg)
    }

    /// Receives a serde value if one is there: `Ok(None)` otherwise.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmbus::{BusConfig, Publisher, StartAt, Subscriber};
    /// # let dir = tempfile::tempdir()?;
    /// # let cfg = BusConfig::default().dir(dir.path());
    /// let mut sub = Subscriber::open_or_create("events", &cfg, StartAt::Latest)?;
    /// let mut publ = Publisher::open_or_create("events", &cfg)?;
    /// assert_eq!(sub.try_recv_serde::<String>()?, None);
    /// publ.send_serde("login")?;
    /// assert_eq!(sub.try_recv_serde::<String>()?.as_deref(), Some("login"));
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "serde")]
    pub fn try_recv_serde<T: serde::de::DeserializeOwned>(&mut self) -> Result<Option<T>, RecvError> {
        match self.try_recv()? {
            Some(msg) => serde_from(&msg).map(Some),
            None => Ok(None),
        }
    }

    /// Receives a serde value, waiting at most `timeout` (`Err(RecvError::Timeout)`).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmbus::{BusConfig, Publisher, RecvError, StartAt, Subscriber};
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// # let cfg = BusConfig::default().dir(dir.path());
    /// let mut sub = Subscriber::open_or_create("events", &cfg, StartAt::Latest)?;
    /// let wait = Duration::from_millis(10);
    /// assert!(matches!(sub.recv_serde_timeout::<(String, u32)>(wait), Err(RecvError::Timeout)));
    /// let mut publ = Publisher::open_or_create("events", &cfg)?;
    /// publ.send_serde(&("login", 42u32))?;
    /// assert_eq!(sub.recv_serde_timeout::<(String, u32)>(wait)?, ("login".to_string(), 42));
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "serde")]
    pub fn recv_serde_timeout<T: serde::de::DeserializeOwned>(&mut self, timeout: Duration) -> Result<T, RecvError> {
        let msg = self.recv_timeout(timeout)?;
        serde_from(&msg)
    }

    /// Total messages this subscriber was told it lost (overwrite mode, or
    /// after an eviction).
    pub fn lost(&self) -> u64 {
        self.raw.lost_total()
    }
    /// Total messages this subscriber passed as abandoned: sequence numbers
    /// whose publisher claimed space but never committed it (it died, was
    /// stopped longer than the unblock timeout, or dropped a loan). With
    /// [`lost`](Self::lost) and the messages received, every sequence number
    /// since attaching is accounted for.
    pub fn abandoned(&self) -> u64 {
        self.raw.abandoned_total()
    }
    /// With `true`, a signal (e.g. SIGINT with a handler installed) that
    /// interrupts a wait ends `recv`/`recv_ref` with `Err(RecvError::Timeout)`
    /// before its deadline, so a program can look at its own signal flag
    /// without polling.
    pub fn set_interruptible(&mut self, on: bool) {
        self.interruptible = on;
        self.raw.set_interruptible(on);
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
    /// This subscriber's peer slot.
    pub fn slot(&self) -> u32 {
        self.raw.bus().slot()
    }
    /// Chooses how this subscriber waits for messages.
    pub fn set_wait_strategy(&mut self, wait: WaitStrategy) {
        self.raw.set_wait_strategy(wait);
    }
}

fn pod_from<T: bytemuck::Pod>(msg: &[u8]) -> Result<T, RecvError> {
    bytemuck::try_pod_read_unaligned(msg)
        .map_err(|_| RecvError::WrongSize { expected: std::mem::size_of::<T>(), found: msg.len() })
}

#[cfg(feature = "serde")]
fn serde_from<T: serde::de::DeserializeOwned>(msg: &[u8]) -> Result<T, RecvError> {
    let (value, used) = bincode::serde::decode_from_slice(msg, bincode::config::standard())
        .map_err(|e| RecvError::Decode(e.to_string()))?;
    if used != msg.len() {
        return Err(RecvError::Decode(format!("{} trailing bytes after the value", msg.len() - used)));
    }
    Ok(value)
}

/// Blocking iterator over a subscriber's messages ([`Subscriber::iter`]).
#[derive(Debug)]
pub struct Iter<'a> {
    sub: &'a mut Subscriber,
}

impl Iterator for Iter<'_> {
    type Item = Result<Message, RecvError>;
    fn next(&mut self) -> Option<Self::Item> {
        Some(self.sub.recv())
    }
}

/// Non-blocking iterator over the messages already there ([`Subscriber::try_iter`]).
#[derive(Debug)]
pub struct TryIter<'a> {
    sub: &'a mut Subscriber,
}

impl Iterator for TryIter<'_> {
    type Item = Result<Message, RecvError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.sub.try_recv().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}
    fn assert_sync<T: Sync>() {}

    #[test]
    fn subscriber_is_send_and_sync() {
        assert_send::<Subscriber>();
        assert_sync::<Subscriber>();
        assert_send::<Message>();
    }
}
