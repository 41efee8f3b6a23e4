//! Creating, opening, validating and unmapping a bus file.
//!
//! # Why the mapping is reached only through atomics and checked copies
//! The mapping is shared with other processes that may write any byte at any
//! time (a bug, a crash half-way through a write, or malice). Rust references
//! to plain data in it would be undefined behaviour the moment another process
//! writes there, so [`Mem`] hands out only `&Atomic*` to aligned words (which
//! are allowed to change underneath us) and copies payload bytes out with raw
//! pointer copies whose result is validated afterwards. Every offset is
//! derived from a header that was validated when the file was opened, and
//! checked again against the mapping's length where it comes from a position
//! read out of the mapping.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{BusConfig, Overflow};
use crate::error::{Error, Result};
use crate::layout::*;
use crate::os::{self, LockKind};
use crate::ring::Geometry;
use crate::sync::{AtomicU128, AtomicU32, AtomicU64, Ordering};

/// A raw view of the mapped bytes (or of a heap buffer laid out the same way).
#[cfg(not(loom))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mem {
    base: *mut u8,
    len: usize,
}

/// Under loom: a view of a heap region made of loom atomics ([`HeapWords`],
/// owned by the region's `HeapBuf`). File-backed regions, loans and borrows
/// (raw pointers into the bytes) are outside the model.
#[cfg(loom)]
#[derive(Clone, Copy)]
pub(crate) struct Mem {
    words: *const crate::sync::HeapWords,
    len: usize,
}

#[cfg(loom)]
impl std::fmt::Debug for Mem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mem").field("len", &self.len).finish()
    }
}

// SAFETY: `Mem` is a pointer into a mapping that lives as long as the owning
// `Region`; all access through it is by atomics or by checked raw copies, which
// are sound from any thread.
unsafe impl Send for Mem {}
// SAFETY: as above.
unsafe impl Sync for Mem {}

impl Mem {
    /// A view of `len` mapped bytes at `base`.
    #[cfg(not(loom))]
    fn mapped(base: *mut u8, len: usize) -> Mem {
        Mem { base, len }
    }

    #[cfg(loom)]
    fn mapped(_base: *mut u8, _len: usize) -> Mem {
        panic!("file-backed buses are outside the loom model: use Region::heap")
    }

    #[inline]
    fn check(&self, off: usize, size: usize) {
        assert!(
            off.is_multiple_of(size) && off.checked_add(size).is_some_and(|end| end <= self.len),
            "shmbus internal error: offset {off} (+{size}) outside a mapping of {} bytes",
            self.len
        );
    }

    /// The 32-bit atomic at `off` (aligned, in bounds: checked).
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn u32(&self, off: usize) -> &AtomicU32 {
        self.check(off, 4);
        // SAFETY: in bounds and 4-aligned (checked above; the base is page-aligned);
        // AtomicU32 has the size and alignment of u32 and may alias memory that
        // other processes change concurrently.
        unsafe { &*(self.base.add(off) as *const AtomicU32) }
    }

    /// The 64-bit atomic at `off`.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn u64(&self, off: usize) -> &AtomicU64 {
        self.check(off, 8);
        // SAFETY: as in `u32`, for an 8-aligned in-bounds offset.
        unsafe { &*(self.base.add(off) as *const AtomicU64) }
    }

    /// The 128-bit atomic at `off` (16-aligned).
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn u128(&self, off: usize) -> &AtomicU128 {
        self.check(off, 16);
        // SAFETY: as in `u32`, for a 16-aligned in-bounds offset; AtomicU128 is
        // repr(C, align(16)) over a u128.
        unsafe { &*(self.base.add(off) as *const AtomicU128) }
    }

    /// Copies `dst.len()` bytes from `off` out of the mapping. The bytes may be
    /// changing while they are copied; callers validate them afterwards.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn copy_out(&self, off: usize, dst: &mut [u8]) {
        assert!(off.checked_add(dst.len()).is_some_and(|e| e <= self.len), "copy_out out of bounds");
        // SAFETY: the source range is inside the mapping (checked); `dst` is a
        // distinct, exclusively borrowed buffer of our own. The source bytes are
        // read as raw bytes without forming a reference; a concurrent writer can
        // only make the copied values stale, which the caller's position check
        // detects.
        unsafe { std::ptr::copy_nonoverlapping(self.base.add(off), dst.as_mut_ptr(), dst.len()) }
    }

    /// Copies `src` into the mapping at `off`.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn copy_in(&self, off: usize, src: &[u8]) {
        assert!(off.checked_add(src.len()).is_some_and(|e| e <= self.len), "copy_in out of bounds");
        // SAFETY: the destination range is inside the mapping (checked) and is a
        // claimed frame that only this publisher writes; `src` is our own buffer.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.base.add(off), src.len()) }
    }

    /// A raw pointer to `off` (for loans and borrows, whose callers uphold the protocol).
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn ptr(&self, off: usize, len: usize) -> *mut u8 {
        assert!(off.checked_add(len).is_some_and(|e| e <= self.len), "ptr out of bounds");
        // SAFETY: in bounds (checked).
        unsafe { self.base.add(off) }
    }
}

