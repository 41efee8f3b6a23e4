//! What the caller set and what it left to defaults.
//!
//! A [`BusConfig`] records which settings were given explicitly. Two rules
//! follow, shared by the library and the CLI (which calls the same code):
//!
//! - **Unset sizes derive from set ones.** `capacity` alone gets the largest
//!   `max_message` that capacity allows, at most the 64 KiB default;
//!   `max_message` alone gets the smallest power-of-two capacity that holds it
//!   (a frame may take at most a quarter of the ring), at least the 1 MiB
//!   default. Both set: both are taken as given (and validated).
//! - **An existing bus is accepted whatever its settings**, unless a setting
//!   the caller set explicitly contradicts it: then the error names the
//!   setting, both values, and suggests `attach`.

use std::path::Path;

use crate::config::BusConfig;
use crate::error::{Error, Result};
use crate::layout;
use crate::region::HeaderInfo;

/// Which settings of a [`BusConfig`] were given explicitly (a bit per setting).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Explicit(u8);

impl Explicit {
    pub(crate) const CAPACITY: u8 = 1;
    pub(crate) const MAX_MESSAGE: u8 = 2;
    pub(crate) const OVERFLOW: u8 = 4;
    pub(crate) const PERSISTENT: u8 = 8;
    pub(crate) const MODE: u8 = 16;
    pub(crate) const MAX_PEERS: u8 = 32;

    pub(crate) fn set(&mut self, bit: u8) {
        self.0 |= bit;
    }
    pub(crate) fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// The defaults the two sizes fall back to.
const DEFAULT_CAPACITY: u64 = 1 << 20;
const DEFAULT_MAX_MESSAGE: u32 = 64 << 10;

/// The smallest capacity whose `max_message_for` holds `max_message`, never
/// below the default; the default when no capacity the bus accepts holds it
/// (validation then reports the size).
fn capacity_for(max_message: u32) -> u64 {
    let need = (u64::from(max_message) + layout::FRAME_HEADER as u64) * 4;
    let cap = need.next_power_of_two().max(DEFAULT_CAPACITY);
    if cap <= layout::MAX_CAPACITY && u64::from(max_message) <= layout::max_message_for(cap) {
        cap
    } else {
        DEFAULT_CAPACITY
    }
}

impl BusConfig {
    /// Recomputes whichever of capacity and max_message was not set from the
    /// one that was (called by both setters, so the order of calls does not matter).
    pub(crate) fn derive_sizes(&mut self) {
        let cap_set = self.explicit.has(Explicit::CAPACITY);
        let max_set = self.explicit.has(Explicit::MAX_MESSAGE);
        if cap_set && !max_set {
            let fits = layout::max_message_for(self.capacity);
            self.max_message = u32::try_from(fits).unwrap_or(u32::MAX).clamp(1, DEFAULT_MAX_MESSAGE);
        } else if max_set && !cap_set {
            self.capacity = capacity_for(self.max_message);
        }
    }

