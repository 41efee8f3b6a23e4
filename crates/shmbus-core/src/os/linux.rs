//! Linux: the only place that makes raw system calls (futex through
//! `linux-futex`, OFD locks, files and directories through libc).

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use linux_futex::{AsFutex, Shared, TimedWaitError};

/// Parks on a futex word in shared memory while it holds `expected`, for at
/// most `timeout` (`None`: until woken). Returns on wake-up, value change,
/// signal or timeout, and whether a signal interrupted it; the caller always
/// re-checks its condition.
#[cfg_attr(loom, allow(dead_code))] // under loom, `sync::os` emulates it
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
    // A shared futex (no FUTEX_PRIVATE_FLAG): it wakes waiters in other processes.
    let futex = AsFutex::<Shared>::as_futex(word);
    match timeout {
        Some(t) => matches!(futex.wait_for(expected, t), Err(TimedWaitError::Interrupted)),
        None => matches!(futex.wait(expected), Err(linux_futex::WaitError::Interrupted)),
    }
}

/// Wakes every process parked on the futex word; returns how many it woke.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn futex_wake_all(word: &AtomicU32) -> i32 {
    let futex = AsFutex::<Shared>::as_futex(word);
    futex.wake(i32::MAX)
}

fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Kind of an OFD lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockKind {
    Shared,
    Exclusive,
}

fn flock_for(kind: libc::c_short, byte: i64) -> libc::flock {
    // SAFETY: flock is a plain C struct; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte;
    fl.l_len = 1;
    fl.l_pid = 0; // required by F_OFD_* commands
    fl
}

/// Takes an open-file-description lock on one byte without waiting.
/// `Ok(false)` means another open file description holds a conflicting lock.
/// The kernel drops the lock when the file description closes, including
/// when the process dies.
pub(crate) fn ofd_try_lock(file: &File, byte: i64, kind: LockKind) -> io::Result<bool> {
    let ty = match kind {
        LockKind::Shared => libc::F_RDLCK,
        LockKind::Exclusive => libc::F_WRLCK,
    } as libc::c_short;
    let fl = flock_for(ty, byte);
    // SAFETY: fcntl with F_OFD_SETLK reads the flock struct we pass by pointer,
    // which lives for the duration of the call; the fd is open (borrowed from `file`).
    let ret = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if ret == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(err),
    }
}

/// Releases this file description's lock on one byte.
pub(crate) fn ofd_unlock(file: &File, byte: i64) {
    let fl = flock_for(libc::F_UNLCK as libc::c_short, byte);
    // SAFETY: as in `ofd_try_lock`; unlocking a byte we do not hold is a no-op.
    let _ = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
}

/// Whether some other open file description holds a write lock on `byte`
/// (i.e. the peer owning it is alive). Does not take or change any lock.
pub(crate) fn ofd_is_locked(file: &File, byte: i64) -> io::Result<bool> {
    let mut fl = flock_for(libc::F_WRLCK as libc::c_short, byte);
    // SAFETY: F_OFD_GETLK writes the conflicting lock (if any) into `fl`, a
    // valid, exclusively borrowed flock struct.
    cvt(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) })?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// `open(path, O_RDWR|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC, 0600)`.