/// The same methods over loom atomics (see `crate::sync`).
#[cfg(loom)]
impl Mem {
    fn words(&self) -> &crate::sync::HeapWords {
        // SAFETY: `words` belongs to the `HeapBuf` (behind an `Arc`) of every
        // `Region` holding this `Mem`, which outlives the borrow of the `Region`.
        unsafe { &*self.words }
    }
    pub(crate) fn u32(&self, off: usize) -> &AtomicU32 {
        self.check(off, 4);
        self.words().u32(off)
    }
    pub(crate) fn u64(&self, off: usize) -> &AtomicU64 {
        self.check(off, 8);
        self.words().u64(off)
    }
    pub(crate) fn u128(&self, off: usize) -> &AtomicU128 {
        self.check(off, 16);
        self.words().u128(off)
    }
    pub(crate) fn copy_out(&self, off: usize, dst: &mut [u8]) {
        assert!(off.checked_add(dst.len()).is_some_and(|e| e <= self.len), "copy_out out of bounds");
        self.words().copy_out(off, dst)
    }
    pub(crate) fn copy_in(&self, off: usize, src: &[u8]) {
        assert!(off.checked_add(src.len()).is_some_and(|e| e <= self.len), "copy_in out of bounds");
        self.words().copy_in(off, src)
    }
    pub(crate) fn ptr(&self, _off: usize, _len: usize) -> *mut u8 {
        panic!("loans and borrows (raw pointers into the bytes) are outside the loom model")
    }
}

/// The fields of one frame header or one peer slot: a base pointer whose
/// whole record was checked to lie inside the mapping when it was made
/// (`Region::frame`, `Region::slot`), so each field is in bounds by construction.
#[cfg(not(loom))]
#[derive(Clone, Copy)]
pub(crate) struct Fields<'a> {
    base: *mut u8,
    _region: std::marker::PhantomData<&'a Region>,
}

/// A handle's own peer slot, bounds-checked once (by `Region::slot`) when
/// the handle attached: the start of its record in the mapping, which lives
/// as long as the handle's `Region` (only `Region::own_slot` turns it back
/// into a `Fields`, borrowing that region).
#[cfg(not(loom))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct OwnSlot(*mut u8);

// SAFETY: a plain address inside a shared mapping; it is only dereferenced
// through `Region::own_slot`, as atomics, while the region is borrowed.
#[cfg(not(loom))]
unsafe impl Send for OwnSlot {}
// SAFETY: as for Send: shared access goes through atomics only.
#[cfg(not(loom))]
unsafe impl Sync for OwnSlot {}

/// Under loom: the slot number.
#[cfg(loom)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct OwnSlot(u32);

/// Under loom: the record's offset in the region's loom atomics.
#[cfg(loom)]
#[derive(Clone, Copy)]
pub(crate) struct Fields<'a> {
    mem: &'a Mem,
    off: usize,
}

#[cfg(loom)]
impl<'a> Fields<'a> {
    fn new(mem: &'a Mem, off: usize, size: usize) -> Fields<'a> {
        assert!(off.checked_add(size).is_some_and(|e| e <= mem.len), "record out of bounds");
        Fields { mem, off }
    }
    pub(crate) fn u32(&self, field: usize) -> &'a AtomicU32 {
        self.mem.u32(self.off + field)
    }
    pub(crate) fn u64(&self, field: usize) -> &'a AtomicU64 {
        self.mem.u64(self.off + field)
    }
    /// Frame header: stamp, length and meta as one 16-byte word (see
    /// `crate::sync::Head`: an emulation over the two loom words).
    pub(crate) fn head(&self) -> crate::sync::Head<'a> {
        self.mem.words().head(self.off + FRAME_STAMP)
    }
}

