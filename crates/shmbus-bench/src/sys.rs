//! Every raw system call of the harness, in one place: CPU affinity, dying
//! with the parent, shared futexes, FIFOs, `SOCK_SEQPACKET` sockets and
//! shared file mappings.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

/// The CPUs this process may run on (`sched_getaffinity`), in ascending order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; all-zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: we pass the size of the set we own; the kernel writes within it.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, the set's capacity.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Pins the calling process to one CPU (`sched_setaffinity`).
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("CPU {cpu} is out of range")));
    }
    // SAFETY: cpu_set_t is plain data; all-zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` was checked against CPU_SETSIZE above.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: we pass a pointer to, and the size of, a set we own.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks the kernel to SIGKILL this process when its parent dies, so that a
/// child of an interrupted run never spins on a core forever.
pub fn die_with_parent() {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and touches no memory of ours.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) };
}

/// The C library's version string (`gnu_get_libc_version`), for the report.
pub fn libc_version() -> String {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn gnu_get_libc_version() -> *const libc::c_char;
        }
        // SAFETY: glibc returns a pointer to a static NUL-terminated string.
        let s = unsafe { std::ffi::CStr::from_ptr(gnu_get_libc_version()) };
        format!("glibc {}", s.to_string_lossy())
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        "unknown C library".to_string()
    }
}

/// Waits on a shared futex word while it holds `expected`, at most `timeout`.
/// Shared (no `FUTEX_PRIVATE_FLAG`): the waker is another process.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: FUTEX_WAIT reads the aligned 32-bit word we pass (it lives in a
    // mapping that outlives this call) and the timespec on our stack.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
}

/// Wakes one waiter of a shared futex word.
pub fn futex_wake_one(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the word's address as a key.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1u32, 0usize, 0usize, 0u32) };
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("path {} contains a NUL byte", path.display()))
    })
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Kernel buffer for every socket and pipe of the kernel transports: the size
/// of a shmbus ring (like for like: neither side runs out of buffer first).
pub const KERNEL_BUFFER: usize = 1 << 20;

/// Sets a socket's send and receive buffers (`SO_SNDBUF`, `SO_RCVBUF`) to
/// `bytes` (the kernel doubles the value for its bookkeeping and caps it at
/// `net.core.wmem_max` / `rmem_max`).
pub fn set_socket_buffers(fd: &impl AsRawFd, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
        // SAFETY: setsockopt with a pointer to a live c_int and its size.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })?;
    }
    Ok(())
}

/// Sets a pipe's buffer to `bytes` (`F_SETPIPE_SZ`; at most
/// `/proc/sys/fs/pipe-max-size` for an unprivileged process, 1 MiB by default).
pub fn set_pipe_size(fd: &impl AsRawFd, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: fcntl on a descriptor we own, with an integer argument.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, v) }).map(drop)
}

/// Creates a FIFO (a named pipe: the kernel's pipe, reachable by path).
pub fn mkfifo(path: &Path) -> io::Result<()> {
    let c = cstring(path)?;
    // SAFETY: `c` is a valid NUL-terminated path.
    check(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }).map(drop)
}

/// Opens a FIFO for reading and writing: on Linux this never blocks waiting
/// for the other end, so both processes can open both FIFOs in any order.
pub fn open_fifo(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

fn unix_addr(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all-zero is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("socket path {} is too long", path.display())));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

