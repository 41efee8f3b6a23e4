//! Waiting without a thread of one's own: one waiter thread per process parks
//! in `futex_waitv` over the data futex words of every bus with an armed
//! asynchronous waiter plus a private control word, and when a word changes
//! (or a bounded wait ends) it wakes the registered [`Waker`] or signals the
//! registered eventfd. The core knows no async runtime: a `Waker` is std.
//!
//! A subscriber handle *arms* itself ([`crate::Consumer::arm`]): it announces
//! itself in the bus's waiter accounting exactly like a parked subscriber
//! (bit `slot` of `data_mask`, or `data_waiters` plus its slot's `parked`
//! bit), issues `fence(SeqCst)`, re-checks readiness, and only then hands the
//! futex word and the value it saw before announcing to the waiter thread.
//! That is the handshake of wait.rs with the waiter thread standing in for
//! `futex_wait`: a publisher whose fence comes after ours sees the
//! announcement and bumps the word (so the thread, comparing the word with the
//! value we saw, fires at once or is woken), one whose fence comes before is
//! seen by our re-check.
//!
//! An armed entry fires once (like `EPOLLONESHOT`). A publisher that wakes
//! the word takes the mask bits it wakes (wait.rs, `wake_if_waiting`), so a
//! publish between the firing and the next arm usually costs nothing; the
//! next arm announces again and re-checks, so no wake-up is lost.
//! Disarming (and dropping the handle) removes the entry under the shard's
//! lock and withdraws the announcement: no bit or count is left behind.
//!
//! Threads: a shard is one thread and up to [`HANDLES_PER_SHARD`] handles (so
//! at most that many distinct futex words plus the control word, within the
//! kernel's 128). 100 async subscribers use one thread; handle 128 starts a
//! second. Shards and their threads live as long as the process (an idle
//! shard parks on its control word with no timeout: no wake-ups).
//!
//! Without `futex_waitv` (Linux before 5.16, ENOSYS; or forced with
//! `SHMBUS_NO_FUTEX_WAITV=1`, for tests) a shard holds one handle, and its
//! thread parks with `FUTEX_WAIT` on that handle's word in slices of at most
//! 20 ms (to notice re-arms), or on the control word while nothing is armed:
//! one thread per async subscriber, and up to 50 wake-ups per second each
//! while armed.

