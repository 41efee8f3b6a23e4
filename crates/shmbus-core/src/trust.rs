//! Who is trusted: the rules that keep another local user from planting a
//! bus directory, a symbolic link to one, or a bus file, and so reading or
//! forging your messages (docs/architecture.md, "Who is trusted").
//!
//! "You" is the effective uid, the owner of every file this process creates.
//!
//! - **Directory.** Used when it is owned by you and not writable by others.
//!   The one exception is a *group directory*: owned by root, its group the
//!   one the configuration shares with ([`BusConfig::share_with_group`]),
//!   with the setgid bit (files created in it get its group) and the sticky
//!   bit (members cannot remove or rename each other's files), and not
//!   writable by others (e.g. `root:trading 3770`). Everything else is
//!   refused: another user's directory, a world-writable one with or without
//!   the sticky bit (`/tmp` and `/dev/shm` themselves), a root-owned one that
//!   is not such a group directory.
//! - **Symbolic link.** A link at the directory's path is followed only when
//!   the link itself is owned by you or by root, hop by hop (at most 40
//!   hops); the directory it finally leads to is judged as above. A link
//!   another user owns is refused even when it points at your own directory:
//!   its owner could point it elsewhere at any time.
//! - **Bus file.** Opened with `O_NOFOLLOW` (a symlink is refused) and judged
//!   by `fstat` on the open descriptor before anything is mapped, so nothing
//!   can be swapped in between: it must be a regular file (checked by the
//!   caller) owned by you, or its group must be the one the configuration
//!   shares with.
//!
//! Only the last component of the directory's path (and the links it leads
//! through) is judged; its ancestors are whatever the user chose. The bus
//! file check is what keeps traffic private even if a directory is swapped
//! after it was judged: a file we create is ours (mode 0600 unless
//! configured), and a file someone else made is refused.

use std::path::{Component, Path, PathBuf};

use crate::config::BusConfig;
use crate::error::{Error, Result};
use crate::os::{self, Stat};

/// The most symbolic links followed from a bus directory's path (as `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// Whom a handle trusts: the effective uid, and the group the configuration shares with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Trust {
    pub(crate) uid: u32,
    pub(crate) group: Option<u32>,
}

impl Trust {
    /// This process, with `cfg`'s shared group.
    pub(crate) fn of(cfg: &BusConfig) -> Trust {
        Trust { uid: os::geteuid(), group: cfg.share_group }
    }
}

/// The gid of the group named `name`, or `name` itself when it is a number;
/// `None` when the system knows no such group. For
/// [`BusConfig::share_with_group`] when a group is given by name.
///
/// ```
/// assert_eq!(shmbus_core::group_id("0"), Some(0));
/// assert_eq!(shmbus_core::group_id("no-such-group-here"), None);
/// ```
pub fn group_id(name: &str) -> Option<u32> {
    name.parse().ok().or_else(|| os::group_id(name))
}