pub(crate) fn create_exclusive(path: &Path) -> io::Result<File> {
    let c = cstr(path)?;
    // SAFETY: `c` is a valid NUL-terminated path; open has no other preconditions.
    let fd = cvt(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    })?;
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// `open(path, O_RDWR|O_NOFOLLOW|O_CLOEXEC)` (or read-only).
pub(crate) fn open_existing(path: &Path, write: bool) -> io::Result<File> {
    let c = cstr(path)?;
    let acc = if write { libc::O_RDWR } else { libc::O_RDONLY };
    // SAFETY: `c` is a valid NUL-terminated path.
    let fd = cvt(unsafe { libc::open(c.as_ptr(), acc | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Sets the mode exactly, whatever the umask.
pub(crate) fn fchmod(file: &File, mode: u32) -> io::Result<()> {
    // SAFETY: plain syscall on an open fd.
    cvt(unsafe { libc::fchmod(file.as_raw_fd(), mode as libc::mode_t) }).map(|_| ())
}

/// Reserves `len` bytes so that a full filesystem fails here, not with SIGBUS later.
pub(crate) fn fallocate(file: &File, len: u64) -> io::Result<()> {
    // SAFETY: plain syscall on an open fd; posix_fallocate returns the error number.
    let ret = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(ret))
    }
}

/// `link(from, to)`: fails with EEXIST when `to` exists (including a symlink).
pub(crate) fn link(from: &Path, to: &Path) -> io::Result<()> {
    let a = cstr(from)?;
    let b = cstr(to)?;
    // SAFETY: both are valid NUL-terminated paths.
    cvt(unsafe { libc::link(a.as_ptr(), b.as_ptr()) }).map(|_| ())
}

/// File identity and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub nlink: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Stat {
    pub(crate) fn is_regular(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }
    pub(crate) fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }
    pub(crate) fn is_symlink(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFLNK
    }
    pub(crate) fn kind(&self) -> &'static str {
        match self.mode & libc::S_IFMT {
            libc::S_IFREG => "a regular file",
            libc::S_IFDIR => "a directory",
            libc::S_IFLNK => "a symbolic link",
            libc::S_IFIFO => "a FIFO",
            libc::S_IFSOCK => "a socket",
            libc::S_IFCHR | libc::S_IFBLK => "a device",
            _ => "not a regular file",
        }
    }
}

fn to_stat(st: &libc::stat) -> Stat {
    Stat {
        dev: st.st_dev,
        ino: st.st_ino,
        size: st.st_size as u64,
        nlink: st.st_nlink,
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
    }
}

pub(crate) fn fstat(file: &File) -> io::Result<Stat> {
    // SAFETY: zeroed stat is a valid out-parameter; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and a valid, exclusively borrowed out-pointer.
    cvt(unsafe { libc::fstat(file.as_raw_fd(), &mut st) })?;
    Ok(to_stat(&st))
}

/// `lstat`: does not follow a final symlink.
pub(crate) fn lstat(path: &Path) -> io::Result<Stat> {
    let c = cstr(path)?;
    // SAFETY: zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out-pointer.
    cvt(unsafe { libc::lstat(c.as_ptr(), &mut st) })?;
    Ok(to_stat(&st))
}

pub(crate) fn getuid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

/// The effective uid: the owner of every file this process creates.
pub(crate) fn geteuid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Runs a `get*_r` lookup (`call` returns its error number) with a buffer
/// that grows while the answer does not fit (`ERANGE`), up to 1 MiB.
fn lookup_r(mut call: impl FnMut(&mut [libc::c_char]) -> libc::c_int) {
    let mut buf = vec![0 as libc::c_char; 1024];
    while call(&mut buf) == libc::ERANGE && buf.len() < 1 << 20 {
        buf.resize(buf.len() * 4, 0);
    }
}

/// The user name of `uid` (`getpwuid_r`), for error messages; `None` when it has none.
pub(crate) fn user_name(uid: u32) -> Option<String> {
    let mut name = None;
    lookup_r(|buf| {
        // SAFETY: an all-zero passwd is a valid out-parameter.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid and exclusively borrowed for the call;
        // `buf.len()` is the buffer's real length.
        let r = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
        if r == 0 && !out.is_null() && !pw.pw_name.is_null() {
            // SAFETY: on success pw_name points to a NUL-terminated string in `buf`.
            name = Some(unsafe { CStr::from_ptr(pw.pw_name) }.to_string_lossy().into_owned());
        }
        r
    });
    name
}

/// The group name of `gid` (`getgrgid_r`), for error messages; `None` when it has none.
pub(crate) fn group_name(gid: u32) -> Option<String> {
    let mut name = None;
    lookup_r(|buf| {
        // SAFETY: an all-zero group is a valid out-parameter.
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::group = std::ptr::null_mut();
        // SAFETY: as in `user_name`.
        let r = unsafe { libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr(), buf.len(), &mut out) };
        if r == 0 && !out.is_null() && !gr.gr_name.is_null() {
            // SAFETY: on success gr_name points to a NUL-terminated string in `buf`.
            name = Some(unsafe { CStr::from_ptr(gr.gr_name) }.to_string_lossy().into_owned());
        }
        r
    });
    name
}