#[cfg(not(loom))]
impl<'a> Fields<'a> {
    /// The record of `size` bytes at `off` (bounds-checked here, once).
    #[inline]
    fn new(mem: &'a Mem, off: usize, size: usize) -> Fields<'a> {
        Fields { base: mem.ptr(off, size), _region: std::marker::PhantomData }
    }
    #[inline]
    fn at<T>(&self, field: usize) -> &'a T {
        // SAFETY: `base` starts a record (a 32-byte-aligned frame header inside
        // the data region, or a 128-byte slot inside the peer table) that was
        // bounds-checked when this value was made; `field` is a layout constant
        // inside the record, aligned for `T` (an atomic of the field's width);
        // atomics may alias memory other processes change.
        unsafe { &*(self.base.add(field) as *const T) }
    }
    #[inline]
    pub(crate) fn u32(&self, field: usize) -> &'a AtomicU32 {
        self.at(field)
    }
    #[inline]
    pub(crate) fn u64(&self, field: usize) -> &'a AtomicU64 {
        self.at(field)
    }
    /// Frame header: stamp, length and meta as one 16-byte word (little
    /// endian: stamp in the low half), for writes that must win or lose as a
    /// whole (see `Region::write_header_guarded`).
    #[inline]
    pub(crate) fn head(&self) -> &'a AtomicU128 {
        self.at(FRAME_STAMP)
    }
}

impl<'a> Fields<'a> {
    /// Frame header: the stamp.
    #[inline]
    pub(crate) fn stamp(&self) -> &'a AtomicU64 {
        self.u64(FRAME_STAMP)
    }
    /// Frame header: the length.
    #[inline]
    pub(crate) fn len(&self) -> &'a AtomicU32 {
        self.u32(FRAME_LEN)
    }
    /// Frame header: flags and publisher slot.
    #[inline]
    pub(crate) fn meta(&self) -> &'a AtomicU32 {
        self.u32(FRAME_META)
    }
    /// Frame header: the sequence number.
    #[inline]
    pub(crate) fn seq(&self) -> &'a AtomicU64 {
        self.u64(FRAME_SEQ)
    }
}

/// The validated, immutable part of the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderInfo {
    /// Layout version.
    pub version: u32,
    /// Ring capacity in bytes.
    pub capacity: u64,
    /// Largest payload.
    pub max_message: u32,
    /// Overflow policy.
    pub overflow: Overflow,
    /// Whether the file outlives its last peer.
    pub persistent: bool,
    /// Number of peer slots.
    pub peer_slots: u32,
    /// Offset of the peer table.
    pub peer_offset: u64,
    /// Offset of the data region.
    pub data_offset: u64,
    /// Length of the file.
    pub file_len: u64,
    /// Position of the first frame.
    pub initial_position: u64,
    /// The creating process.
    pub creator_pid: u32,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_unix_ns: u64,
    /// Block mode: a subscriber that holds publishers back this many
    /// milliseconds is evicted (0: never). See [`BusConfig::evict_after`].
    pub evict_after_ms: u32,
}

impl HeaderInfo {
    /// The header a creator writes for `cfg` on a machine with `page`-byte pages.
    fn for_config(cfg: &BusConfig, page: usize) -> HeaderInfo {
        let data_off = data_offset(cfg.max_peers, page);
        HeaderInfo {
            version: LAYOUT_VERSION,
            capacity: cfg.capacity,
            max_message: cfg.max_message,
            overflow: cfg.overflow,
            persistent: cfg.persistent,
            peer_slots: cfg.max_peers,
            peer_offset: HEADER_SIZE as u64,
            data_offset: data_off,
            file_len: data_off + cfg.capacity,
            initial_position: cfg.initial_position,
            creator_pid: os::getpid(),
            created_unix_ns: now_ns(),
            evict_after_ms: cfg.evict_after_ms,
        }
    }

    pub(crate) fn geometry(&self) -> Geometry {
        Geometry { capacity: self.capacity, max_message: self.max_message }
    }
}

enum Backing {
    Map(memmap2::MmapRaw),
    Heap(std::sync::Arc<HeapBuf>),
}

#[cfg(not(loom))]
#[repr(C, align(4096))]
#[derive(Clone, Copy)]
struct HeapPage([u8; 4096]);

/// A heap buffer standing in for a mapping; shared between handles by `Arc`.
#[cfg(not(loom))]
struct HeapBuf {
    base: *mut HeapPage,
    pages: usize,
}

// SAFETY: the buffer is only reached through `Mem` (atomics and checked raw
// copies), which is sound from any thread.
#[cfg(not(loom))]
unsafe impl Send for HeapBuf {}
// SAFETY: as above.
#[cfg(not(loom))]
unsafe impl Sync for HeapBuf {}

