//! How a bus is configured, and how its handles behave.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::layout;

/// What a publisher does when the ring holds a full lap of unread data.
///
/// Chosen when the bus is created and fixed for its lifetime.
///
/// ```
/// use shmbus::Overflow;
/// assert_eq!("overwrite".parse::<Overflow>(), Ok(Overflow::Overwrite));
/// assert_eq!(Overflow::Block.to_string(), "block");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Overflow {
    /// Lossless: a publisher may not pass the slowest live subscriber by more
    /// than the capacity; it waits (or returns `Full`).
    #[default]
    Block,
    /// Publishers never wait for subscribers; an overrun subscriber is told
    /// exactly how many messages it lost and resumes at the oldest intact one.
    Overwrite,
}

impl Overflow {
    pub(crate) fn to_raw(self) -> u32 {
        match self {
            Overflow::Block => 0,
            Overflow::Overwrite => 1,
        }
    }
    pub(crate) fn from_raw(v: u32) -> Option<Self> {
        match v {
            0 => Some(Overflow::Block),
            1 => Some(Overflow::Overwrite),
            _ => None,
        }
    }
}

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Overflow::Block => "block",
            Overflow::Overwrite => "overwrite",
        })
    }
}

impl std::str::FromStr for Overflow {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "block" => Ok(Overflow::Block),
            "overwrite" => Ok(Overflow::Overwrite),
            other => Err(format!("unknown overflow policy {other:?} (expected block or overwrite)")),
        }
    }
}

/// Where a new subscriber starts reading.
///
/// ```
/// use shmbus::StartAt;
/// assert_eq!("oldest".parse::<StartAt>(), Ok(StartAt::Oldest));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum StartAt {
    /// Only messages published after the subscriber attached.
    #[default]
    Latest,
    /// The oldest message the ring still holds (the ring is a replay buffer).
    Oldest,
}

impl std::str::FromStr for StartAt {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "latest" => Ok(StartAt::Latest),
            "oldest" => Ok(StartAt::Oldest),
            other => Err(format!("unknown start position {other:?} (expected latest or oldest)")),
        }
    }
}

/// How a handle waits for data (subscriber) or space (publisher).
///
/// As in the Disruptor's wait strategies: busy-spin has the lowest latency and
/// burns a core; park sleeps in the kernel at once; spin-then-park (the
/// default) spins for about 20 µs first.
///
/// ```
/// use shmbus::WaitStrategy;
/// assert_eq!("busy-spin".parse::<WaitStrategy>(), Ok(WaitStrategy::BusySpin));
/// assert_eq!(WaitStrategy::default(), WaitStrategy::SpinThenPark);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum WaitStrategy {
    /// Spin on the shared memory until the condition holds or time runs out.
    BusySpin,
    /// Spin for about 20 µs, then park on the shared futex.
    #[default]
    SpinThenPark,
    /// Park on the shared futex immediately.
    Park,
}

impl fmt::Display for WaitStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WaitStrategy::BusySpin => "busy-spin",
            WaitStrategy::SpinThenPark => "spin-then-park",
            WaitStrategy::Park => "park",
        })
    }
}

impl std::str::FromStr for WaitStrategy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "busy-spin" | "spin" => Ok(WaitStrategy::BusySpin),
            "spin-then-park" => Ok(WaitStrategy::SpinThenPark),
            "park" => Ok(WaitStrategy::Park),
            other => Err(format!("unknown wait strategy {other:?} (expected busy-spin, spin-then-park or park)")),
        }
    }
}

/// Which side of the bus a handle is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerKind {
    /// Writes messages.
    Publisher,
    /// Reads messages.
    Subscriber,
}

impl fmt::Display for PeerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerKind::Publisher => "publisher",
            PeerKind::Subscriber => "subscriber",
        })
    }
}

