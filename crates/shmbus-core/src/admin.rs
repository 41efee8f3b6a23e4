//! Looking at buses from outside: inspect, list, gc, remove. None of these
//! attaches as a peer.

use std::path::{Path, PathBuf};

use crate::bus::unlink_if_same;
use crate::config::{BusConfig, PeerKind};
use crate::error::{Error, Result};
use crate::layout::*;
use crate::os::{self, LockKind};
use crate::path::{bus_path, check_dir, resolve_dir, validate_name};
use crate::region::{HeaderInfo, Region};
use crate::ring::distance;
use crate::sync::Ordering;

/// One occupied peer slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// Slot index.
    pub slot: u32,
    /// Publisher or subscriber.
    pub kind: PeerKind,
    /// The process that took the slot (for display; liveness comes from its lock).
    pub pid: u32,
    /// Whether its liveness lock is held.
    pub alive: bool,
    /// Subscriber: whether it has placed its cursor (finished attaching;
    /// `ready_subscribers` counts only these). Publisher: true.
    pub placed: bool,
    /// Subscriber: next position it reads. Publisher: 0.
    pub cursor: u64,
    /// Subscriber: bytes between its cursor and the tail.
    pub lag_bytes: u64,
    /// Subscriber: messages published that it has not read yet.
    pub lag_messages: u64,
    /// Messages published or received.
    pub messages: u64,
    /// Payload bytes published or received.
    pub bytes: u64,
    /// Subscriber: messages reported lost (overwrite mode).
    pub lost: u64,
    /// Attach time, nanoseconds since the Unix epoch.
    pub attached_unix_ns: u64,
    /// Subscriber: messages it passed as abandoned (claims never committed).
    pub abandoned: u64,
    /// Subscriber, block mode: how long it has been holding a waiting
    /// publisher back, in nanoseconds (0: nobody is waiting on it).
    pub holding_back_ns: u64,
    /// Subscriber: evicted for holding publishers back (it rejoins, and
    /// reports what it lost, at its next read).
    pub evicted: bool,
    /// Parked in the kernel waiting for data or space.
    pub parked: bool,
}

/// A bus seen from outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusStatus {
    /// The bus name.
    pub name: String,
    /// The bus file.
    pub path: PathBuf,
    /// The validated header.
    pub header: HeaderInfo,
    /// Next claim position.
    pub tail: u64,
    /// Messages ever published (next sequence number).
    pub published: u64,
    /// Occupied slots.
    pub peers: Vec<PeerInfo>,
    /// Subscribers parked (or about to park) waiting for data.
    pub data_waiters: u32,
    /// Publishers parked (or about to park) waiting for space.
    pub space_waiters: u32,
    /// How many times a subscriber has attached (it only grows): a change
    /// between two looks means a subscriber came, even if it already left.
    pub attach_epoch: u64,
    /// The message type a typed handle recorded in the bus, if any.
    pub message_type: Option<crate::typetag::MessageType>,
}

impl BusStatus {
    /// Live publishers.
    pub fn live_publishers(&self) -> usize {
        self.peers.iter().filter(|p| p.alive && p.kind == PeerKind::Publisher).count()
    }
    /// Live subscribers (attached handles, placed or not).
    pub fn live_subscribers(&self) -> usize {
        self.peers.iter().filter(|p| p.alive && p.kind == PeerKind::Subscriber).count()
    }
    /// Live subscribers that have placed their cursor (finished attaching):
    /// a message published after this count includes one reaches it. What
    /// to wait for before publishing to a subscriber that starts at the
    /// latest message.
    pub fn ready_subscribers(&self) -> usize {
        self.peers.iter().filter(|p| p.alive && p.placed && p.kind == PeerKind::Subscriber).count()
    }
    /// No live peer.
    pub fn stale(&self) -> bool {
        !self.peers.iter().any(|p| p.alive)
    }
}

/// A bus opened for looking at it: read-write when this process may write
/// the file, else read-only (a 0400 bus can still be inspected and listed).
struct Opened {
    region: Region,
    read_only: bool,
}

fn open_region(name: &str, path: &Path) -> Result<Opened> {
    let (file, read_only) = match os::open_existing(path, true) {
        Ok(f) => (f, false),
        Err(_) => (os::open_existing(path, false).map_err(|e| Error::io(name, path, "open", e))?, true),
    };
    let st = os::fstat(&file).map_err(|e| Error::io(name, path, "stat", e))?;
    if !st.is_regular() {
        return Err(Error::NotABusFile { bus: name.into(), path: path.into(), found: st.kind() });
    }
    let region = if read_only {
        Region::from_file_read_only(name, path.to_path_buf(), file, st.size)?
    } else {
        Region::from_file(name, path.to_path_buf(), file, st.size)?
    };
    Ok(Opened { region, read_only })
}