/// The gid of the group named `name` (`getgrnam_r`); `None` when there is none.
pub(crate) fn group_id(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    let mut gid = None;
    lookup_r(|buf| {
        // SAFETY: an all-zero group is a valid out-parameter.
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::group = std::ptr::null_mut();
        // SAFETY: as in `user_name`; `c` is a valid NUL-terminated name.
        let r = unsafe { libc::getgrnam_r(c.as_ptr(), &mut gr, buf.as_mut_ptr(), buf.len(), &mut out) };
        if r == 0 && !out.is_null() {
            gid = Some(gr.gr_gid);
        }
        r
    });
    gid
}

pub(crate) fn getpid() -> u32 {
    std::process::id()
}

pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// Creates a directory with exactly `mode` (mkdir then chmod, so the umask cannot narrow it).
pub(crate) fn mkdir_exact(path: &Path, mode: u32) -> io::Result<()> {
    let c = cstr(path)?;
    // SAFETY: valid path.
    cvt(unsafe { libc::mkdir(c.as_ptr(), mode as libc::mode_t) })?;
    // SAFETY: valid path.
    cvt(unsafe { libc::chmod(c.as_ptr(), mode as libc::mode_t) }).map(|_| ())
}

/// msync(MS_SYNC) of a mapped range.
///
/// # Safety
/// `ptr..ptr+len` must be a mapping owned by the caller, `ptr` page-aligned.
pub(crate) unsafe fn msync(ptr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: forwarded to the caller.
    cvt(unsafe { libc::msync(ptr.cast(), len, libc::MS_SYNC) }).map(|_| ())
}

/// The waiter thread's calls (crate::notify): `futex_waitv`, private futexes,
/// a futex wait by address, and the eventfd. Not in the loom models, which
/// have no waiter thread.
#[cfg(not(loom))]
mod waiter {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    use linux_futex::AsFutex;

    use super::cvt;

    /// Wakes every thread of this process parked on a private futex word (the
    /// waiter thread's control word, which lives in ordinary process memory).
    pub(crate) fn futex_wake_private(word: &AtomicU32) {
        let futex = AsFutex::<linux_futex::Private>::as_futex(word);
        futex.wake(i32::MAX);
    }

    /// Parks on a private futex word while it holds `expected`, for at most
    /// `timeout`; returns on wake-up, value change, signal or timeout.
    pub(crate) fn futex_wait_private(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        let futex = AsFutex::<linux_futex::Private>::as_futex(word);
        match timeout {
            Some(t) => drop(futex.wait_for(expected, t)),
            None => drop(futex.wait(expected)),
        }
    }

    /// One word for [`futex_waitv`]: its address, the value it must still hold,
    /// and whether it is shared between processes (a bus word) or private (the
    /// control word).
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct WaitWord {
        pub addr: *const AtomicU32,
        pub expected: u32,
        pub shared: bool,
    }

    /// `struct futex_waitv` of linux/futex.h.
    #[repr(C)]
    struct FutexWaitv {
        val: u64,
        uaddr: u64,
        flags: u32,
        reserved: u32,
    }

    /// The most words one `futex_waitv` call takes (`FUTEX_WAITV_MAX`).
    pub(crate) const FUTEX_WAITV_MAX: usize = 128;
    const FUTEX2_SIZE_U32: u32 = 0x02;
    const FUTEX2_PRIVATE: u32 = 128;