/// What the directory rules say of one directory (not a link).
#[derive(Clone, Debug, PartialEq, Eq)]
enum DirVerdict {
    Trusted,
    NotADirectory(&'static str),
    /// Writable by others (mode given), sticky or not.
    WorldWritable(u32),
    /// Owned by someone else; the reason says why the exception does not apply.
    Owner(String),
}

/// The directory rules, over the directory's own `lstat`.
fn judge_dir(st: &Stat, t: Trust) -> DirVerdict {
    if !st.is_dir() {
        return DirVerdict::NotADirectory(st.kind());
    }
    let mode = st.mode & 0o7777;
    let group_dir_bits = st.mode & (libc::S_ISGID | libc::S_ISVTX) == libc::S_ISGID | libc::S_ISVTX;
    if st.uid == t.uid || (st.uid == 0 && t.group == Some(st.gid) && group_dir_bits && mode & 0o002 == 0) {
        return if mode & 0o002 != 0 { DirVerdict::WorldWritable(mode) } else { DirVerdict::Trusted };
    }
    let me = t.uid;
    if st.uid != 0 {
        return DirVerdict::Owner(format!(
            "not by you (uid {me}): another user may have planted it to read your messages; use a directory \
             of your own (the default /dev/shm/shmbus-<uid> is created 0700 for you)"
        ));
    }
    let group = describe_group(st.gid);
    let why = match t.group {
        None => format!(
            "not by you (uid {me}), and the configuration shares with no group; a root-owned directory is used \
             only as a group directory: its group ({group}) shared with by BusConfig::share_with_group \
             (--share-group in the CLI), and mode 3770 (setgid and sticky, not writable by others); use a \
             directory of your own otherwise"
        ),
        Some(g) if g != st.gid => format!(
            "not by you (uid {me}), and its group is {group}, not the group the configuration shares with \
             ({}); a root-owned directory is used only as a group directory of that group",
            describe_group(g)
        ),
        Some(_) => format!(
            "not by you (uid {me}); a root-owned group directory must have the setgid and sticky bits and \
             must not be writable by others (e.g. mode 3770), and its mode is {mode:o}"
        ),
    };
    DirVerdict::Owner(why)
}

/// "gid 1234 (trading)", or "gid 1234" when the group has no name.
fn describe_group(gid: u32) -> String {
    match os::group_name(gid) {
        Some(name) => format!("gid {gid} ({name})"),
        None => format!("gid {gid}"),
    }
}

/// Checks the bus directory `dir` (which exists): follows symbolic links
/// owned by you or root, then applies the directory rules to what they lead to.
pub(crate) fn check_dir(dir: &Path, t: Trust) -> Result<()> {
    // Without a trailing slash or `.` components, so that lstat sees a final
    // link instead of resolving it.
    let mut p: PathBuf = dir.components().filter(|c| *c != Component::CurDir).collect();
    if p.as_os_str().is_empty() {
        p = PathBuf::from(".");
    }
    for _ in 0..=MAX_LINKS {
        let st = os::lstat(&p).map_err(|e| Error::io("", &p, "inspect the bus directory", e))?;
        if st.is_symlink() {
            if st.uid != t.uid && st.uid != 0 {
                return Err(untrusted(
                    "",
                    &p,
                    "symbolic link to the bus directory",
                    st.uid,
                    format!(
                        "not by you (uid {}) or root, so it is not followed (its owner could point it anywhere); \
                         remove it if it is not yours, or configure the real directory",
                        t.uid
                    ),
                ));
            }
            let target = std::fs::read_link(&p).map_err(|e| Error::io("", &p, "read the link", e))?;
            p = p.parent().unwrap_or(Path::new("/")).join(target);
            continue;
        }
        let via = if p == dir { String::new() } else { format!(" (reached from {})", dir.display()) };
        return match judge_dir(&st, t) {
            DirVerdict::Trusted => Ok(()),
            DirVerdict::NotADirectory(kind) => {
                Err(Error::UnsafeDir { path: p, reason: format!("it is {kind}, not a directory{via}") })
            }
            DirVerdict::WorldWritable(mode) => Err(Error::UnsafeDir {
                path: p,
                reason: format!(
                    "it is writable by everyone (mode {mode:o}){via}: with or without the sticky bit, any \
                     local user could plant bus files in it; use a directory of your own (mode 0700) instead, \
                     such as the default /dev/shm/shmbus-<uid>"
                ),
            }),
            DirVerdict::Owner(reason) => Err(untrusted("", &p, "bus directory", st.uid, reason + &via)),
        };
    }
    Err(Error::UnsafeDir {
        path: dir.to_owned(),
        reason: format!("it leads through more than {MAX_LINKS} symbolic links"),
    })
}

/// Checks an open bus file by its `fstat` (the caller has checked it is a
/// regular file): owned by you, or of the group the configuration shares with.
pub(crate) fn check_file(bus: &str, path: &Path, st: &Stat, t: Trust) -> Result<()> {
    if st.uid == t.uid || t.group == Some(st.gid) {
        return Ok(());
    }
    let group = describe_group(st.gid);
    let reason = match t.group {
        None => format!(
            "not by you (uid {}), and the configuration shares with no group; another user may have planted \
             it to read or forge your messages: remove it if it is not yours, or, if you trust its group, \
             {group}, share with it (BusConfig::share_with_group({gid}), --share-group {gid} in the CLI)",
            t.uid,
            gid = st.gid
        ),
        Some(g) => format!(
            "not by you (uid {}), and its group is {group}, not the group the configuration shares with ({}): \
             another user may have planted it to read or forge your messages; remove it if it is not yours",
            t.uid,
            describe_group(g)
        ),
    };
    Err(untrusted(bus, path, "bus file", st.uid, reason))
}

fn untrusted(bus: &str, path: &Path, what: &'static str, owner: u32, reason: String) -> Error {
    Error::Untrusted {
        bus: bus.to_owned(),
        path: path.to_owned(),
        what,
        owner,
        owner_name: os::user_name(owner),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: u32 = 1000;
    const TEAM: u32 = 50;

    fn dir(uid: u32, gid: u32, mode: u32) -> Stat {
        Stat { dev: 0, ino: 0, size: 0, nlink: 2, mode: libc::S_IFDIR | mode, uid, gid }
    }

    fn owner_refused(v: DirVerdict) -> bool {
        matches!(v, DirVerdict::Owner(_))
    }

    #[test]
    fn directory_rules() {
        let alone = Trust { uid: ME, group: None };
        let team = Trust { uid: ME, group: Some(TEAM) };
        // Your own directory, whatever its group bits; not world-writable.
        for mode in [0o700, 0o750, 0o770, 0o2770, 0o3770] {
            assert_eq!(judge_dir(&dir(ME, ME, mode), alone), DirVerdict::Trusted, "{mode:o}");
        }
        for mode in [0o777, 0o1777, 0o703] {
            assert_eq!(judge_dir(&dir(ME, ME, mode), alone), DirVerdict::WorldWritable(mode), "{mode:o}");
        }
        // Another user's directory: never, shared group or not.
        for t in [alone, team] {
            assert!(owner_refused(judge_dir(&dir(65534, TEAM, 0o3770), t)));
            assert!(owner_refused(judge_dir(&dir(65534, ME, 0o700), t)));
        }
        // Root-owned: only a setgid+sticky group directory of the shared group, not world-writable.
        assert_eq!(judge_dir(&dir(0, TEAM, 0o3770), team), DirVerdict::Trusted);
        assert_eq!(judge_dir(&dir(0, TEAM, 0o3750), team), DirVerdict::Trusted);
        assert!(owner_refused(judge_dir(&dir(0, TEAM, 0o3770), alone)));
        assert!(owner_refused(judge_dir(&dir(0, TEAM + 1, 0o3770), team)));
        for mode in [0o770, 0o1770, 0o2770, 0o3777, 0o1777, 0o755] {
            assert!(owner_refused(judge_dir(&dir(0, TEAM, mode), team)), "{mode:o}");
        }
        // /tmp and /dev/shm themselves (root 1777): refused for everyone, root included.
        assert!(owner_refused(judge_dir(&dir(0, 0, 0o1777), Trust { uid: ME, group: Some(0) })));
        assert_eq!(judge_dir(&dir(0, 0, 0o1777), Trust { uid: 0, group: None }), DirVerdict::WorldWritable(0o1777));
        // Not a directory.
        let file = Stat { mode: libc::S_IFREG | 0o600, ..dir(ME, ME, 0) };
        assert_eq!(judge_dir(&file, alone), DirVerdict::NotADirectory("a regular file"));
    }

    #[test]
    fn file_rules() {
        let f = |uid, gid| Stat { dev: 0, ino: 0, size: 4096, nlink: 1, mode: libc::S_IFREG | 0o666, uid, gid };
        let p = Path::new("/x/b.bus");
        let alone = Trust { uid: ME, group: None };
        let team = Trust { uid: ME, group: Some(TEAM) };
        assert!(check_file("b", p, &f(ME, ME), alone).is_ok());
        assert!(check_file("b", p, &f(ME, TEAM + 1), team).is_ok());
        assert!(check_file("b", p, &f(65534, TEAM), team).is_ok());
        for (file, t) in [(f(65534, TEAM), alone), (f(65534, TEAM + 1), team), (f(0, 0), alone)] {
            let e = check_file("b", p, &file, t).unwrap_err();
            let Error::Untrusted { owner, what: "bus file", ref path, .. } = e else { panic!("{e:?}") };
            assert_eq!((owner, path.as_path()), (file.uid, p));
            let msg = e.to_string();
            assert!(msg.contains("/x/b.bus") && msg.contains(&format!("uid {}", file.uid)), "{msg}");
        }
    }

    /// A symlink owned by you to your own directory is followed (relative and
    /// absolute, two hops); a dangling one is an error naming the target.
    #[test]
    fn own_symlinks_are_followed() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, d.path().join("abs")).unwrap();
        std::os::unix::fs::symlink("abs", d.path().join("rel")).unwrap();
        let t = Trust { uid: os::geteuid(), group: None };
        for p in ["real", "abs", "rel", "rel/", "./rel"] {
            check_dir(&d.path().join(p), t).unwrap_or_else(|e| panic!("{p}: {e}"));
        }
        std::os::unix::fs::symlink("nowhere", d.path().join("dangling")).unwrap();
        assert!(check_dir(&d.path().join("dangling"), t).is_err());
        std::os::unix::fs::symlink("loop", d.path().join("loop")).unwrap();
        let e = check_dir(&d.path().join("loop"), t).unwrap_err();
        assert!(e.to_string().contains("symbolic links"), "{e}");
    }