/// The tail of a read-only mapping, without a 128-bit atomic load (which may
/// be a `cmpxchg16b`, a write, and fault on a read-only page): its two
/// halves read one at a time until the high half (the sequence number) is
/// the same before and after the low half (the position), at most 64 times.
/// For display only: a value torn by a writer that never stops is still a
/// pair of plausible counters.
fn tail_read_only(region: &Region) -> (u64, u64) {
    let (lo, hi) = (region.mem.u64(OFF_TAIL), region.mem.u64(OFF_TAIL + 8));
    let mut pair = (0, 0);
    for _ in 0..64 {
        // SYNC POINT with the publishers' tail CAS (Release half): loads only,
        // ordered so that a stable high half brackets the low half.
        let h1 = hi.load(Ordering::Acquire);
        let l = lo.load(Ordering::Acquire);
        let h2 = hi.load(Ordering::Acquire);
        pair = (l, h2);
        if h1 == h2 {
            break;
        }
    }
    pair
}

fn status(opened: &Opened) -> BusStatus {
    let region = &opened.region;
    let m = &region.mem;
    let (tail, published) = if opened.read_only { tail_read_only(region) } else { region.tail() };
    let mut peers = Vec::new();
    for slot in 0..region.info.peer_slots {
        let kind = match region.slot(slot).u32(SLOT_STATE).load(Ordering::Acquire) {
            STATE_PUBLISHER => PeerKind::Publisher,
            STATE_SUBSCRIBER => PeerKind::Subscriber,
            _ => continue,
        };
        let get = |f| region.slot(slot).u64(f).load(Ordering::Relaxed);
        let cursor = if kind == PeerKind::Subscriber { get(SLOT_CURSOR) } else { 0 };
        let (lag_bytes, lag_messages) = if kind == PeerKind::Subscriber {
            let lb = distance(cursor, tail);
            let lm = distance(get(SLOT_NEXT_SEQ), published);
            (if lb >= 1 << 63 { 0 } else { lb }, if lm >= 1 << 63 { 0 } else { lm })
        } else {
            (0, 0)
        };
        peers.push(PeerInfo {
            slot,
            kind,
            pid: region.slot(slot).u32(SLOT_PID).load(Ordering::Relaxed),
            alive: region.slot_locked_by_other(slot),
            placed: kind == PeerKind::Publisher || crate::presence::subscriber_placed(region, slot),
            cursor,
            lag_bytes,
            lag_messages,
            messages: get(SLOT_MESSAGES),
            bytes: get(SLOT_BYTES),
            lost: get(SLOT_LOST),
            attached_unix_ns: get(SLOT_ATTACHED_NS),
            abandoned: get(SLOT_ABANDONED),
            holding_back_ns: match get(SLOT_BLOCKING_SINCE) {
                0 => 0,
                since => now_ns().saturating_sub(since),
            },
            evicted: kind == PeerKind::Subscriber
                && region.slot(slot).u32(SLOT_REVOKED).load(Ordering::Relaxed) & REVOKED_EVICTED != 0,
            parked: parked(region, slot),
        });
    }
    BusStatus {
        name: region.bus.clone(),
        path: region.path.clone(),
        header: region.info.clone(),
        tail,
        published,
        peers,
        data_waiters: m.u64(OFF_DATA_MASK).load(Ordering::Relaxed).count_ones()
            + m.u32(OFF_DATA_WAITERS).load(Ordering::Relaxed),
        space_waiters: m.u64(OFF_SPACE_MASK).load(Ordering::Relaxed).count_ones()
            + m.u32(OFF_SPACE_WAITERS).load(Ordering::Relaxed),
        attach_epoch: m.u64(OFF_ATTACH_EPOCH).load(Ordering::Relaxed),
        message_type: region.recorded_type().and_then(|(_, d)| d),
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn parked(region: &Region, slot: u32) -> bool {
    let m = &region.mem;
    if slot < 64 {
        let bit = 1u64 << slot;
        (m.u64(OFF_DATA_MASK).load(Ordering::Relaxed) | m.u64(OFF_SPACE_MASK).load(Ordering::Relaxed)) & bit != 0
    } else {
        region.slot(slot).u32(SLOT_PARKED).load(Ordering::Relaxed) != 0
    }
}

/// Reads the header, peer table and counters of the bus `name`.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmbus::{BusConfig, StartAt, Subscriber};
/// # let dir = tempfile::tempdir()?;
/// let cfg = BusConfig::default().dir(dir.path());
/// let _sub = Subscriber::open_or_create("ticks", &cfg, StartAt::Latest)?;
/// let st = shmbus::inspect("ticks", &cfg)?;
/// assert_eq!(st.live_subscribers(), 1);
/// # Ok(()) }
/// ```
pub fn inspect(name: &str, cfg: &BusConfig) -> Result<BusStatus> {
    validate_name(name)?;
    let dir = resolve_dir(cfg);
    let opened = open_region(name, &bus_path(&dir, name))?;
    Ok(status(&opened))
}

/// Every `*.bus` file in the directory, with its status or the error that
/// stopped it from being read.
pub fn list(cfg: &BusConfig) -> Result<Vec<(String, Result<BusStatus>)>> {
    let dir = resolve_dir(cfg);
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io("", &dir, "list", e)),
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".bus")) else { continue };
        if validate_name(name).is_err() {
            continue;
        }
        let st = open_region(name, &entry.path()).map(|o| status(&o));
        out.push((name.to_owned(), st));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// What gc did with one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GcAction {
    /// A bus with no live peer was removed.
    Removed {
        /// Bus name.
        name: String,
        /// The file.
        path: PathBuf,
    },
    /// A temporary file of a creator that died before finishing was removed.
    RemovedPartial {
        /// The file.
        path: PathBuf,
    },
    /// A file that looks like a bus but could not be read was left alone.
    Skipped {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Removes every non-persistent bus with no live peer, and every temporary
/// file left by a creator that died before finishing.
pub fn gc(cfg: &BusConfig) -> Result<Vec<GcAction>> {
    let dir = resolve_dir(cfg);
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io("", &dir, "list", e)),
    };
    check_dir(&dir, crate::path::Trust::of(cfg))?;
    let mut names: Vec<_> = entries.flatten().map(|e| (e.file_name(), e.path())).collect();
    names.sort();
    for (file_name, path) in names {
        let Some(fname) = file_name.to_str() else { continue };
        if fname.starts_with('.') && fname.ends_with(".tmp") && fname.contains(".bus.") {
            let Ok(file) = os::open_existing(&path, true) else { continue };
            if matches!(os::ofd_try_lock(&file, LOCK_INIT, LockKind::Exclusive), Ok(true))
                && unlink_if_same(&path, &file)
            {
                out.push(GcAction::RemovedPartial { path });
            }
            continue;
        }
        let Some(name) = fname.strip_suffix(".bus") else { continue };
        if validate_name(name).is_err() {
            continue;
        }
        let Ok(file) = os::open_existing(&path, true) else { continue };
        if !matches!(os::ofd_try_lock(&file, LOCK_ATTACH, LockKind::Exclusive), Ok(true)) {
            continue; // live peers
        }
        let size = match os::fstat(&file) {
            Ok(st) if st.is_regular() => st.size,
            _ => continue,
        };
        let fd2 = match file.try_clone() {
            Ok(f) => f,
            Err(_) => continue,
        };
        match Region::from_file(name, path.clone(), fd2, size) {
            Ok(region) if region.info.persistent => {}
            Ok(_) => {
                if unlink_if_same(&path, &file) {
                    out.push(GcAction::Removed { name: name.to_owned(), path });
                }
            }
            Err(e) => out.push(GcAction::Skipped { path, reason: e.to_string() }),
        }
    }
    Ok(out)
}

