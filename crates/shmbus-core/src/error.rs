//! Every error the core can return.
//!
//! Each variant names the bus and the file it concerns and says what was
//! expected and what was found, so that the message alone tells a user what
//! to do next.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// An error from creating, attaching to, reading or removing a bus.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmbus::{BusConfig, Error, StartAt, Subscriber};
/// # let dir = tempfile::tempdir()?;
/// let cfg = BusConfig::default().dir(dir.path());
/// let err = Subscriber::attach("missing", &cfg, StartAt::Latest).unwrap_err();
/// assert!(matches!(err, Error::NotFound { .. }));
/// assert!(err.to_string().contains("missing"));
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The bus name is not `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`; nothing was touched.
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A configuration value is out of range; nothing was touched.
    InvalidConfig {
        /// What is wrong, with the value and the allowed range.
        what: String,
    },
    /// The bus directory cannot be used safely (owner, permissions, not a directory).
    UnsafeDir {
        /// The directory.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// No bus of that name exists in the directory.
    NotFound {
        /// The bus name.
        bus: String,
        /// The file that was looked for.
        path: PathBuf,
    },
    /// The filesystem refused access (open, create, lock).
    PermissionDenied {
        /// The bus name.
        bus: String,
        /// The file or directory concerned.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
    },
    /// The path exists but is not a regular file (a symlink, a directory, a device).
    NotABusFile {
        /// The bus name.
        bus: String,
        /// The path.
        path: PathBuf,
        /// What was found instead.
        found: &'static str,
    },
    /// The filesystem has no room for a bus of this size.
    NoSpace {
        /// The bus name.
        bus: String,
        /// The file being created.
        path: PathBuf,
        /// How many bytes were needed.
        needed: u64,
    },
    /// Any other system call failure.
    Io {
        /// The bus name (empty when no bus is concerned).
        bus: String,
        /// The file or directory concerned.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The file does not start with the shmbus magic: it is not a bus file.
    Foreign {
        /// The bus name.
        bus: String,
        /// The file.
        path: PathBuf,
    },
    /// The file was written by a build with another layout version.
    Version {
        /// The bus name.
        bus: String,
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The file is damaged: a size, offset or position in it is impossible.
    Corrupt {
        /// The bus name.
        bus: String,
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// The bus exists with settings other than those requested.
    Incompatible {
        /// The bus name.
        bus: String,
        /// The file.
        path: PathBuf,
        /// The setting that differs.
        field: &'static str,
        /// The value in the existing bus.
        existing: String,
        /// The value asked for.
        requested: String,
    },
    /// Every peer slot of the bus is taken by a live process.
    PeersFull {
        /// The bus name.
        bus: String,
        /// The file.
        path: PathBuf,
        /// The number of slots.
        slots: u32,
    },
    /// The bus was being created or removed by another process for longer than allowed.
    Busy {
        /// The bus name.
        bus: String,
        /// The file.
        path: PathBuf,
        /// What was waited for.
        what: &'static str,
    },
    /// `create` found a bus of that name already.
    AlreadyExists {
        /// The bus name.
        bus: String,
        /// The file.
        path: PathBuf,
    },
    /// Live peers are attached; the bus was not removed.
    InUse {
        /// The bus name.
        bus: String,
        /// The file.
        path: PathBuf,
    },
    /// The bus file this handle is attached to was removed (`shmbus rm
    /// --force`, `shmbus_core::remove` with `force`) while it was in use:
    /// nothing published on it reaches anyone any more.
    BusRemoved {
        /// The bus name.
        bus: String,
        /// The file it was.
        path: PathBuf,
    },
    /// A bus directory, a symbolic link leading to it, or a bus file is owned
    /// by someone this process does not trust, so another local user may have
    /// planted it to read or forge messages; it was not used (a refused bus
    /// file was not mapped). The rules are in docs/architecture.md.
    Untrusted {
        /// The bus name (empty when a directory or a link was refused).
        bus: String,
        /// The refused directory, link or file.
        path: PathBuf,
        /// What it is: "bus directory", "symbolic link to the bus directory" or "bus file".
        what: &'static str,
        /// Its owner's uid.
        owner: u32,
        /// Its owner's user name, when the system knows one.
        owner_name: Option<String>,
        /// Why it is not trusted, and what to do.
        reason: String,
    },
    /// The bus directory does not exist and cannot be created because its
    /// parent directory does not exist either (only the last component is created).
    NoParentDir {
        /// The bus name.
        bus: String,
        /// The bus file that was to be created.
        path: PathBuf,
        /// The missing parent directory.
        parent: PathBuf,
    },
    /// A subscriber declared a message type other than the one the bus's
    /// publishers declared (or a publisher declared one while another type is
    /// in use); the handle was not attached.
    TypeMismatch {
        /// The bus name.
        bus: String,
        /// The file.
        path: PathBuf,
        /// The type recorded in the bus (name, size, alignment, schema hash).
        existing: String,
        /// The type this handle declared.
        requested: String,
    },
}

impl Error {
    pub(crate) fn io(bus: &str, path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Self {
        let path = path.into();
        match source.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => {
                Error::PermissionDenied { bus: bus.to_owned(), path, op }
            }
            // Without a bus (listing a directory), a missing path is not a missing bus.
            Some(libc::ENOENT) if !bus.is_empty() => Error::NotFound { bus: bus.to_owned(), path },
            Some(libc::ELOOP) => Error::NotABusFile { bus: bus.to_owned(), path, found: "a symbolic link" },
            Some(libc::ENOSPC) | Some(libc::EFBIG) | Some(libc::EDQUOT) => {
                Error::NoSpace { bus: bus.to_owned(), path, needed: 0 }
            }
            _ => Error::Io { bus: bus.to_owned(), path, op, source },
        }
    }

    pub(crate) fn corrupt(bus: &str, path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Error::Corrupt { bus: bus.to_owned(), path: path.into(), what: what.into() }
    }

    /// True when the file is damaged, foreign, of another version or otherwise unreadable.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corrupt { .. } | Error::Foreign { .. } | Error::Version { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidName { name, reason } => write!(
                f,
                "invalid bus name {name:?}: {reason} (names are 1 to 64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit)"
            ),
            Error::InvalidConfig { what } => write!(f, "invalid bus configuration: {what}"),
            Error::UnsafeDir { path, reason } => {
                write!(f, "refusing bus directory {}: {reason}", path.display())
            }
            Error::NotFound { bus, path } => write!(
                f,
                "bus '{bus}' does not exist (no file {}); Publisher::open_or_create or Subscriber::open_or_create creates it (attach never does)",
                path.display()
            ),
            Error::PermissionDenied { bus, path, op } if bus.is_empty() => write!(
                f,
                "permission denied to {op} {} (check its owner and mode, or its directory's)",
                path.display()
            ),
            Error::PermissionDenied { bus, path, op } => write!(
                f,
                "bus '{bus}': permission denied to {op} {} (check the file's owner and mode, or the directory's)",
                path.display()
            ),
            Error::NotABusFile { bus, path, found } => write!(
                f,
                "bus '{bus}': {} is {found}, not a regular bus file; refusing to follow it (remove it if it is not yours)",
                path.display()
            ),
            Error::NoSpace { bus, path, needed } => {
                write!(f, "bus '{bus}': no space left to create {}", path.display())?;
                if *needed > 0 {
                    write!(f, " ({needed} bytes needed)")?;
                }
                write!(f, "; free space on that filesystem or choose a smaller capacity")
            }
            Error::Io { bus, path, op, source } => {
                if bus.is_empty() {
                    write!(f, "cannot {op} {}: {source}", path.display())
                } else {
                    write!(f, "bus '{bus}': cannot {op} {}: {source}", path.display())
                }
            }
            Error::Foreign { bus, path } => write!(
                f,
                "bus '{bus}': {} is not a shmbus bus file (wrong magic number)",
                path.display()
            ),
            Error::Version { bus, path, found, supported } => write!(
                f,
                "bus '{bus}' at {} has layout version {found}, this build reads version {supported}",
                path.display()
            ),
            Error::Corrupt { bus, path, what } => write!(
                f,
                "bus '{bus}' at {} is corrupt: {what} (remove it with shmbus::remove(\"{bus}\", &cfg, true))",
                path.display()
            ),
            Error::Incompatible { bus, path, field, existing, requested } => write!(
                f,
                "bus '{bus}' at {} exists with {field} {existing}, but {requested} was requested; leave {field} unset to accept the bus as it is, or use attach (Publisher::attach, Subscriber::attach), which reads no settings",
                path.display()
            ),
            Error::PeersFull { bus, path, slots } => write!(
                f,
                "bus '{bus}' at {}: all {slots} peer slots are taken by live processes",
                path.display()
            ),
            Error::BusRemoved { bus, path } => write!(
                f,
                "bus '{bus}' ({}) was removed while this handle was attached; attach again (open_or_create) to use a new bus of that name",
                path.display()
            ),
            Error::Busy { bus, path, what } => {
                write!(f, "bus '{bus}' at {}: timed out waiting for {what}", path.display())
            }
            Error::AlreadyExists { bus, path } => write!(
                f,
                "bus '{bus}' already exists at {} (attach to it with Publisher::attach or Subscriber::attach, or remove it with shmbus::remove)",
                path.display()
            ),
            Error::InUse { bus, path } => write!(
                f,
                "bus '{bus}' at {} has live peers attached; not removed (shmbus::remove with force = true removes it anyway)",
                path.display()
            ),
            Error::NoParentDir { bus, path, parent } => write!(
                f,
                "bus '{bus}' at {}: cannot create its directory because {} does not exist (only the last directory is created); create it first or choose another with BusConfig::dir",
                path.display(),
                parent.display()
            ),
            Error::TypeMismatch { bus, path, existing, requested } => write!(
                f,
                "bus '{bus}' at {} carries messages of type {existing}, but this handle declared {requested}; open it with the same type, or untyped",
                path.display()
            ),
            Error::Untrusted { bus, path, what, owner, owner_name, reason } => {
                if !bus.is_empty() {
                    write!(f, "bus '{bus}': ")?;
                }
                write!(f, "refusing {what} {}: it is owned by uid {owner}", path.display())?;
                if let Some(name) = owner_name {
                    write!(f, " ({name})")?;
                }
                write!(f, ", {reason}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Result alias for the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
