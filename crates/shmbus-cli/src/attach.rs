//! Opening a bus for `pub` and `sub`: sizing options apply only when the
//! command creates the bus; given for an existing bus, each must match it.

use std::path::Path;

use shmbus::{BusConfig, Error, HeaderInfo, Publisher, StartAt, Subscriber};

use crate::SizingArgs;

/// The config to create the bus with: the explicit options over the defaults
/// (the library derives an unset size from a set one, and remembers which were set).
pub fn creation_config(base: &BusConfig, s: &SizingArgs) -> Result<BusConfig, Error> {
    let mut cfg = base.clone();
    if s.persistent {
        cfg = cfg.persistent(true);
    }
    if let Some(c) = s.capacity {
        cfg = cfg.capacity(c);
    }
    if let Some(m) = s.max_message {
        let m = u32::try_from(m)
            .map_err(|_| Error::InvalidConfig { what: format!("max_message {m} is larger than {} bytes", u32::MAX) })?;
        cfg = cfg.max_message(m);
    }
    if let Some(o) = s.overflow {
        cfg = cfg.overflow(o);
    }
    if let Some(m) = s.mode {
        cfg = cfg.mode(m);
    }
    Ok(cfg)
}

/// Checks every explicitly given option against the existing bus: the
/// library's own rule ([`BusConfig::check_existing`]), so both agree.
pub fn check_explicit(name: &str, path: &Path, info: &HeaderInfo, s: &SizingArgs) -> Result<(), Error> {
    creation_config(&BusConfig::default(), s)?.check_existing(name, path, info)
}

/// A handle that can be attached or created.
pub trait Handle: Sized {
    /// Attaches to an existing bus.
    fn attach(name: &str, cfg: &BusConfig, start: StartAt) -> Result<Self, Error>;
    /// Attaches, creating the bus with `cfg` if needed.
    fn open_or_create(name: &str, cfg: &BusConfig, start: StartAt) -> Result<Self, Error>;
    /// The bus's header.
    fn info(&self) -> &HeaderInfo;
    /// The bus file.
    fn path(&self) -> &Path;
}

impl Handle for Publisher {
    fn attach(name: &str, cfg: &BusConfig, _: StartAt) -> Result<Self, Error> {
        Publisher::attach(name, cfg)
    }
    fn open_or_create(name: &str, cfg: &BusConfig, _: StartAt) -> Result<Self, Error> {
        Publisher::open_or_create(name, cfg)
    }
    fn info(&self) -> &HeaderInfo {
        Publisher::info(self)
    }
    fn path(&self) -> &Path {
        Publisher::path(self)
    }
}

impl Handle for Subscriber {
    fn attach(name: &str, cfg: &BusConfig, start: StartAt) -> Result<Self, Error> {
        Subscriber::attach(name, cfg, start)
    }
    fn open_or_create(name: &str, cfg: &BusConfig, start: StartAt) -> Result<Self, Error> {
        Subscriber::open_or_create(name, cfg, start)
    }
    fn info(&self) -> &HeaderInfo {
        Subscriber::info(self)
    }
    fn path(&self) -> &Path {
        Subscriber::path(self)
    }
}

/// Attaches to `name`, or creates it with the sizing options. `start` is
/// where a subscriber starts reading.
pub fn open<H: Handle>(name: &str, base: &BusConfig, s: &SizingArgs, start: StartAt) -> Result<H, Error> {
    let create_cfg = creation_config(base, s)?;
    // Compare before attaching: a handle that attached and then detached
    // because of a mismatch could be the last peer out, and remove the bus.
    match shmbus::inspect(name, base) {
        Ok(st) => check_explicit(name, &st.path, &st.header, s)?,
        Err(Error::NotFound { .. }) => {}
        // Attaching below reports it (or finds the bus repaired meanwhile).
        Err(_) => {}
    }
    for _ in 0..16 {
        match H::attach(name, base, start) {
            Ok(h) => {
                check_explicit(name, h.path(), h.info(), s)?;
                return Ok(h);
            }
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        match H::open_or_create(name, &create_cfg, start) {
            Ok(h) => {
                // Another process may have created it between our attach and
                // open_or_create with the same settings: then it is not ours.
                if h.info().creator_pid != std::process::id() {
                    check_explicit(name, h.path(), h.info(), s)?;
                }
                return Ok(h);
            }
            // Created meanwhile by another process with other settings:
            // attach to it and compare only what was asked for explicitly.
            Err(Error::Incompatible { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Busy {
        bus: name.to_owned(),
        path: shmbus::core::bus_path(&shmbus::core::resolve_dir(base), name),
        what: "the bus to stop being created and removed",
    })
}