    /// A directory that is not yours is refused with its owner named: a
    /// directory chowned to 65534 when running as root, else `/` (root's).
    #[test]
    fn directory_not_owned_by_you_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let me = os::geteuid();
        let (path, owner) = if me == 0 {
            std::os::unix::fs::chown(d.path(), Some(65534), Some(65534)).unwrap();
            (d.path().to_path_buf(), 65534)
        } else {
            (PathBuf::from("/"), 0)
        };
        let e = check_dir(&path, Trust { uid: me, group: None }).unwrap_err();
        assert!(matches!(e, Error::Untrusted { owner: o, what: "bus directory", .. } if o == owner), "{e:?}");
        assert!(e.to_string().contains(&format!("uid {owner}")), "{e}");
        // Through a link of your own it is refused all the same.
        let link = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(&path, link.path().join("l")).unwrap();
        let e = check_dir(&link.path().join("l"), Trust { uid: me, group: None }).unwrap_err();
        assert!(matches!(e, Error::Untrusted { .. }) && e.to_string().contains("reached from"), "{e}");
    }

    /// `/tmp` itself (root-owned, world-writable, sticky) is refused as a bus
    /// directory, as is a world-writable sticky directory of your own.
    #[test]
    fn world_writable_sticky_directory_is_refused() {
        let t = Trust { uid: os::geteuid(), group: None };
        let tmp = Path::new("/tmp");
        if os::lstat(tmp).is_ok_and(|st| st.is_dir() && st.mode & 0o1002 == 0o1002) {
            assert!(check_dir(tmp, t).is_err());
        }
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let e = check_dir(d.path(), t).unwrap_err();
        assert!(matches!(e, Error::UnsafeDir { .. }) && e.to_string().contains("1777"), "{e}");
    }
}