use std::sync::atomic::{fence, AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::config::PARK_SLICE;
use crate::os::{self, EventFd, WaitWord, Waitv, FUTEX_WAITV_MAX};
use crate::wait::Parking;

/// Handles served by one waiter thread with `futex_waitv`: the kernel's 128
/// words, less the control word.
pub const HANDLES_PER_SHARD: usize = FUTEX_WAITV_MAX - 1;

/// What the waiter thread signals when an armed entry fires.
#[derive(Clone, Debug)]
enum Target {
    Waker(Waker),
    Fd(Arc<EventFd>),
}

impl Target {
    fn signal(self) {
        match self {
            Target::Waker(w) => w.wake(),
            Target::Fd(fd) => fd.signal(),
        }
    }
}

struct Entry {
    id: u64,
    /// The data futex word in the bus mapping. Valid while the entry is in
    /// the table: the owning handle removes it (under the lock) before its
    /// mapping can be unmapped (see `Armed`).
    word: *const AtomicU32,
    seen: u32,
    deadline: Option<Instant>,
    target: Target,
}

#[derive(Default)]
struct Table {
    entries: Vec<Entry>,
    next_id: u64,
    /// Handles assigned to this shard (armed or not).
    handles: usize,
}

struct Shard {
    table: Mutex<Table>,
    /// Bumped (under the lock) whenever an entry is added, so a thread about
    /// to park with an older view returns at once.
    control: AtomicU32,
    capacity: usize,
}

// SAFETY: the raw word pointers in `Table` are only dereferenced by the
// waiter thread while holding the lock, and only while the entry is present,
// which the owning handle guarantees keeps the mapping alive (see `Entry`).
unsafe impl Send for Shard {}
// SAFETY: as above; every field is behind the mutex or atomic.
unsafe impl Sync for Shard {}

static SHARDS: Mutex<Vec<Arc<Shard>>> = Mutex::new(Vec::new());
static NO_WAITV: AtomicBool = AtomicBool::new(false);

fn forced_fallback() -> bool {
    static FORCED: OnceLock<bool> = OnceLock::new();
    *FORCED.get_or_init(|| std::env::var_os("SHMBUS_NO_FUTEX_WAITV").is_some_and(|v| v == "1"))
}

fn lock(t: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    // A panic while holding the lock leaves the table consistent (every
    // update is a single push or retain): go on with it.
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes a place for one more handle in a shard with room, starting a new
/// shard (and its thread) when all are full.
fn join_shard() -> Arc<Shard> {
    let mut shards = SHARDS.lock().unwrap_or_else(|e| e.into_inner());
    let fallback = forced_fallback() || NO_WAITV.load(Ordering::Relaxed);
    for s in shards.iter() {
        let mut t = lock(&s.table);
        let cap = if fallback { 1 } else { s.capacity };
        if t.handles < cap {
            t.handles += 1;
            return s.clone();
        }
    }
    let shard = Arc::new(Shard {
        table: Mutex::new(Table { handles: 1, ..Table::default() }),
        control: AtomicU32::new(0),
        capacity: if fallback { 1 } else { HANDLES_PER_SHARD },
    });
    let s = shard.clone();
    std::thread::Builder::new()
        .name("shmbus-waiter".into())
        .spawn(move || run(s))
        .expect("cannot start the shmbus waiter thread");
    shards.push(shard.clone());
    shard
}

/// Number of waiter threads this process has started (for tests and `inspect`-like reports).
pub fn waiter_threads() -> usize {
    SHARDS.lock().unwrap_or_else(|e| e.into_inner()).len()
}

fn run(shard: Arc<Shard>) {
    let mut words: Vec<WaitWord> = Vec::with_capacity(FUTEX_WAITV_MAX);
    let mut fire: Vec<Target> = Vec::new();
    loop {
        words.clear();
        let mut next: Option<Instant> = None;
        let ctl;
        {
            let mut t = lock(&shard.table);
            ctl = shard.control.load(Ordering::Acquire);
            let now = Instant::now();
            t.entries.retain(|e| {
                // SAFETY: the entry is in the table, so its handle has not
                // disarmed and its mapping is alive (see `Entry::word`).
                // SYNC POINT with the bump in `wait::wake` (Release): a
                // changed word means a publisher committed after the arm.
                let cur = unsafe { &*e.word }.load(Ordering::Acquire);
                if cur != e.seen || e.deadline.is_some_and(|d| now >= d) {
                    fire.push(e.target.clone());
                    false
                } else {
                    true
                }
            });
            for e in &t.entries {
                if let Some(d) = e.deadline {
                    next = Some(next.map_or(d, |n: Instant| n.min(d)));
                }
                if words.len() < FUTEX_WAITV_MAX - 1 && !words.iter().any(|w| w.addr == e.word) {
                    words.push(WaitWord { addr: e.word, expected: e.seen, shared: true });
                }
            }
        }
        if !fire.is_empty() {
            for t in fire.drain(..) {
                t.signal();
            }
            continue;
        }
        let timeout = next.map(|d| d.saturating_duration_since(Instant::now()).max(Duration::from_micros(1)));
        let control = WaitWord { addr: &shard.control, expected: ctl, shared: false };
        if !NO_WAITV.load(Ordering::Relaxed) && !forced_fallback() {
            words.push(control);
            if os::futex_waitv(&words, timeout) == Waitv::Returned {
                continue;
            }
            NO_WAITV.store(true, Ordering::Relaxed);
            words.pop();
        }
        // Fallback: one word at a time (a fallback shard has one handle).
        match words.first() {
            None => os::futex_wait_private(&shard.control, ctl, timeout),
            Some(w) => {
                let slice = timeout.map_or(PARK_SLICE, |t| t.min(PARK_SLICE));
                // Between our unlock and the wait the handle may disarm and
                // unmap: the kernel reads the word (EFAULT), Rust does not.
                os::futex_wait_addr(w.addr, w.expected, slice);
            }
        }
    }
}

/// One handle's place with the waiter thread: its shard, its armed entry (if
/// any) and its eventfd (if asked for). Owned by the handle; the handle must
/// call [`Armed::disarm`] before its mapping goes away.
#[derive(Debug)]
pub(crate) struct Armed {
    shard: Arc<ShardRef>,
    entry: Option<u64>,
    fd: Option<Arc<EventFd>>,
    /// When the last look-around ran (bounded waits on an outstanding claim).
    pub(crate) last_look: Option<Instant>,
}

/// A shard as seen by a handle (gives the handle's place back on drop).
struct ShardRef(Arc<Shard>);

impl std::fmt::Debug for ShardRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shard")
    }
}