#[cfg(not(loom))]
impl HeapBuf {
    /// `len` zeroed bytes (page-aligned) and a view of them, for a region laid out as `_info` says.
    fn new(len: usize, _info: &HeaderInfo) -> (std::sync::Arc<HeapBuf>, Mem) {
        HeapBuf::zeroed(len)
    }

    fn zeroed(len: usize) -> (std::sync::Arc<HeapBuf>, Mem) {
        let pages = len.div_ceil(4096).max(1);
        let raw = Box::into_raw(vec![HeapPage([0; 4096]); pages].into_boxed_slice());
        let buf = std::sync::Arc::new(HeapBuf { base: raw.cast::<HeapPage>(), pages });
        let mem = Mem { base: buf.base.cast::<u8>(), len };
        (buf, mem)
    }
}

/// Under loom: the region's bytes as loom atomics, laid out for `info`.
#[cfg(loom)]
struct HeapBuf {
    words: crate::sync::HeapWords,
}

#[cfg(loom)]
impl HeapBuf {
    fn new(len: usize, info: &HeaderInfo) -> (std::sync::Arc<HeapBuf>, Mem) {
        // The words holding two 32-bit fields are two loom atomics, so that
        // neighbours (the two futex words, the two waiter counts) stay
        // independent as they are in hardware; every other word is one
        // 64-bit atomic (a frame's 32-bit `len` and `meta` are views of one).
        const HEADER_U32: [usize; 15] = [
            OFF_EVICT_AFTER_MS,
            OFF_VERSION,
            OFF_READY,
            OFF_HEADER_SIZE,
            OFF_PAGE_SIZE,
            OFF_MAX_MESSAGE,
            OFF_POLICY,
            OFF_FLAGS,
            OFF_PEER_SLOTS,
            OFF_CREATOR_PID,
            OFF_DATA_FUTEX,
            OFF_SPACE_FUTEX,
            OFF_DATA_WAITERS,
            OFF_SPACE_WAITERS,
            OFF_PEER_HIGH_WATER,
        ];
        const SLOT_U32: [usize; 4] = [SLOT_STATE, SLOT_PID, SLOT_HOLD_FLAGS, SLOT_PARKED];
        let (peers, data) = (info.peer_offset as usize, info.data_offset as usize);
        let split = |off: usize| {
            if off < peers {
                HEADER_U32.iter().any(|f| f & !7 == off)
            } else if off < data {
                SLOT_U32.iter().any(|f| f & !7 == (off - peers) % PEER_SLOT_SIZE)
            } else {
                false
            }
        };
        let buf = std::sync::Arc::new(HeapBuf { words: crate::sync::HeapWords::new(len, split, &[OFF_TAIL]) });
        let mem = Mem { words: &buf.words, len };
        (buf, mem)
    }
}

#[cfg(not(loom))]
impl Drop for HeapBuf {
    fn drop(&mut self) {
        // SAFETY: `base` and `pages` came from `Box::into_raw` of a boxed slice
        // of exactly `pages` pages in `Region::heap`, and are freed only here.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.base, self.pages)) });
    }
}

/// An open bus file: its descriptor (carrying this handle's locks), its
/// mapping and its validated header.
pub struct Region {
    pub(crate) bus: String,
    pub(crate) path: PathBuf,
    pub(crate) file: Option<File>,
    backing: Backing,
    pub(crate) mem: Mem,
    pub(crate) info: HeaderInfo,
    pub(crate) geo: Geometry,
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region").field("bus", &self.bus).field("path", &self.path).field("info", &self.info).finish()
    }
}

