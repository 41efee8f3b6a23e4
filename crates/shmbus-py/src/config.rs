//! Keyword arguments to `BusConfig`, and opening a bus the way `shmbus pub`
//! and `shmbus sub` do: sizing options apply only when this call creates the
//! bus; given for an existing bus, each must match it (docs/cli.md).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use shmbus::{BusConfig, Error, HeaderInfo, Overflow, Publisher, StartAt, Subscriber, WaitStrategy};

/// The settings a Python caller gave (None: not given).
#[derive(Default, Clone)]
pub struct Opts {
    pub dir: Option<PathBuf>,
    pub capacity: Option<u64>,
    pub max_message: Option<u32>,
    pub overflow: Option<Overflow>,
    pub persistent: bool,
    pub mode: Option<u32>,
    pub max_peers: Option<u32>,
    pub wait: Option<WaitStrategy>,
}

/// Parses a `block`/`overwrite`-style word with the core's own message.
pub fn parse<T: FromStr<Err = String>>(s: &str) -> Result<T, Error> {
    s.parse().map_err(|what| Error::InvalidConfig { what })
}

impl Opts {
    /// The config that only locates the bus and says how to wait.
    pub fn base(&self) -> BusConfig {
        let mut cfg = BusConfig::default();
        if let Some(d) = &self.dir {
            cfg = cfg.dir(d);
        }
        if let Some(w) = self.wait {
            cfg = cfg.wait_strategy(w);
        }
        cfg
    }

    /// The config to create the bus with: the given options over the defaults.
    fn creation(&self) -> BusConfig {
        let mut cfg = self.base().persistent(self.persistent);
        if let Some(c) = self.capacity {
            cfg = cfg.capacity(c);
            if self.max_message.is_none() {
                // A small ring gets the largest message it can hold rather than an error.
                let fits = shmbus::core::layout::max_message_for(c);
                if u64::from(cfg.get_max_message()) > fits && fits > 0 {
                    cfg = cfg.max_message(u32::try_from(fits).unwrap_or(u32::MAX));
                }
            }
        }
        if let Some(m) = self.max_message {
            cfg = cfg.max_message(m);
        }
        if let Some(o) = self.overflow {
            cfg = cfg.overflow(o);
        }
        if let Some(m) = self.mode {
            cfg = cfg.mode(m);
        }
        if let Some(n) = self.max_peers {
            cfg = cfg.max_peers(n);
        }
        cfg
    }

    /// Checks every option given against an existing bus.
    fn check(&self, name: &str, path: &Path, info: &HeaderInfo) -> Result<(), Error> {
        let diff = |field, existing: String, requested: String| {
            Err(Error::Incompatible { bus: name.to_owned(), path: path.to_owned(), field, existing, requested })
        };
        if let Some(c) = self.capacity.filter(|&c| c != info.capacity) {
            return diff("capacity", info.capacity.to_string(), c.to_string());
        }
        if let Some(m) = self.max_message.filter(|&m| m != info.max_message) {
            return diff("max_message", info.max_message.to_string(), m.to_string());
        }
        if let Some(o) = self.overflow.filter(|&o| o != info.overflow) {
            return diff("overflow", info.overflow.to_string(), o.to_string());
        }
        if self.persistent && !info.persistent {
            return diff("persistent", "false".into(), "true".into());
        }
        if let Some(n) = self.max_peers.filter(|&n| n != info.peer_slots) {
            return diff("max_peers", info.peer_slots.to_string(), n.to_string());
        }
        if let Some(mode) = self.mode {
            if let Ok(meta) = std::fs::metadata(path) {
                let existing = meta.permissions().mode() & 0o777;
                if existing != mode {
                    return diff("mode", format!("{existing:04o}"), format!("{mode:04o}"));
                }
            }
        }
        Ok(())
    }
}

/// A handle that can be attached or created.
pub trait Handle: Sized {
    fn attach(name: &str, cfg: &BusConfig, start: StartAt) -> Result<Self, Error>;
    fn open_or_create(name: &str, cfg: &BusConfig, start: StartAt) -> Result<Self, Error>;
    fn info(&self) -> &HeaderInfo;
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

/// Attaches to `name`, or (when `create`) creates it with the options given.
pub fn open<H: Handle>(name: &str, o: &Opts, start: StartAt, create: bool) -> Result<H, Error> {
    let base = o.base();
    if !create {
        let h = H::attach(name, &base, start)?;
        o.check(name, h.path(), h.info())?;
        return Ok(h);
    }
    let create_cfg = o.creation();
    // Compare before attaching: a handle that attached and then detached
    // because of a mismatch could be the last peer out, and remove the bus.
    if let Ok(st) = shmbus::inspect(name, &base) {
        o.check(name, &st.path, &st.header)?;
    }
    for _ in 0..16 {
        match H::attach(name, &base, start) {
            Ok(h) => {
                o.check(name, h.path(), h.info())?;
                return Ok(h);
            }
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        match H::open_or_create(name, &create_cfg, start) {
            Ok(h) => {
                if h.info().creator_pid != std::process::id() {
                    o.check(name, h.path(), h.info())?;
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
        path: shmbus::core::bus_path(&shmbus::core::resolve_dir(&base), name),
        what: "the bus to stop being created and removed",
    })
}