impl Drop for ShardRef {
    fn drop(&mut self) {
        let mut t = lock(&self.0.table);
        t.handles = t.handles.saturating_sub(1);
    }
}

/// Whether the handle in `p` is announced in the bus's waiter accounting.
fn is_announced(p: &Parking<'_>) -> bool {
    if p.slot < 64 {
        p.mask.load(Ordering::Relaxed) & (1 << p.slot) != 0
    } else {
        p.parked.load(Ordering::Relaxed) & p.bit != 0
    }
}

/// Announces the handle (idempotent: reads its own bit first, which only it
/// and a reaper of its dead slot change).
fn announce(p: &Parking<'_>) {
    if p.slot < 64 {
        p.mask.fetch_or(1 << p.slot, Ordering::SeqCst);
    } else if p.parked.load(Ordering::Relaxed) & p.bit == 0 {
        // Counted first, marked second, as in wait.rs.
        p.count.fetch_add(1, Ordering::SeqCst);
        p.parked.fetch_or(p.bit, Ordering::Relaxed);
    }
}

/// Withdraws the announcement exactly (idempotent).
fn withdraw(p: &Parking<'_>) {
    if p.slot < 64 {
        p.mask.fetch_and(!(1 << p.slot), Ordering::Relaxed);
    } else if p.parked.fetch_and(!p.bit, Ordering::Relaxed) & p.bit != 0 {
        p.count.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Armed {
    pub(crate) fn new() -> Armed {
        Armed { shard: Arc::new(ShardRef(join_shard())), entry: None, fd: None, last_look: None }
    }

    /// The handle's eventfd, created on first use.
    pub(crate) fn event_fd(&mut self) -> std::io::Result<std::os::fd::RawFd> {
        if self.fd.is_none() {
            self.fd = Some(Arc::new(EventFd::new()?));
        }
        Ok(self.fd.as_ref().map(|f| f.raw()).unwrap_or(-1))
    }

    fn remove_entry(&mut self) {
        if let Some(id) = self.entry.take() {
            lock(&self.shard.0.table).entries.retain(|e| e.id != id);
        }
    }

    /// Arms: announce, fence, re-check `ready`; when not ready, hands the
    /// word to the waiter thread, which signals the waker (or, with `None`,
    /// the eventfd) when the word changes or at `deadline`. Returns true when
    /// ready (nothing armed, announcement withdrawn).
    pub(crate) fn arm(
        &mut self,
        p: &Parking<'_>,
        waker: Option<&Waker>,
        deadline: Option<Instant>,
        ready: impl Fn() -> bool,
    ) -> bool {
        let target = match waker {
            Some(w) => Target::Waker(w.clone()),
            None => {
                if self.fd.is_none() && self.event_fd().is_err() {
                    return true; // no eventfd to signal: the caller polls
                }
                let Some(fd) = &self.fd else { return true };
                // Cleared before re-checking: a signal after this is kept.
                fd.clear();
                Target::Fd(fd.clone())
            }
        };
        self.remove_entry();
        // SYNC POINT with the bump of the word in `wait::wake`: the value is
        // read before announcing, so a bump after our announcement differs.
        let seen = p.futex.load(Ordering::Acquire);
        // SYNC POINT with the fence(SeqCst) of the publisher before
        // `wake_if_waiting` (the handshake in wait.rs).
        announce(p);
        fence(Ordering::SeqCst);
        if ready() {
            withdraw(p);
            return true;
        }
        let shard = &self.shard.0;
        {
            let mut t = lock(&shard.table);
            let id = t.next_id;
            t.next_id += 1;
            t.entries.push(Entry { id, word: p.futex, seen, deadline, target });
            self.entry = Some(id);
            // SYNC POINT with the Acquire load of the control word by the
            // waiter thread under the lock: it parks expecting the old value.
            shard.control.fetch_add(1, Ordering::Release);
        }
        os::futex_wake_private(&shard.control);
        false
    }

    /// Removes the armed entry (if any) and withdraws the announcement.
    pub(crate) fn disarm(&mut self, p: &Parking<'_>) {
        self.remove_entry();
        if is_announced(p) {
            withdraw(p);
        }
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        // The owner disarmed already (it holds the mapping); this only makes
        // sure the waiter thread never sees the entry again.
        self.remove_entry();
    }
}