/// The outcome of trying to create a bus file.
pub(crate) enum Created {
    /// We created it; the handle already holds the shared attach lock.
    New(Region),
    /// Another process created it first.
    Exists,
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

impl Region {
    /// Creates `<dir>/<name>.bus` atomically: the file is built completely
    /// under a temporary name and then hard-linked into place, so nobody can
    /// ever open a half-built bus by name, exactly one racing creator wins the
    /// link, and a creator that dies half-way leaves only a temporary file
    /// (removed by gc) instead of blocking the name.
    pub(crate) fn create(name: &str, dir: &Path, cfg: &BusConfig) -> Result<Created> {
        let path = crate::path::bus_path(dir, name);
        let tmp = dir.join(format!(".{name}.bus.{}.{}.tmp", os::getpid(), now_ns()));
        let file = os::create_exclusive(&tmp).map_err(|e| Error::io(name, &tmp, "create", e))?;
        let cleanup = |e: Error| {
            let _ = std::fs::remove_file(&tmp);
            e
        };
        // Held until the file is complete (taken first: gc removes temporary
        // files whose init lock is free); the attach lock for our whole lifetime.
        os::ofd_try_lock(&file, LOCK_INIT, LockKind::Exclusive)
            .and_then(|_| os::ofd_try_lock(&file, LOCK_ATTACH, LockKind::Shared))
            .map_err(|e| cleanup(Error::io(name, &tmp, "lock", e)))?;
        os::fchmod(&file, cfg.mode).map_err(|e| cleanup(Error::io(name, &tmp, "set the mode of", e)))?;
        let page = os::page_size();
        let info = HeaderInfo::for_config(cfg, page);
        let file_len = info.file_len;
        os::fallocate(&file, file_len).map_err(|e| {
            cleanup(match Error::io(name, &path, "reserve space for", e) {
                Error::NoSpace { bus, path, .. } => Error::NoSpace { bus, path, needed: file_len },
                other => other,
            })
        })?;
        let map = memmap2::MmapOptions::new()
            .len(file_len as usize)
            .map_raw(&file)
            .map_err(|e| cleanup(Error::io(name, &tmp, "map", e)))?;
        let mem = Mem::mapped(map.as_mut_ptr(), file_len as usize);
        write_header(&mem, &info, page);
        let region = Region {
            bus: name.to_owned(),
            path: path.clone(),
            file: Some(file),
            backing: Backing::Map(map),
            mem,
            geo: info.geometry(),
            info,
        };
        // SYNC POINT with the Acquire load of `ready` in `validate_header` of an
        // opener: everything written above is visible to whoever sees ready == 1.
        region.mem.u32(OFF_READY).store(1, Ordering::Release);
        match os::link(&tmp, &path) {
            Ok(()) => {
                let _ = std::fs::remove_file(&tmp);
                if let Some(f) = &region.file {
                    os::ofd_unlock(f, LOCK_INIT);
                }
                Ok(Created::New(region))
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                let _ = std::fs::remove_file(&tmp);
                Ok(Created::Exists)
            }
            // Our temporary file is gone: a gc took it for a dead creator's in
            // the instant between our open and our init lock. Start again under
            // a new temporary name (gc needs that same instant to win again).
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && os::lstat(&tmp).is_err() => {
                drop(region);
                Region::create(name, dir, cfg)
            }
            Err(e) => Err(cleanup(Error::io(name, &path, "link", e))),
        }
    }

    /// Opens an existing bus file, takes the shared attach lock (waiting
    /// briefly while a last peer is removing it), and validates everything.
    /// Returns `NotFound` when the file is gone (or was unlinked while we opened it).
    pub(crate) fn open(name: &str, dir: &Path, trust: crate::trust::Trust) -> Result<Region> {
        let path = crate::path::bus_path(dir, name);
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let file = os::open_existing(&path, true).map_err(|e| Error::io(name, &path, "open", e))?;
            let st = os::fstat(&file).map_err(|e| Error::io(name, &path, "stat", e))?;
            if !st.is_regular() {
                return Err(Error::NotABusFile { bus: name.into(), path, found: st.kind() });
            }
            // Judged on the open descriptor, before mapping: a file another user planted is never mapped.
            crate::trust::check_file(name, &path, &st, trust)?;
            let locked = os::ofd_try_lock(&file, LOCK_ATTACH, LockKind::Shared)
                .map_err(|e| Error::io(name, &path, "lock", e))?;
            if !locked {
                // The last peer (or gc) is deciding whether to remove the file.
                if Instant::now() > deadline {
                    return Err(Error::Busy { bus: name.into(), path, what: "another process removing the bus" });
                }
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let st = os::fstat(&file).map_err(|e| Error::io(name, &path, "stat", e))?;
            if st.nlink == 0 {
                // Removed between our open and our lock: it no longer has this name.
                return Err(Error::NotFound { bus: name.into(), path });
            }
            return Region::from_file(name, path, file, st.size);
        }
    }

    /// Maps and validates an already opened file.
    pub(crate) fn from_file(name: &str, path: PathBuf, file: File, size: u64) -> Result<Region> {
        Self::from_file_mapped(name, path, file, size, false)
    }