    /// The outcome of [`futex_waitv`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum Waitv {
        /// Woken, a word no longer held its expected value, a signal, a
        /// timeout, or a word's page is gone (EFAULT): the caller re-checks.
        Returned,
        /// The kernel has no `futex_waitv` (before Linux 5.16).
        Unsupported,
    }

    /// `futex_waitv(2)` (Linux 5.16+): parks until any of `words` is woken or no
    /// longer holds its expected value, or `timeout` passes. At most
    /// [`FUTEX_WAITV_MAX`] words.
    ///
    /// The addresses are only handed to the kernel, which reads them itself and
    /// answers EFAULT for an address no longer mapped; Rust never dereferences
    /// them here.
    pub(crate) fn futex_waitv(words: &[WaitWord], timeout: Option<Duration>) -> Waitv {
        assert!(!words.is_empty() && words.len() <= FUTEX_WAITV_MAX);
        let waiters: Vec<FutexWaitv> = words
            .iter()
            .map(|w| FutexWaitv {
                val: u64::from(w.expected),
                uaddr: w.addr as usize as u64,
                flags: FUTEX2_SIZE_U32 | if w.shared { 0 } else { FUTEX2_PRIVATE },
                reserved: 0,
            })
            .collect();
        // The timeout is absolute, on CLOCK_MONOTONIC (the clock of `Instant`).
        let mut abs: libc::timespec = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        let ts = match timeout {
            Some(t) => {
                // SAFETY: clock_gettime writes into a valid, exclusively borrowed timespec.
                unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut abs) };
                let ns = abs.tv_nsec as u64 + u64::from(t.subsec_nanos());
                abs.tv_sec = abs.tv_sec.saturating_add(
                    t.as_secs().min(i64::MAX as u64 / 2) as libc::time_t + (ns / 1_000_000_000) as libc::time_t,
                );
                abs.tv_nsec = (ns % 1_000_000_000) as libc::c_long;
                &abs as *const libc::timespec
            }
            None => std::ptr::null(),
        };
        // SAFETY: `waiters` is a valid array of `waiters.len()` futex_waitv structs
        // that outlives the call; `ts` is null or points to `abs`, alive for the
        // call; flags is 0 as the kernel requires. The kernel reads the words
        // itself (EFAULT for an unmapped one).
        let ret = unsafe {
            libc::syscall(
                libc::SYS_futex_waitv,
                waiters.as_ptr(),
                waiters.len() as libc::c_uint,
                0 as libc::c_uint,
                ts,
                libc::CLOCK_MONOTONIC,
            )
        };
        if ret < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
            Waitv::Unsupported
        } else {
            Waitv::Returned
        }
    }

    /// An eventfd (`EFD_NONBLOCK | EFD_CLOEXEC`), closed on drop.
    #[derive(Debug)]
    pub(crate) struct EventFd(std::os::fd::OwnedFd);

    impl EventFd {
        pub(crate) fn new() -> io::Result<EventFd> {
            // SAFETY: eventfd has no memory preconditions.
            let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
            // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
            Ok(EventFd(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
        }

        pub(crate) fn raw(&self) -> std::os::fd::RawFd {
            self.0.as_raw_fd()
        }

        /// Adds one to the counter: the fd becomes readable.
        pub(crate) fn signal(&self) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a valid u64 to an open eventfd; a full
            // counter (EAGAIN) means it is readable already.
            let _ = unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }

        /// Resets the counter to zero: the fd is no longer readable.
        pub(crate) fn clear(&self) {
            let mut v: u64 = 0;
            // SAFETY: reads 8 bytes into a valid u64 from an open non-blocking
            // eventfd; EAGAIN means it was zero already.
            let _ = unsafe { libc::read(self.0.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        }
    }

    /// `FUTEX_WAIT` (shared) on a word given by address, for at most `timeout`:
    /// for a word that may be unmapped concurrently, which the kernel answers with
    /// EFAULT. Rust never dereferences `addr`.
    pub(crate) fn futex_wait_addr(addr: *const AtomicU32, expected: u32, timeout: Duration) {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64 / 2) as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: the kernel reads the word at `addr` itself (EFAULT if unmapped);
        // `ts` is a valid relative timeout alive for the call.
        unsafe { libc::syscall(libc::SYS_futex, addr, libc::FUTEX_WAIT, expected, &ts as *const libc::timespec) };
    }
}
#[cfg(not(loom))]
pub(crate) use waiter::*;
