//! Issue 9, finding 7: another local user plants a directory, a symbolic link
//! or a bus file, and the bus refuses it (docs/architecture.md, "Who is
//! trusted"). Two real uids: the test runs as root and runs this same test
//! binary again as uid 65534 (`setpriv --reuid 65534 --regid 65534
//! --clear-groups`), once as the planter and once as the victim.
//!
//! Without root or without `setpriv` the test says why and returns (CI runs
//! as root, so it runs there).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use shmbus_core::{Bus, BusConfig, Error, PeerKind};
use shmbus_testkit::{args, finish, role, ARGS, ROLE};

const NOBODY: u32 = 65534;
const LIMIT: Duration = Duration::from_secs(60);

fn cfg(dir: &Path) -> BusConfig {
    BusConfig::default().dir(dir).capacity(4096).max_message(512)
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
}

fn mkdir(p: &Path, mode: u32, uid: u32, gid: u32) -> PathBuf {
    std::fs::create_dir(p).unwrap();
    chown(p, uid, gid);
    chmod(p, mode); // after chown: chown clears setgid
    p.to_path_buf()
}

/// A temporary tree uid 65534 can walk, holding a copy of this test binary
/// it can execute; `None` (with the reason printed) without root or setpriv.
fn setup(test: &str) -> Option<(tempfile::TempDir, PathBuf)> {
    // SAFETY: getuid cannot fail.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("{test}: skipped: needs root to run a child as uid {NOBODY} (CI runs as root)");
        return None;
    }
    let found = Command::new("setpriv").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !found.is_ok_and(|s| s.success()) {
        eprintln!("{test}: skipped: `setpriv` (util-linux) is not installed");
        return None;
    }
    let base = tempfile::tempdir().unwrap();
    chmod(base.path(), 0o755);
    let exe = base.path().join("planted-test");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    chmod(&exe, 0o755);
    Some((base, exe))
}