    /// As [`Region::from_file`], with a read-only mapping of a file opened
    /// read-only: for looking at a bus (inspect, list) whose file this
    /// process may read but not write. Nothing may store into such a region,
    /// nor use a read-modify-write on it (a 128-bit atomic load can be a
    /// `cmpxchg16b`, which writes): only plain atomic loads.
    pub(crate) fn from_file_read_only(name: &str, path: PathBuf, file: File, size: u64) -> Result<Region> {
        Self::from_file_mapped(name, path, file, size, true)
    }

    fn from_file_mapped(name: &str, path: PathBuf, file: File, size: u64, read_only: bool) -> Result<Region> {
        if size < HEADER_SIZE as u64 {
            return Err(Error::corrupt(
                name,
                &path,
                format!("the file is {size} bytes, shorter than the {HEADER_SIZE}-byte header"),
            ));
        }
        if size > MAX_CAPACITY + 64 * 1024 * 1024 {
            return Err(Error::corrupt(name, &path, format!("the file is {size} bytes, larger than any bus")));
        }
        let mut opts = memmap2::MmapOptions::new();
        opts.len(size as usize);
        let map = if read_only { opts.map_raw_read_only(&file) } else { opts.map_raw(&file) }
            .map_err(|e| Error::io(name, &path, "map", e))?;
        let mem = Mem::mapped(map.as_mut_ptr(), size as usize);
        let info = validate_header(&mem, size, name, &path)?;
        Ok(Region {
            bus: name.to_owned(),
            path,
            file: Some(file),
            backing: Backing::Map(map),
            mem,
            geo: info.geometry(),
            info,
        })
    }

    /// A bus laid out in a heap buffer instead of a file: for in-process tests
    /// (and Miri) of the ring protocol. Liveness locks always report alive.
    pub fn heap(cfg: &BusConfig) -> Result<Region> {
        cfg.validate()?;
        let page = 4096;
        // Persistent: a heap region has no file to remove.
        let info = HeaderInfo { persistent: true, ..HeaderInfo::for_config(cfg, page) };
        let file_len = info.file_len;
        let (buf, mem) = HeapBuf::new(file_len as usize, &info);
        write_header(&mem, &info, page);
        mem.u32(OFF_READY).store(1, Ordering::Release);
        Ok(Region {
            bus: "heap".into(),
            path: PathBuf::from("<heap>"),
            file: None,
            backing: Backing::Heap(buf),
            mem,
            geo: info.geometry(),
            info,
        })
    }

    /// Test and fuzzing entry point: validates `bytes` as a whole bus file,
    /// exactly as opening a file does, and returns a heap region holding a
    /// copy of them (liveness locks always report alive), so that the ring
    /// protocol can run over arbitrary bytes.
    #[doc(hidden)]
    #[cfg(not(loom))]
    pub fn from_bytes(bytes: &[u8]) -> Result<Region> {
        let (buf, mem) = HeapBuf::zeroed(bytes.len());
        mem.copy_in(0, bytes);
        let path = PathBuf::from("<bytes>");
        let info = validate_header(&mem, bytes.len() as u64, "bytes", &path)?;
        Ok(Region {
            bus: "bytes".into(),
            path,
            file: None,
            backing: Backing::Heap(buf),
            mem,
            geo: info.geometry(),
            info,
        })
    }

