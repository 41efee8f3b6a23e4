//! Opening a bus for `pub` and `sub`: sizing options apply only when the
//! command creates the bus; given for an existing bus, each must match it.

use std::path::Path;

use shmbus::{BusConfig, Error, HeaderInfo, Publisher, StartAt, Subscriber};

use crate::error::CliError;
use crate::units::{human_bytes, size_arg};
use crate::SizingArgs;

/// Checks the sizing options that could never make a bus: a usage error
/// (exit 2) naming the bus, its file and the allowed range. `exists` says
/// whether the bus is there already: then only values that are wrong on their
/// own are refused here (a max message that the default capacity could not
/// hold may fit the existing bus; what contradicts it is reported by
/// [`check_explicit`]).
pub fn check_values(name: &str, base: &BusConfig, s: &SizingArgs, exists: bool) -> Result<(), CliError> {
    use shmbus::core::layout::{max_message_for, MAX_CAPACITY, MIN_CAPACITY};
    let path = shmbus::core::bus_path(&shmbus::core::resolve_dir(base), name);
    let bad = |what: String| Err(CliError::usage(format!("bus '{name}' at {}: {what}", path.display())));
    if let Some(c) = s.capacity {
        if !c.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&c) {
            return bad(format!(
                "--capacity {} is not a power of two between {} and {} (e.g. 64KiB, 1MiB)",
                size_arg(c),
                human_bytes(MIN_CAPACITY),
                human_bytes(MAX_CAPACITY)
            ));
        }
    }
    if let Some(m) = s.max_message {
        let capacity = s.capacity.unwrap_or_else(|| BusConfig::default().get_capacity());
        let most =
            if s.capacity.is_some() || !exists { max_message_for(capacity) } else { max_message_for(MAX_CAPACITY) };
        if m == 0 || m > most {
            let ring = if s.capacity.is_some() || !exists {
                format!("a ring of {}", human_bytes(capacity))
            } else {
                "any ring".to_owned()
            };
            return bad(format!(
                "--max-message {} is not between 1 byte and {}, the most {ring} allows (a quarter of it minus a 32-byte frame header)",
                size_arg(m),
                size_arg(most)
            ));
        }
    }
    Ok(())
}

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
    if let Some(n) = s.max_peers {
        cfg = cfg.max_peers(n);
    }
    if let Some(e) = s.evict_after {
        cfg = cfg.evict_after(std::time::Duration::from_secs_f64(e));
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
pub fn open<H: Handle>(name: &str, base: &BusConfig, s: &SizingArgs, start: StartAt) -> Result<H, CliError> {
    // Compare before attaching: a handle that attached and then detached
    // because of a mismatch could be the last peer out, and remove the bus.
    match shmbus::inspect(name, base) {
        Ok(st) => {
            check_values(name, base, s, true)?;
            check_explicit(name, &st.path, &st.header, s)?;
        }
        Err(Error::NotFound { .. }) => check_values(name, base, s, false)?,
        // Attaching below reports it (or finds the bus repaired meanwhile).
        Err(_) => check_values(name, base, s, true)?,
    }
    let create_cfg = creation_config(base, s)?;
    Ok(attach_or_create(name, base, &create_cfg, s, start)?)
}

fn attach_or_create<H: Handle>(
    name: &str,
    base: &BusConfig,
    create_cfg: &BusConfig,
    s: &SizingArgs,
    start: StartAt,
) -> Result<H, Error> {
    for _ in 0..16 {
        match H::attach(name, base, start) {
            Ok(h) => {
                check_explicit(name, h.path(), h.info(), s)?;
                return Ok(h);
            }
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        match H::open_or_create(name, create_cfg, start) {
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
