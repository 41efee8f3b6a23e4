//! A handle on a bus: one open file description (carrying this handle's
//! locks), one mapping, one peer slot. Dropping it detaches.

use std::path::Path;

use crate::config::{BusConfig, PeerKind};
use crate::error::{Error, Result};
use crate::layout::*;
use crate::os::{self, LockKind};
use crate::path::{bus_path, prepare_dir, resolve_dir, validate_name, Trust};
use crate::region::{Created, HeaderInfo, Region};

/// An attached peer of a bus.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmbus_core::{Bus, BusConfig, PeerKind};
/// let dir = tempfile::tempdir()?;
/// let cfg = BusConfig::default().dir(dir.path());
/// let bus = Bus::open_or_create("ticks", &cfg, PeerKind::Publisher)?;
/// assert!(bus.path().exists());
/// drop(bus); // the last peer out removes a non-persistent bus
/// assert!(!dir.path().join("ticks.bus").exists());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Bus {
    pub(crate) region: Region,
    pub(crate) slot: u32,
    /// Our slot's record, checked once here (see `Region::own_slot`).
    pub(crate) own: crate::region::OwnSlot,
    pub(crate) kind: PeerKind,
    created: bool,
}

impl Bus {
    /// Our own peer slot.
    #[inline]
    pub(crate) fn own(&self) -> crate::region::Fields<'_> {
        self.region.own_slot(&self.own)
    }

    /// Attaches to the bus `name`, creating it with `cfg` if it does not exist.
    /// An existing bus is accepted whatever its settings, unless a setting
    /// `cfg` set explicitly differs ([`BusConfig::check_existing`]): then
    /// [`Error::Incompatible`] names both values.
    pub fn open_or_create(name: &str, cfg: &BusConfig, kind: PeerKind) -> Result<Bus> {
        validate_name(name)?;
        cfg.validate()?;
        let dir = resolve_dir(cfg);
        let trust = Trust::of(cfg);
        prepare_dir(name, &dir, true, trust)?;
        for _ in 0..16 {
            match Region::open(name, &dir, trust) {
                Ok(region) => {
                    cfg.check_existing(&region.bus, &region.path, &region.info)?;
                    region.check_type(cfg.message_type.as_ref())?;
                    return Bus::join(region, kind, false)?.declared(cfg);
                }
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            match Region::create(name, &dir, cfg)? {
                Created::New(region) => return Bus::join(region, kind, true)?.declared(cfg),
                Created::Exists => continue,
            }
        }
        Err(Error::Busy {
            bus: name.into(),
            path: bus_path(&dir, name),
            what: "the bus to stop being created and removed",
        })
    }

    /// Attaches to an existing bus; only `cfg`'s directory and shared group are read.
    pub fn attach(name: &str, cfg: &BusConfig, kind: PeerKind) -> Result<Bus> {
        validate_name(name)?;
        BusConfig::default().validate()?; // the platform checks (lock-free 128-bit CAS)
        let dir = resolve_dir(cfg);
        let trust = Trust::of(cfg);
        prepare_dir(name, &dir, false, trust).map_err(|e| match e {
            Error::UnsafeDir { ref reason, .. } if reason == "it does not exist" => {
                Error::NotFound { bus: name.into(), path: bus_path(&dir, name) }
            }
            other => other,
        })?;
        let region = Region::open(name, &dir, trust)?;
        region.check_type(cfg.message_type.as_ref())?;
        Bus::join(region, kind, false)?.declared(cfg)
    }

    /// Wraps a heap region (in-process tests): no file, no locks.
    pub fn heap(region: Region, kind: PeerKind) -> Result<Bus> {
        Bus::join(region, kind, false)
    }

    fn join(region: Region, kind: PeerKind, created: bool) -> Result<Bus> {
        let slot = region.alloc_slot(kind)?;
        let own = region.own_slot_record(slot);
        Ok(Bus { region, slot, own, kind, created })
    }

    /// Whether this handle's `open_or_create` created the bus file.
    pub fn created(&self) -> bool {
        self.created
    }

    /// The bus name.
    pub fn name(&self) -> &str {
        &self.region.bus
    }
    /// The bus file.
    pub fn path(&self) -> &Path {
        &self.region.path
    }
    /// The validated header.
    pub fn info(&self) -> &HeaderInfo {
        &self.region.info
    }
    /// This handle's peer slot.
    pub fn slot(&self) -> u32 {
        self.slot
    }
    /// Whether this handle publishes or subscribes.
    pub fn kind(&self) -> PeerKind {
        self.kind
    }
    /// msync the mapping: what was published is durable when the bus lives on disk.
    pub fn flush(&self) -> Result<()> {
        self.region.flush()
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let region = &self.region;
        region.free_slot(self.slot);
        if self.kind == PeerKind::Subscriber {
            // Our hold is gone: a publisher waiting for us may go on.
            crate::wait::wake(region.mem.u32(OFF_SPACE_FUTEX));
        }
        let Some(file) = &region.file else { return };
        // Last one out: only a handle that can take the attach byte
        // exclusively is alone. We drop our shared lock first, so that of two
        // peers detaching at once the later one always succeeds (the earlier
        // one's attempt fails while the other still holds its shared lock,
        // and leaves nothing held behind). Openers take the byte shared before
        // they look at the file and re-check the link count after, so none
        // can attach to a file that is being unlinked.
        os::ofd_unlock(file, LOCK_ATTACH);
        if !region.info.persistent && matches!(os::ofd_try_lock(file, LOCK_ATTACH, LockKind::Exclusive), Ok(true)) {
            unlink_if_same(&region.path, file);
        }
    }
}

/// Unlinks `path` only if it still names the file open as `file`.
pub(crate) fn unlink_if_same(path: &Path, file: &std::fs::File) -> bool {
    match (os::lstat(path), os::fstat(file)) {
        (Ok(a), Ok(b)) if a.dev == b.dev && a.ino == b.ino => std::fs::remove_file(path).is_ok(),
        _ => false,
    }
}

/// Creates the bus `name` without attaching to it (`shmbus create`). The file
/// stays until the last peer that attaches to it detaches (or for ever when
/// persistent). An existing bus is an error.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let cfg = shmbus::BusConfig::default().dir(dir.path());
/// let info = shmbus::create_bus("jobs", &cfg)?;
/// assert_eq!(info.capacity, 1 << 20);
/// assert!(shmbus::create_bus("jobs", &cfg).is_err());
/// # Ok(()) }
/// ```
pub fn create_bus(name: &str, cfg: &BusConfig) -> Result<HeaderInfo> {
    validate_name(name)?;
    cfg.validate()?;
    let dir = resolve_dir(cfg);
    prepare_dir(name, &dir, true, Trust::of(cfg))?;
    match Region::create(name, &dir, cfg)? {
        Created::New(region) => {
            region.declare_type(cfg.message_type.as_ref())?;
            Ok(region.info.clone())
        }
        Created::Exists => Err(Error::AlreadyExists { bus: name.into(), path: bus_path(&dir, name) }),
    }
}