/// Runs `role` as uid/gid 65534 with no supplementary groups; its `RESULT:` lines.
fn as_nobody(exe: &Path, role: &str, args: &[&str]) -> Vec<String> {
    let id = NOBODY.to_string();
    let child = Command::new("setpriv")
        .args(["--reuid", &id, "--regid", &id, "--clear-groups"])
        .arg(exe)
        .args(["__child", "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE, role)
        .env(ARGS, args.join(" "))
        .env_remove("SHMBUS_DIR")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn setpriv");
    finish(child, LIMIT)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The variant, with the owner for `Untrusted`: `Untrusted:65534`, `UnsafeDir`, ...
fn kind(e: &Error) -> String {
    match e {
        Error::Untrusted { owner, .. } => format!("Untrusted:{owner}"),
        Error::UnsafeDir { .. } => "UnsafeDir".into(),
        Error::NotFound { .. } => "NotFound".into(),
        other => format!("{other:?}"),
    }
}

/// Asserts `e` is `Untrusted` for `what` at `path`, owned by `owner`, and that
/// its message names the path, the owner's uid and name, and a way out.
fn assert_untrusted(e: &Error, what: &str, path: &Path, owner: u32, name: &str) {
    let Error::Untrusted { what: w, path: p, owner: o, owner_name, .. } = e else { panic!("not Untrusted: {e:?}") };
    assert_eq!((*w, p.as_path(), *o, owner_name.as_deref()), (what, path, owner, Some(name)), "{e}");
    let msg = e.to_string();
    assert!(msg.contains(s(path)) && msg.contains(&format!("uid {owner} ({name})")), "{msg}");
    assert!(msg.contains("remove it") || msg.contains("use a directory of your own"), "{msg}");
}

/// The child entry point: does nothing unless started with a role.
#[test]
fn __child() {
    let Some(role) = role() else { return };
    let a = args();
    match role.as_str() {
        // plant-bus HOME NAME DEST: creates a bus in HOME (its own
        // directory), makes the file 0666 and moves it to DEST.
        "plant-bus" => {
            let (home, name, dest) = (Path::new(&a[0]), &a[1], Path::new(&a[2]));
            shmbus_core::create_bus(name, &cfg(home)).unwrap();
            let file = shmbus_core::bus_path(home, name);
            chmod(&file, 0o666);
            std::fs::rename(&file, dest).unwrap();
            println!("RESULT:planted {}", dest.display());
        }
        // plant-link LINK TARGET
        "plant-link" => {
            std::os::unix::fs::symlink(&a[1], &a[0]).unwrap();
            println!("RESULT:linked");
        }
        // plant-dir DIR: a directory of its own, 0777.
        "plant-dir" => {
            std::fs::create_dir(&a[0]).unwrap();
            chmod(Path::new(&a[0]), 0o777);
            println!("RESULT:made");
        }
        // open DIR NAME [GID]: attach then open_or_create (sharing with GID
        // when given); one line each, `ok` or `err <kind> <Display>`.
        "open" => {
            let mut c = cfg(Path::new(&a[0]));
            if let Some(gid) = a.get(2) {
                c = c.share_with_group(gid.parse().unwrap()).mode(0o660);
            }
            for what in ["attach", "open_or_create"] {
                let r = match what {
                    "attach" => Bus::attach(&a[1], &c, PeerKind::Subscriber),
                    _ => Bus::open_or_create(&a[1], &c, PeerKind::Publisher),
                };
                match r {
                    Ok(_) => println!("RESULT:{what} ok"),
                    Err(e) => println!("RESULT:{what} err {} {e}", kind(&e)),
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// Root is the victim: uid 65534 plants (1) the attack of the issue, a
/// symlink `shmbus-0` in a world-writable sticky directory (the stand-in for
/// /dev/shm) pointing at that directory, with a 0666 bus file in it; (2) a
/// symlink of its own to root's own directory; (3) a 0666 bus file in a
/// root-owned group directory it may write. Root refuses each, names the
/// path and the owner, and never writes to the planted file.
#[test]
fn root_refuses_what_another_uid_planted() {
    let Some((base, exe)) = setup("root_refuses_what_another_uid_planted") else { return };
    let b = base.path();
    let home = mkdir(&b.join("nobody-home"), 0o700, NOBODY, NOBODY);
    let shm = mkdir(&b.join("shm"), 0o1777, 0, 0);

    // (1) /dev/shm/shmbus-<uid> -> /dev/shm, with a planted secret.bus.
    as_nobody(&exe, "plant-bus", &[s(&home), "secret", s(&shm.join("secret.bus"))]);
    let link = shm.join("shmbus-0");
    as_nobody(&exe, "plant-link", &[s(&link), s(&shm)]);
    let before = std::fs::read(shm.join("secret.bus")).unwrap();
    for r in [
        Bus::open_or_create("secret", &cfg(&link), PeerKind::Publisher).map(drop),
        Bus::attach("secret", &cfg(&link), PeerKind::Subscriber).map(drop),
    ] {
        let e = r.expect_err("a symlinked directory planted by uid 65534 was followed");
        assert_untrusted(&e, "symbolic link to the bus directory", &link, NOBODY, "nobody");
    }
    assert_eq!(std::fs::read(shm.join("secret.bus")).unwrap(), before, "the planted file was written");

    // (1b) the same with a real directory owned by uid 65534.
    let theirs = shm.join("shmbus-0b");
    as_nobody(&exe, "plant-dir", &[s(&theirs)]);
    let e = Bus::open_or_create("x", &cfg(&theirs), PeerKind::Publisher).unwrap_err();
    assert_untrusted(&e, "bus directory", &theirs, NOBODY, "nobody");
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 0);

    // (2) a symlink owned by uid 65534 to root's own 0700 directory.
    let mine = mkdir(&b.join("mine"), 0o700, 0, 0);
    let link2 = shm.join("to-mine");
    as_nobody(&exe, "plant-link", &[s(&link2), s(&mine)]);
    let e = Bus::open_or_create("x", &cfg(&link2), PeerKind::Publisher).unwrap_err();
    assert_untrusted(&e, "symbolic link to the bus directory", &link2, NOBODY, "nobody");
    assert_eq!(std::fs::read_dir(&mine).unwrap().count(), 0);

    // (3) a bus file planted in a root-owned group directory (root:65534 3770).
    let team = mkdir(&b.join("team"), 0o3770, 0, NOBODY);
    let planted = team.join("orders.bus");
    as_nobody(&exe, "plant-bus", &[s(&home), "orders", s(&planted)]);
    assert_eq!(std::fs::metadata(&planted).unwrap().uid(), NOBODY);
    let before = std::fs::read(&planted).unwrap();
    for r in [
        Bus::open_or_create("orders", &cfg(&team), PeerKind::Publisher).map(drop),
        Bus::attach("orders", &cfg(&team), PeerKind::Subscriber).map(drop),
    ] {
        let e = r.expect_err("a bus file owned by uid 65534 was opened");
        assert_untrusted(&e, "bus file", &planted, NOBODY, "nobody");
        assert!(e.to_string().contains("share_with_group(65534)"), "{e}");
    }
    assert_eq!(std::fs::read(&planted).unwrap(), before, "the planted file was written");
    // Sharing with a group that is not the file's does not help either.
    let e = Bus::attach("orders", &cfg(&team).share_with_group(NOBODY - 1), PeerKind::Subscriber).unwrap_err();
    assert_untrusted(&e, "bus file", &planted, NOBODY, "nobody");

    // Sharing with the file's group, explicitly, is what lets root attach.
    let shared = cfg(&team).share_with_group(NOBODY);
    let sub = Bus::attach("orders", &shared, PeerKind::Subscriber).expect("shared with the file's group");
    assert_eq!(sub.path(), planted);
}

/// uid 65534 is the victim: root plants (1) a root-owned 0666 bus file in
/// 65534's own directory; (2) offers the world-writable sticky directory
/// itself as the bus directory; (3) a root-owned sticky group directory
/// without the configuration sharing with its group. uid 65534 refuses each.
/// A symlink root owns, to 65534's own directory, is followed.
#[test]
fn another_uid_refuses_what_root_planted() {
    let Some((base, exe)) = setup("another_uid_refuses_what_root_planted") else { return };
    let b = base.path();
    let home = mkdir(&b.join("nobody-home"), 0o700, NOBODY, NOBODY);
    let shm = mkdir(&b.join("shm"), 0o1777, 0, 0);
    let mine = mkdir(&b.join("root-own"), 0o700, 0, 0);

    // (1) a root-owned 0666 bus file moved into 65534's directory.
    shmbus_core::create_bus("rootplant", &cfg(&mine)).unwrap();
    let planted = home.join("rootplant.bus");
    std::fs::rename(shmbus_core::bus_path(&mine, "rootplant"), &planted).unwrap();
    chmod(&planted, 0o666);
    let before = std::fs::read(&planted).unwrap();
    let lines = as_nobody(&exe, "open", &[s(&home), "rootplant"]);
    assert_eq!(lines.len(), 2, "{lines:?}");
    for l in &lines {
        assert!(l.contains(" err Untrusted:0 ") && l.contains(s(&planted)) && l.contains("uid 0 (root)"), "{l}");
    }
    assert_eq!(std::fs::read(&planted).unwrap(), before, "the planted file was written");

    // (2) the world-writable sticky directory itself (like /dev/shm or /tmp).
    let lines = as_nobody(&exe, "open", &[s(&shm), "x"]);
    assert_eq!(lines.len(), 2, "{lines:?}");
    for l in &lines {
        assert!(l.contains(" err Untrusted:0 ") && l.contains(s(&shm)), "{l}");
    }
    assert!(!shm.join("x.bus").exists());

    // (3) a root-owned group directory, not shared with by the configuration.
    let team = mkdir(&b.join("team"), 0o3770, 0, NOBODY);
    let lines = as_nobody(&exe, "open", &[s(&team), "x"]);
    assert_eq!(lines.len(), 2, "{lines:?}");
    for l in &lines {
        assert!(l.contains(" err Untrusted:0 ") && l.contains(s(&team)) && l.contains("share_with_group"), "{l}");
    }
    assert!(!team.join("x.bus").exists());

    // (3b) The group directory with the configuration sharing its group: root
    // creates a 0660 bus there (the setgid bit gives it the group), 65534
    // attaches to it; without sharing, 65534 refuses root's file.
    let feed = shmbus_core::create_bus("feed", &cfg(&team).mode(0o660)).unwrap();
    assert!(!feed.persistent);
    assert_eq!(std::fs::metadata(team.join("feed.bus")).unwrap().gid(), NOBODY);
    let gid = NOBODY.to_string();
    let lines = as_nobody(&exe, "open", &[s(&team), "feed", &gid]);
    assert_eq!(lines, ["attach ok", "open_or_create ok"]);
    // The same group directory without the setgid and sticky bits is refused.
    chmod(&team, 0o770);
    let lines = as_nobody(&exe, "open", &[s(&team), "y", &gid]);
    assert!(lines.iter().all(|l| l.contains(" err Untrusted:0 ") && l.contains("3770")), "{lines:?}");
    assert!(!team.join("y.bus").exists());

    // A symlink owned by root, to 65534's own directory, is followed.
    let link = shm.join("shmbus-65534");
    std::os::unix::fs::symlink(&home, &link).unwrap();
    let lines = as_nobody(&exe, "open", &[s(&link), "fine"]);
    assert!(lines[0].starts_with("attach err NotFound ") && lines[0].contains(s(&link)), "{lines:?}");
    assert_eq!(lines[1], "open_or_create ok");
}