    /// Test and fuzzing entry point: a copy of every byte of the region.
    #[doc(hidden)]
    #[cfg(not(loom))]
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.mem.len];
        self.mem.copy_out(0, &mut out);
        out
    }

    /// Another view of the same heap region (for a second handle in tests);
    /// `None` for a file-backed region (open the file again instead).
    pub fn share_heap(&self) -> Option<Region> {
        match &self.backing {
            Backing::Heap(buf) => Some(Region {
                bus: self.bus.clone(),
                path: self.path.clone(),
                file: None,
                backing: Backing::Heap(buf.clone()),
                mem: self.mem,
                info: self.info.clone(),
                geo: self.geo,
            }),
            Backing::Map(_) => None,
        }
    }

    /// The bus name.
    pub fn bus(&self) -> &str {
        &self.bus
    }
    /// The bus file.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The validated header.
    pub fn info(&self) -> &HeaderInfo {
        &self.info
    }

    /// msync the whole mapping.
    pub(crate) fn flush(&self) -> Result<()> {
        if let Backing::Map(map) = &self.backing {
            // SAFETY: the mapping is ours, page-aligned, and `len` bytes long.
            unsafe { os::msync(map.as_mut_ptr(), map.len()) }
                .map_err(|e| Error::io(&self.bus, &self.path, "msync", e))?;
        }
        Ok(())
    }

    pub(crate) fn corrupt(&self, what: impl Into<String>) -> Error {
        Error::corrupt(&self.bus, &self.path, what)
    }

    /// The error for a bus whose file was removed under its peers.
    pub(crate) fn removed(&self) -> Error {
        Error::BusRemoved { bus: self.bus.clone(), path: self.path.clone() }
    }

    /// The frame header at `pos` (its offset rounded down to the frame
    /// alignment, so a bogus position still lands inside the data region).
    #[inline]
    pub(crate) fn frame(&self, pos: u64) -> Fields<'_> {
        let off = self.info.data_offset as usize + (self.geo.offset(pos) & !(FRAME_ALIGN as usize - 1));
        Fields::new(&self.mem, off, FRAME_HEADER)
    }

    /// Our own peer slot, from the record `slot(slot)` made once at attach
    /// (kept by the handle): no index arithmetic or bounds check per access.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn own_slot(&self, own: &OwnSlot) -> Fields<'_> {
        Fields { base: own.0, _region: std::marker::PhantomData }
    }

    /// Under loom: `slot`.
    #[cfg(loom)]
    pub(crate) fn own_slot(&self, own: &OwnSlot) -> Fields<'_> {
        self.slot(own.0)
    }

    /// The handle's record of its own slot (see `own_slot`).
    #[cfg(not(loom))]
    pub(crate) fn own_slot_record(&self, slot: u32) -> OwnSlot {
        OwnSlot(self.slot(slot).base)
    }

    /// Under loom: the slot number.
    #[cfg(loom)]
    pub(crate) fn own_slot_record(&self, slot: u32) -> OwnSlot {
        OwnSlot(slot)
    }

    /// Peer slot `slot` (must be below `peer_slots`: checked).
    #[inline]
    pub(crate) fn slot(&self, slot: u32) -> Fields<'_> {
        let slot = slot.min(self.info.peer_slots - 1) as usize;
        let off = self.info.peer_offset as usize + slot * PEER_SLOT_SIZE;
        Fields::new(&self.mem, off, PEER_SLOT_SIZE)
    }

    /// Byte offset of the data region at `pos`.
    #[inline]
    pub(crate) fn data_off(&self, pos: u64) -> usize {
        self.info.data_offset as usize + self.geo.offset(pos)
    }
}

fn write_header(mem: &Mem, info: &HeaderInfo, page: usize) {
    let r = Ordering::Relaxed;
    mem.u64(OFF_MAGIC).store(MAGIC, r);
    mem.u32(OFF_VERSION).store(info.version, r);
    mem.u32(OFF_READY).store(0, r);
    mem.u64(OFF_FINGERPRINT).store(fingerprint(page), r);
    mem.u32(OFF_HEADER_SIZE).store(HEADER_SIZE as u32, r);
    mem.u32(OFF_PAGE_SIZE).store(page as u32, r);
    mem.u64(OFF_CAPACITY).store(info.capacity, r);
    mem.u32(OFF_MAX_MESSAGE).store(info.max_message, r);
    mem.u32(OFF_POLICY).store(info.overflow.to_raw(), r);
    mem.u32(OFF_FLAGS).store(if info.persistent { FLAG_PERSISTENT } else { 0 }, r);
    mem.u32(OFF_PEER_SLOTS).store(info.peer_slots, r);
    mem.u64(OFF_PEER_OFFSET).store(info.peer_offset, r);
    mem.u64(OFF_DATA_OFFSET).store(info.data_offset, r);
    mem.u64(OFF_FILE_LEN).store(info.file_len, r);
    mem.u64(OFF_INITIAL_POSITION).store(info.initial_position, r);
    mem.u32(OFF_CREATOR_PID).store(info.creator_pid, r);
    mem.u64(OFF_CREATED_NS).store(info.created_unix_ns, r);
    mem.u32(OFF_EVICT_AFTER_MS).store(info.evict_after_ms, r);
    mem.u128(OFF_TAIL).store(u128::from(info.initial_position), r);
    // Hints start out pointing before the first position: stale for every boundary.
    let stale = info.initial_position.wrapping_sub(info.capacity);
    for i in 0..HINTS {
        mem.u64(OFF_HINTS + i * 8).store(stale, r);
    }
    // The data region is zero-filled, and a zero stamp would look like a
    // committed frame at position 0: stamp offset 0 with a past position.
    mem.u64(info.data_offset as usize).store(stale, r);
}

