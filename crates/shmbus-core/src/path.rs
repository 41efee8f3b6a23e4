//! Bus names and the directory that holds bus files.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::os;
pub(crate) use crate::trust::{check_dir, Trust};

/// The longest bus name.
pub const MAX_NAME_LEN: usize = 64;

/// Checks a bus name against `[A-Za-z0-9][A-Za-z0-9._-]{0,63}` before any system call.
///
/// ```
/// assert!(shmbus::validate_name("orders.v2").is_ok());
/// assert!(shmbus::validate_name("../etc").is_err());
/// assert!(shmbus::validate_name("a/b").is_err());
/// assert!(shmbus::validate_name("").is_err());
/// ```
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| Err(Error::InvalidName { name: name.to_owned(), reason });
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return bad("it is empty");
    }
    if bytes.len() > MAX_NAME_LEN {
        return bad("it is longer than 64 bytes");
    }
    if !bytes[0].is_ascii_alphanumeric() {
        return bad("it must start with a letter or a digit");
    }
    if let Some(&b) = bytes.iter().find(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))) {
        return if b == b'/' {
            bad("it contains '/'")
        } else if b.is_ascii_control() {
            bad("it contains a control character")
        } else {
            bad("it contains a character other than A-Z a-z 0-9 . _ -")
        };
    }
    Ok(())
}

/// The directory a config resolves to: `dir`, else `$SHMBUS_DIR`, else
/// `/dev/shm/shmbus-<uid>` on Linux when /dev/shm exists, else
/// `<temp dir>/shmbus-<uid>`. Nothing is created or checked here.
///
/// ```
/// let cfg = shmbus_core::BusConfig::default().dir("/var/tmp/buses");
/// assert_eq!(shmbus_core::resolve_dir(&cfg), std::path::PathBuf::from("/var/tmp/buses"));
/// ```
pub fn resolve_dir(cfg: &crate::BusConfig) -> PathBuf {
    if let Some(d) = &cfg.dir {
        return d.clone();
    }
    if let Some(d) = std::env::var_os("SHMBUS_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    default_dir()
}

/// The per-user default directory.
pub fn default_dir() -> PathBuf {
    let uid = os::getuid();
    let shm = Path::new("/dev/shm");
    if cfg!(target_os = "linux") && shm.is_dir() {
        shm.join(format!("shmbus-{uid}"))
    } else {
        std::env::temp_dir().join(format!("shmbus-{uid}"))
    }
}

/// Makes sure the directory exists (creating the default one 0700) and is
/// trusted (see [`crate::trust`]): a directory that is not yours (root-owned
/// group directories shared with by the configuration aside), a world-writable
/// one, or a symbolic link another user owns is refused. `name` is the bus
/// the directory is wanted for.
pub(crate) fn prepare_dir(name: &str, dir: &Path, create: bool, trust: Trust) -> Result<()> {
    match os::lstat(dir) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {
            if let Err(e) = os::mkdir_exact(dir, 0o700) {
                match e.raw_os_error() {
                    Some(libc::EEXIST) => {}
                    Some(libc::ENOENT) => {
                        return Err(Error::NoParentDir {
                            bus: name.to_owned(),
                            path: bus_path(dir, name),
                            parent: dir.parent().unwrap_or(dir).to_owned(),
                        })
                    }
                    _ => return Err(Error::io(name, dir, "create the bus directory", e)),
                }
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            return Err(Error::UnsafeDir { path: dir.to_owned(), reason: "it does not exist".into() })
        }
        Err(e) => return Err(Error::io(name, dir, "inspect the bus directory", e)),
    }
    check_dir(dir, trust)
}

/// `<dir>/<name>.bus`.
pub fn bus_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.bus"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "A-b_c.d", "0", &"x".repeat(64)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "-a", ".hidden", "a b", "a\nb", "é", &"x".repeat(65), "a\0b"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn world_writable_dir_is_refused_with_or_without_sticky_bit() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let t = Trust { uid: os::geteuid(), group: None };
        check_dir(d.path(), t).unwrap();
        for mode in [0o777, 0o1777] {
            std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(mode)).unwrap();
            let err = check_dir(d.path(), t).unwrap_err();
            assert!(matches!(err, Error::UnsafeDir { .. }) && err.to_string().contains("sticky"), "{err}");
        }
    }

    #[test]
    fn default_dir_is_created_0700_and_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("shmbus-x");
        let t = Trust { uid: os::geteuid(), group: None };
        assert!(prepare_dir("t", &dir, false, t).is_err());
        prepare_dir("t", &dir, true, t).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777, 0o700);
        prepare_dir("t", &dir, true, t).unwrap();
    }
}