/// Settings of a bus, and where to find it.
///
/// Sizes and the policy apply when the bus is created. The config remembers
/// which settings were set explicitly: an unset size derives from a set one
/// (`capacity` alone gets the largest `max_message` it allows, at most 64 KiB;
/// `max_message` alone gets a capacity that holds it), and `open_or_create`
/// accepts an existing bus whatever its settings unless one that was set
/// explicitly contradicts it ([`Error::Incompatible`](crate::Error::Incompatible),
/// see [`check_existing`](BusConfig::check_existing)). `attach` reads only
/// [`dir`](BusConfig::dir), [`share_with_group`](BusConfig::share_with_group) and the wait strategy.
///
/// ```
/// use shmbus::{BusConfig, Overflow};
/// let cfg = BusConfig::default()
///     .dir("/tmp")
///     .capacity(1 << 20)
///     .max_message(64 << 10)
///     .overflow(Overflow::Block)
///     .persistent(false)
///     .mode(0o600);
/// assert_eq!(cfg.get_capacity(), 1 << 20);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusConfig {
    pub(crate) explicit: crate::settings::Explicit,
    pub(crate) message_type: Option<crate::typetag::MessageType>,
    pub(crate) dir: Option<PathBuf>,
    pub(crate) capacity: u64,
    pub(crate) max_message: u32,
    pub(crate) overflow: Overflow,
    pub(crate) persistent: bool,
    pub(crate) mode: u32,
    pub(crate) share_group: Option<u32>,
    pub(crate) max_peers: u32,
    pub(crate) wait: WaitStrategy,
    pub(crate) initial_position: u64,
    pub(crate) unblock_timeout: Duration,
    pub(crate) evict_after_ms: u32,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            explicit: crate::settings::Explicit::default(),
            message_type: None,
            dir: None,
            capacity: 1 << 20,
            max_message: 64 << 10,
            overflow: Overflow::Block,
            persistent: false,
            mode: 0o600,
            share_group: None,
            max_peers: 64,
            wait: WaitStrategy::SpinThenPark,
            initial_position: 0,
            unblock_timeout: DEFAULT_UNBLOCK_TIMEOUT,
            evict_after_ms: 0,
        }
    }
}