/// Validates the header of a mapped file of `size` bytes: magic, version,
/// fingerprint, readiness and every size field. Never trusts a value before
/// checking it.
pub(crate) fn validate_header(mem: &Mem, size: u64, bus: &str, path: &Path) -> Result<HeaderInfo> {
    let r = Ordering::Relaxed;
    let corrupt = |what: String| Err(Error::corrupt(bus, path, what));
    if size < HEADER_SIZE as u64 || size > mem.len as u64 {
        return corrupt(format!("the file is {size} bytes, shorter than the {HEADER_SIZE}-byte header"));
    }
    if mem.u64(OFF_MAGIC).load(r) != MAGIC {
        return Err(Error::Foreign { bus: bus.into(), path: path.into() });
    }
    let version = mem.u32(OFF_VERSION).load(r);
    if version != LAYOUT_VERSION {
        return Err(Error::Version { bus: bus.into(), path: path.into(), found: version, supported: LAYOUT_VERSION });
    }
    // SYNC POINT with the Release store of `ready` in `Region::create`.
    let ready = mem.u32(OFF_READY).load(Ordering::Acquire);
    if ready != 1 {
        return corrupt(format!("its ready word is {ready}: the creator never finished it"));
    }
    let page = mem.u32(OFF_PAGE_SIZE).load(r) as usize;
    if page != os::page_size() {
        return corrupt(format!("it was made for page size {page}, this machine uses {}", os::page_size()));
    }
    if mem.u64(OFF_FINGERPRINT).load(r) != fingerprint(page) {
        return corrupt("its layout fingerprint differs from this build's (another shmbus build or byte order)".into());
    }
    if mem.u32(OFF_HEADER_SIZE).load(r) as usize != HEADER_SIZE {
        return corrupt(format!("header size {} is not {HEADER_SIZE}", mem.u32(OFF_HEADER_SIZE).load(r)));
    }
    let capacity = mem.u64(OFF_CAPACITY).load(r);
    if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        return corrupt(format!("capacity {capacity} is not a power of two between {MIN_CAPACITY} and {MAX_CAPACITY}"));
    }
    let max_message = mem.u32(OFF_MAX_MESSAGE).load(r);
    if max_message == 0 || u64::from(max_message) > max_message_for(capacity) {
        return corrupt(format!("max_message {max_message} does not fit capacity {capacity}"));
    }
    let policy = mem.u32(OFF_POLICY).load(r);
    let Some(overflow) = Overflow::from_raw(policy) else {
        return corrupt(format!("unknown overflow policy {policy}"));
    };
    let flags = mem.u32(OFF_FLAGS).load(r);
    if flags & !FLAG_PERSISTENT != 0 {
        return corrupt(format!("unknown header flags {flags:#x}"));
    }
    let peer_slots = mem.u32(OFF_PEER_SLOTS).load(r);
    if peer_slots == 0 || peer_slots > MAX_PEERS {
        return corrupt(format!("peer slot count {peer_slots} is not between 1 and {MAX_PEERS}"));
    }
    let peer_offset = mem.u64(OFF_PEER_OFFSET).load(r);
    if peer_offset != HEADER_SIZE as u64 {
        return corrupt(format!("peer table offset {peer_offset} is not {HEADER_SIZE}"));
    }
    let data_off = mem.u64(OFF_DATA_OFFSET).load(r);
    if data_off != data_offset(peer_slots, page) {
        return corrupt(format!("data offset {data_off} does not follow a table of {peer_slots} slots"));
    }
    let file_len = mem.u64(OFF_FILE_LEN).load(r);
    if file_len != data_off + capacity {
        return corrupt(format!("recorded length {file_len} is not data offset {data_off} + capacity {capacity}"));
    }
    if size != file_len {
        return corrupt(format!(
            "the file is {size} bytes but its header describes {file_len} (truncated or extended by something else)"
        ));
    }
    let initial_position = mem.u64(OFF_INITIAL_POSITION).load(r);
    if initial_position & (capacity - 1) != 0 {
        return corrupt(format!("initial position {initial_position:#x} is not a lap boundary"));
    }
    Ok(HeaderInfo {
        version,
        capacity,
        max_message,
        overflow,
        persistent: flags & FLAG_PERSISTENT != 0,
        peer_slots,
        peer_offset,
        data_offset: data_off,
        file_len,
        initial_position,
        creator_pid: mem.u32(OFF_CREATOR_PID).load(r),
        created_unix_ns: mem.u64(OFF_CREATED_NS).load(r),
        evict_after_ms: mem.u32(OFF_EVICT_AFTER_MS).load(r),
    })
}