    /// Checks the settings given explicitly in this config against an existing
    /// bus (`info`, read from the file at `path`): `Ok` when none contradicts
    /// it, else [`Error::Incompatible`] naming the setting and both values.
    /// Settings left to their defaults are never compared.
    ///
    /// `open_or_create` calls this before attaching; the CLI calls it for
    /// `pub`/`sub` options, so the library and the CLI follow one rule.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmbus::{create_bus, BusConfig, Error};
    /// # let dir = tempfile::tempdir()?;
    /// let base = BusConfig::default().dir(dir.path());
    /// let info = create_bus("small", &base.clone().capacity(64 << 10))?;
    /// let path = dir.path().join("small.bus");
    /// base.check_existing("small", &path, &info)?; // nothing set: anything goes
    /// let err = base.clone().capacity(1 << 20).check_existing("small", &path, &info).unwrap_err();
    /// assert!(matches!(err, Error::Incompatible { field: "capacity", .. }));
    /// # Ok(()) }
    /// ```
    pub fn check_existing(&self, bus: &str, path: &Path, info: &HeaderInfo) -> Result<()> {
        let diff = |field, existing: String, requested: String| {
            Err(Error::Incompatible { bus: bus.to_owned(), path: path.to_owned(), field, existing, requested })
        };
        let e = self.explicit;
        if e.has(Explicit::CAPACITY) && info.capacity != self.capacity {
            return diff("capacity", bytes(info.capacity), bytes(self.capacity));
        }
        if e.has(Explicit::MAX_MESSAGE) && info.max_message != self.max_message {
            return diff("max_message", bytes(info.max_message.into()), bytes(self.max_message.into()));
        }
        if e.has(Explicit::OVERFLOW) && info.overflow != self.overflow {
            return diff("overflow", info.overflow.to_string(), self.overflow.to_string());
        }
        if e.has(Explicit::PERSISTENT) && info.persistent != self.persistent {
            return diff("persistent", info.persistent.to_string(), self.persistent.to_string());
        }
        if e.has(Explicit::MAX_PEERS) && info.peer_slots != self.max_peers {
            return diff("max_peers", info.peer_slots.to_string(), self.max_peers.to_string());
        }
        if e.has(Explicit::MODE) {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path) {
                let existing = meta.permissions().mode() & 0o777;
                if existing != self.mode {
                    return diff("mode", format!("{existing:04o}"), format!("{:04o}", self.mode));
                }
            }
        }
        Ok(())
    }

    /// Whether `capacity` was set explicitly (else it is the default or derived from `max_message`).
    pub fn is_capacity_set(&self) -> bool {
        self.explicit.has(Explicit::CAPACITY)
    }
    /// Whether `max_message` was set explicitly (else it is the default or derived from `capacity`).
    pub fn is_max_message_set(&self) -> bool {
        self.explicit.has(Explicit::MAX_MESSAGE)
    }
}

/// A size for an error message: `65536 (64 KiB)`.
fn bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if n >= unit && n.is_multiple_of(unit) {
            return format!("{n} ({} {name})", n / unit);
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_alone_works_for_every_capacity_the_bus_accepts() {
        let mut cap = layout::MIN_CAPACITY;
        while cap <= layout::MAX_CAPACITY {
            let cfg = BusConfig::default().capacity(cap);
            cfg.validate().unwrap_or_else(|e| panic!("capacity {cap}: {e}"));
            assert!(cfg.get_max_message() <= DEFAULT_MAX_MESSAGE);
            assert!(u64::from(cfg.get_max_message()) <= layout::max_message_for(cap));
            cap *= 2;
        }
        assert_eq!(BusConfig::default().capacity(1 << 16).get_max_message(), (1 << 14) - 32);
        assert_eq!(BusConfig::default().capacity(1 << 24).get_max_message(), DEFAULT_MAX_MESSAGE);
    }

    #[test]
    fn max_message_alone_picks_a_capacity_that_fits() {
        for m in [1u32, 100, 64 << 10, 1 << 20, (1 << 20) + 1, 100 << 20, u32::MAX] {
            let cfg = BusConfig::default().max_message(m);
            cfg.validate().unwrap_or_else(|e| panic!("max_message {m}: {e}"));
            assert!(cfg.get_capacity() >= DEFAULT_CAPACITY);
            assert!(u64::from(m) <= layout::max_message_for(cfg.get_capacity()));
            // The smallest that fits (above the default).
            let half = cfg.get_capacity() / 2;
            assert!(half < DEFAULT_CAPACITY || u64::from(m) > layout::max_message_for(half), "{m}");
        }
    }

    #[test]
    fn order_of_setters_does_not_matter_and_both_set_are_taken_as_given() {
        let a = BusConfig::default().capacity(1 << 16).max_message(100);
        let b = BusConfig::default().max_message(100).capacity(1 << 16);
        assert_eq!((a.get_capacity(), a.get_max_message()), (1 << 16, 100));
        assert_eq!(a, b);
        let c = BusConfig::default().capacity(1 << 16).max_message(1 << 20);
        assert!(c.validate().is_err(), "both set explicitly: a contradiction is reported");
    }

    #[test]
    fn sizes_in_messages() {
        assert_eq!(bytes(65536), "65536 (64 KiB)");
        assert_eq!(bytes(1 << 20), "1048576 (1 MiB)");
        assert_eq!(bytes(100), "100");
    }
}