fn seqpacket_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call.
    let fd = check(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Binds and listens on a Unix `SOCK_SEQPACKET` socket at `path`.
pub fn seqpacket_listen(path: &Path) -> io::Result<OwnedFd> {
    let fd = seqpacket_socket()?;
    let (addr, len) = unix_addr(path)?;
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
    check(unsafe { libc::bind(fd.as_raw_fd(), &addr as *const _ as *const libc::sockaddr, len) })?;
    // SAFETY: plain listen(2) on our socket.
    check(unsafe { libc::listen(fd.as_raw_fd(), 8) })?;
    Ok(fd)
}

/// Accepts one connection on a listening socket.
pub fn accept(listener: &OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: null address pointers are allowed by accept4(2).
    let fd = check(unsafe {
        libc::accept4(listener.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC)
    })?;
    // SAFETY: `fd` was just returned by accept4(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Connects a Unix `SOCK_SEQPACKET` socket to `path`.
pub fn seqpacket_connect(path: &Path) -> io::Result<OwnedFd> {
    let fd = seqpacket_socket()?;
    let (addr, len) = unix_addr(path)?;
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
    check(unsafe { libc::connect(fd.as_raw_fd(), &addr as *const _ as *const libc::sockaddr, len) })?;
    Ok(fd)
}

/// Sends one record on a seqpacket socket; the whole record or an error.
pub fn seqpacket_send(fd: &OwnedFd, msg: &[u8]) -> io::Result<()> {
    loop {
        // SAFETY: `msg` is a valid readable buffer of its length.
        let n = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return if n as usize == msg.len() {
                Ok(())
            } else {
                Err(io::Error::other(format!("seqpacket send wrote {n} of {} bytes", msg.len())))
            };
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives one record into `buf`; returns its length (0: the peer closed).
pub fn seqpacket_recv(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is a valid writable buffer of its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A file mapped `MAP_SHARED` into this process and into the peer's: the raw
/// baselines' shared memory.
///
/// The peer may write any byte at any time, so the mapping is only reached
/// through atomics (`atomic_u32`, `atomic_u64`) and through raw copies whose
/// ordering an atomic establishes (Release by the writer, Acquire by the
/// reader); no `&[u8]` over it is ever formed.
pub struct SharedFile {
    map: memmap2::MmapRaw,
}

impl SharedFile {
    /// Creates `path` (which must not exist) with `len` zero bytes and maps it.
    pub fn create(path: &Path, len: usize) -> io::Result<SharedFile> {
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
        file.set_len(len as u64)?;
        Self::map(&file)
    }

    /// Maps an existing file created by [`SharedFile::create`].
    pub fn open(path: &Path) -> io::Result<SharedFile> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Self::map(&file)
    }

    fn map(file: &File) -> io::Result<SharedFile> {
        let map = memmap2::MmapOptions::new().map_raw(file)?;
        Ok(SharedFile { map })
    }

    /// Length of the mapping.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the mapping is empty.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// A pointer to `len` bytes at `off`, bounds-checked.
    pub fn ptr(&self, off: usize, len: usize) -> *mut u8 {
        assert!(off.checked_add(len).is_some_and(|end| end <= self.map.len()), "{off}+{len} outside the mapping");
        // SAFETY: `off + len` is within the mapping (checked above).
        unsafe { self.map.as_mut_ptr().add(off) }
    }

    /// The 32-bit word at `off` (4-aligned), as an atomic.
    pub fn atomic_u32(&self, off: usize) -> &AtomicU32 {
        assert_eq!(off % 4, 0);
        // SAFETY: in bounds (checked by `ptr`), aligned, and the mapping lives
        // as long as `self`; every access to the word is atomic.
        unsafe { &*(self.ptr(off, 4) as *const AtomicU32) }
    }

    /// The 64-bit word at `off` (8-aligned), as an atomic.
    pub fn atomic_u64(&self, off: usize) -> &AtomicU64 {
        assert_eq!(off % 8, 0);
        // SAFETY: as in `atomic_u32`.
        unsafe { &*(self.ptr(off, 8) as *const AtomicU64) }
    }

    /// Copies `src` into the mapping at `off`. The caller orders it before
    /// the peer's read with a Release store the peer Acquires.
    pub fn write(&self, off: usize, src: &[u8]) {
        let dst = self.ptr(off, src.len());
        // SAFETY: `dst` has `src.len()` bytes in bounds; the mapping and a
        // process-local slice never overlap.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
    }

    /// Copies bytes at `off` out of the mapping into `dst`. The caller has
    /// Acquired the peer's Release store that published them.
    pub fn read(&self, off: usize, dst: &mut [u8]) {
        let src = self.ptr(off, dst.len());
        // SAFETY: as in `write`.
        unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
    }

    /// Copies `len` bytes inside the mapping from `from` to `to` (the ranges
    /// must not overlap).
    pub fn copy_within(&self, from: usize, to: usize, len: usize) {
        assert!(from + len <= to || to + len <= from, "overlapping copy");
        let (s, d) = (self.ptr(from, len), self.ptr(to, len));
        // SAFETY: both ranges are in bounds and do not overlap (checked above).
        unsafe { std::ptr::copy_nonoverlapping(s, d, len) };
    }

    /// Reads the little-endian u64 at `off` (the message header).
    pub fn read_u64(&self, off: usize) -> u64 {
        let mut b = [0u8; 8];
        self.read(off, &mut b);
        u64::from_le_bytes(b)
    }
}

/// CPU time used on the whole machine and by this process and its reaped
/// children, to tell how much CPU other processes took during a run.
#[derive(Clone, Copy, Debug)]
pub struct CpuSnapshot {
    /// Busy time of all CPUs (user, nice, system, irq, softirq, steal), seconds.
    pub machine_busy: f64,
    /// This process plus its reaped children, user + system, seconds.
    pub ours: f64,
}

fn rusage_secs(who: libc::c_int) -> f64 {
    // SAFETY: rusage is plain data; all-zero is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Reads the machine's and our CPU time; `None` without /proc/stat.
pub fn cpu_snapshot() -> Option<CpuSnapshot> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    if f.len() < 8 {
        return None;
    }
    let busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(CpuSnapshot {
        machine_busy: busy as f64 / hz,
        ours: rusage_secs(libc::RUSAGE_SELF) + rusage_secs(libc::RUSAGE_CHILDREN),
    })
}

impl CpuSnapshot {
    /// CPU seconds that other processes (and the hypervisor, as steal) used
    /// between `self` and `later`.
    pub fn foreign_since(&self, later: &CpuSnapshot) -> f64 {
        ((later.machine_busy - self.machine_busy) - (later.ours - self.ours)).max(0.0)
    }
}