impl BusConfig {
    /// The directory holding bus files; else `$SHMBUS_DIR`, else
    /// `/dev/shm/shmbus-<uid>` on Linux.
    pub fn dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.dir = Some(dir.as_ref().to_path_buf());
        self
    }
    /// Bytes of ring (a power of two, 4 KiB to 1 TiB). Default 1 MiB, or, when
    /// only `max_message` is set, the smallest power of two (at least 1 MiB) that holds it.
    ///
    /// ```
    /// let cfg = shmbus::BusConfig::default().capacity(1 << 16);
    /// assert_eq!(cfg.get_max_message(), (1 << 14) - 32); // derived: the largest it allows
    /// ```
    pub fn capacity(mut self, bytes: u64) -> Self {
        self.capacity = bytes;
        self.explicit.set(crate::settings::Explicit::CAPACITY);
        self.derive_sizes();
        self
    }
    /// Largest payload accepted, in bytes (at most a quarter of the capacity, less
    /// a 32-byte frame header). Default 64 KiB, or, when only `capacity` is set,
    /// the largest that capacity allows (at most 64 KiB).
    ///
    /// ```
    /// let cfg = shmbus::BusConfig::default().max_message(1 << 20);
    /// assert_eq!(cfg.get_capacity(), 8 << 20); // derived: the smallest that holds it
    /// ```
    pub fn max_message(mut self, bytes: u32) -> Self {
        self.max_message = bytes;
        self.explicit.set(crate::settings::Explicit::MAX_MESSAGE);
        self.derive_sizes();
        self
    }
    /// The overflow policy. Default [`Overflow::Block`].
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self.explicit.set(crate::settings::Explicit::OVERFLOW);
        self
    }
    /// Keep the file after the last peer detaches. Default false.
    pub fn persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self.explicit.set(crate::settings::Explicit::PERSISTENT);
        self
    }
    /// The file's mode, exactly (the umask does not change it). Default 0o600.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self.explicit.set(crate::settings::Explicit::MODE);
        self
    }
    /// Trust the group `gid`: bus files owned by another user are opened
    /// only when their group is `gid`, and a root-owned directory is used
    /// only when its group is `gid` and it has the setgid and sticky bits and
    /// is not writable by others (e.g. `root:trading 3770`). Default: no
    /// group, so only your own directories and files are used. Pair it with
    /// [`mode(0o660)`](BusConfig::mode) so the group can open the files you
    /// create. See docs/architecture.md, "Who is trusted".
    ///
    /// ```
    /// let cfg = shmbus_core::BusConfig::default().share_with_group(1234).mode(0o660);
    /// assert_eq!(cfg.get_share_group(), Some(1234));
    /// assert_eq!(shmbus_core::BusConfig::default().get_share_group(), None);
    /// ```
    pub fn share_with_group(mut self, gid: u32) -> Self {
        self.share_group = Some(gid);
        self
    }
    /// Number of peer slots (publishers plus subscribers at once), 1 to 1024. Default 64.
    pub fn max_peers(mut self, n: u32) -> Self {
        self.max_peers = n;
        self.explicit.set(crate::settings::Explicit::MAX_PEERS);
        self
    }
    /// How handles opened with this config wait. Default [`WaitStrategy::SpinThenPark`].
    pub fn wait_strategy(mut self, wait: WaitStrategy) -> Self {
        self.wait = wait;
        self
    }
    /// How long a handle opened with this config waits on another
    /// publisher's unfinished claim (a publisher stopped by SIGSTOP, a
    /// debugger or a frozen cgroup between claim and commit) before it
    /// abandons the claim: subscribers then skip it (counted as abandoned,
    /// not lost) and publishers go on. The stopped publisher's `send` or
    /// `commit` then fails with an "abandoned" error, and its bytes stay
    /// quarantined until it returns or dies. Between 1 ms and 1 hour.
    /// Default 1 s.
    pub fn unblock_timeout(mut self, timeout: Duration) -> Self {
        self.unblock_timeout = timeout;
        self
    }
    /// Block mode, opt-in: evict a subscriber that has held publishers back
    /// for `after` (a stopped or stuck reader). Its hold stops counting, the
    /// publishers go on, and its next receive reports exactly how many
    /// messages it lost (`Lagged`) before it continues at the oldest frame
    /// still in the ring. Recorded in the bus file when the bus is created
    /// (so every publisher applies the same policy); ignored when opening an
    /// existing bus. Between 1 ms and 49 days. Default: never evict.
    pub fn evict_after(mut self, after: Duration) -> Self {
        self.evict_after_ms = u32::try_from(after.as_millis()).unwrap_or(u32::MAX).max(u32::from(!after.is_zero()));
        self
    }
    /// The configured unblock timeout.
    pub fn get_unblock_timeout(&self) -> Duration {
        self.unblock_timeout
    }
    /// The configured eviction delay, if any.
    pub fn get_evict_after(&self) -> Option<Duration> {
        (self.evict_after_ms > 0).then(|| Duration::from_millis(u64::from(self.evict_after_ms)))
    }
    /// Test-only: start the ring's 64-bit positions at `pos` (a multiple of the
    /// capacity), e.g. near 2^64 to exercise wrap-around.
    #[doc(hidden)]
    pub fn initial_position(mut self, pos: u64) -> Self {
        self.initial_position = pos;
        self
    }

    /// The configured directory, if any.
    pub fn get_dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }
    /// The configured capacity.
    pub fn get_capacity(&self) -> u64 {
        self.capacity
    }
    /// The configured largest payload.
    pub fn get_max_message(&self) -> u32 {
        self.max_message
    }
    /// The configured overflow policy.
    pub fn get_overflow(&self) -> Overflow {
        self.overflow
    }
    /// Whether the bus outlives its last peer.
    pub fn get_persistent(&self) -> bool {
        self.persistent
    }
    /// The configured file mode.
    pub fn get_mode(&self) -> u32 {
        self.mode
    }
    /// The group shared with, if any ([`share_with_group`](BusConfig::share_with_group)).
    pub fn get_share_group(&self) -> Option<u32> {
        self.share_group
    }
    /// The configured wait strategy.
    pub fn get_wait_strategy(&self) -> WaitStrategy {
        self.wait
    }

    /// Checks every value; called before anything touches the filesystem.
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidConfig { what });
        if !portable_atomic::AtomicU128::is_lock_free() {
            // A lock-based fallback would lock within this process only.
            return bad(
                "this CPU has no lock-free 128-bit compare-and-swap (cmpxchg16b), which the bus tail needs".into()
            );
        }
        if !self.capacity.is_power_of_two()
            || self.capacity < layout::MIN_CAPACITY
            || self.capacity > layout::MAX_CAPACITY
        {
            return bad(format!(
                "capacity {} is not a power of two between {} and {}",
                self.capacity,
                layout::MIN_CAPACITY,
                layout::MAX_CAPACITY
            ));
        }
        if self.max_message == 0 || u64::from(self.max_message) > layout::max_message_for(self.capacity) {
            return bad(format!(
                "max_message {} must be between 1 and {} for capacity {} (a frame may take at most a quarter of the ring)",
                self.max_message,
                layout::max_message_for(self.capacity),
                self.capacity
            ));
        }
        if self.mode & !0o777 != 0 || self.mode & 0o600 != 0o600 {
            return bad(format!(
                "mode {:o} must be a permission mode within 0o777 that lets the owner read and write",
                self.mode
            ));
        }
        if self.max_peers == 0 || self.max_peers > layout::MAX_PEERS {
            return bad(format!("max_peers {} is not between 1 and {}", self.max_peers, layout::MAX_PEERS));
        }
        if self.unblock_timeout < Duration::from_millis(1) || self.unblock_timeout > Duration::from_secs(3600) {
            return bad(format!("unblock timeout {:?} is not between 1 ms and 1 hour", self.unblock_timeout));
        }
        if self.initial_position & (self.capacity - 1) != 0 {
            return bad(format!("initial position {:#x} is not a multiple of the capacity", self.initial_position));
        }
        Ok(())
    }
}

/// The default [`BusConfig::unblock_timeout`].
pub const DEFAULT_UNBLOCK_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest a single park lasts before the waiter looks around again
/// (for a dead waker, a dead peer, or its own deadline).
pub(crate) const PARK_SLICE: Duration = Duration::from_millis(20);