/// Removes the bus `name`. Refuses while live peers are attached unless `force`.
pub fn remove(name: &str, cfg: &BusConfig, force: bool) -> Result<PathBuf> {
    validate_name(name)?;
    let dir = resolve_dir(cfg);
    let path = bus_path(&dir, name);
    match os::lstat(&path) {
        Ok(st) if !st.is_regular() => {
            if force {
                std::fs::remove_file(&path).map_err(|e| Error::io(name, &path, "remove", e))?;
                return Ok(path);
            }
            return Err(Error::NotABusFile { bus: name.into(), path, found: st.kind() });
        }
        Ok(_) => {}
        Err(e) => return Err(Error::io(name, &path, "inspect", e)),
    }
    let file = os::open_existing(&path, true).map_err(|e| Error::io(name, &path, "open", e))?;
    // A regular file that is not a bus (no magic number) is someone else's:
    // only `force` removes it, as it removes a symlink or a directory entry
    // of another kind (and a bus whose header was scribbled over).
    if !force && !starts_with_magic(&file) {
        return Err(Error::Foreign { bus: name.into(), path });
    }
    let alone = matches!(os::ofd_try_lock(&file, LOCK_ATTACH, LockKind::Exclusive), Ok(true));
    if !alone && !force {
        return Err(Error::InUse { bus: name.into(), path });
    }
    if !unlink_if_same(&path, &file) {
        return Err(Error::NotFound { bus: name.into(), path });
    }
    // Forced under live peers: mark the (now unlinked) bus removed and wake
    // every parked peer, so each learns it at once (`Error::BusRemoved`)
    // instead of carrying on with a file nobody else can find.
    if !alone {
        mark_removed(name, &path, &file);
    }
    Ok(path)
}

/// Maps the bus file and sets its `removed` word (when the file is a valid
/// bus), waking every parked peer.
fn mark_removed(name: &str, path: &Path, file: &std::fs::File) {
    let Ok(st) = os::fstat(file) else { return };
    let Ok(fd) = file.try_clone() else { return };
    if let Ok(region) = Region::from_file(name, path.to_path_buf(), fd, st.size) {
        region.mem.u32(OFF_REMOVED).store(1, Ordering::Release);
        region.wake_everyone();
    }
}

/// Whether the file starts with the bus magic number (read with `pread`,
/// not through a mapping: the file may be anything, of any length).
fn starts_with_magic(file: &std::fs::File) -> bool {
    use std::os::unix::fs::FileExt;
    let mut magic = [0u8; 8];
    file.read_exact_at(&mut magic, OFF_MAGIC as u64).is_ok() && u64::from_le_bytes(magic) == MAGIC
}
