//! How fast each way of waiting on a futex word wakes up: the question
//! behind the async receive latency (docs/async.md, "Alternatives
//! considered"). Not shmbus code: a measurement of the wake paths an async
//! backend could use, on one shared (`MAP_SHARED`, non-private) futex word
//! like the bus header's. A sender thread stamps `CLOCK_MONOTONIC`, bumps the
//! word and calls `FUTEX_WAKE` every 200 µs; each receiver reports the delay
//! from the stamp to the moment it runs:
//!
//! - `park`: a thread in `FUTEX_WAIT` (the blocking `Park` wait);
//! - `thread+waker`: a helper thread in `FUTEX_WAIT` wakes a task on a tokio
//!   current-thread runtime (the shape of shmbus's waiter thread: two hops);
//! - `eventfd tokio`: the sender writes an eventfd the runtime's reactor
//!   watches (the floor of any reactor wake-up, no futex involved);
//! - `uring enter`: a thread blocks in `io_uring_enter` with an
//!   `IORING_OP_FUTEX_WAIT` in flight (the kernel path alone);
//! - `uring ringfd` / `uring eventfd`: a tokio task with an
//!   `IORING_OP_FUTEX_WAIT` in flight awaits the ring's fd (or an eventfd
//!   registered with `IORING_REGISTER_EVENTFD`) in the reactor: the runtime
//!   thread itself wakes (one hop);
//! - `uring defer`: the same with an eventfd on a `SINGLE_ISSUER |
//!   DEFER_TASKRUN` ring (the completion signals the eventfd instead of
//!   interrupting the runtime thread with task work; the thread then runs
//!   that work in one `io_uring_enter(GETEVENTS)`).
//!
//! `cargo bench --bench futex_wake_paths [-- ROUNDS] [--pin]` (`--pin`: the
//! sender on CPU 0, the receiving threads on CPU 1; default 5 rounds of
//! 4,000 samples each, interleaved; about 5 s a round). Needs Linux 6.7+ and
//! `kernel.io_uring_disabled = 0` for the io_uring rows (they print the error
//! otherwise). Prints each round's p50/p99/p99.9 and, per path, the median
//! and the lowest of the rounds' p50s (the machine is shared: compare within
//! a round).

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

const N: usize = 4000;
const GAP_NS: u64 = 200_000;
const IORING_OP_FUTEX_WAIT: u8 = 51;
const FUTEX2_SIZE_U32: u32 = 0x02;
const IORING_OFF_CQ_RING: i64 = 0x800_0000;
const IORING_OFF_SQES: i64 = 0x1000_0000;
const IORING_REGISTER_EVENTFD: u32 = 4;

/// Set by a receiver once it has its samples: the sender runs until then.
static DONE: AtomicBool = AtomicBool::new(false);
/// `--pin`: the sender on CPU 0, every receiving thread on CPU 1.
static PIN: AtomicBool = AtomicBool::new(false);

/// Pins the calling thread to `cpu` under `--pin`.
fn pin(cpu: usize) {
    if !PIN.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and
    // sched_setaffinity(0) act on it and on the calling thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set), 0);
    }
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into a valid, exclusively borrowed timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The futex word and the stamp, in a fresh shared anonymous page (leaked:
/// a helper thread may still be parked on it).
fn shared() -> (&'static AtomicU32, &'static AtomicU64) {
    let (prot, flags) = (libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS);
    // SAFETY: a new anonymous mapping; nothing else refers to it.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), 4096, prot, flags, -1, 0) };
    assert_ne!(p, libc::MAP_FAILED);
    // SAFETY: the page is zeroed, aligned, never unmapped, and only reached
    // through these atomics.
    unsafe { (&*(p as *const AtomicU32), &*((p as *const u8).add(64) as *const AtomicU64)) }
}

fn futex_wait(w: &AtomicU32, v: u32) {
    // SAFETY: FUTEX_WAIT on a live u32 word (shared futex: the word's page is MAP_SHARED).
    unsafe { libc::syscall(libc::SYS_futex, w.as_ptr(), libc::FUTEX_WAIT, v, std::ptr::null::<libc::timespec>()) };
}

fn futex_wake(w: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a live u32 word.
    unsafe { libc::syscall(libc::SYS_futex, w.as_ptr(), libc::FUTEX_WAKE, i32::MAX) };
}

/// Every 200 µs: stamp, bump the word, then `signal` it (a futex wake or an eventfd write).
fn sender(word: &'static AtomicU32, stamp: &'static AtomicU64, signal: impl Fn() + Send + 'static) -> Sender {
    pin(1);
    Sender(Some(std::thread::spawn(move || {
        pin(0);
        std::thread::sleep(Duration::from_millis(50));
        while !DONE.load(Ordering::Relaxed) {
            let until = now_ns() + GAP_NS;
            while now_ns() < until {
                if until - now_ns() > 60_000 {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            stamp.store(now_ns(), Ordering::Relaxed);
            word.fetch_add(1, Ordering::Release);
            signal();
        }
    })))
}

/// Stops and joins the sender when the receiver is done.
struct Sender(Option<std::thread::JoinHandle<()>>);

impl Drop for Sender {
    fn drop(&mut self) {
        DONE.store(true, Ordering::Relaxed);
        if let Some(t) = self.0.take() {
            t.join().unwrap();
        }
        DONE.store(false, Ordering::Relaxed);
    }
}

/// A sample whenever the word has moved past `seen`.
fn sample(word: &AtomicU32, stamp: &AtomicU64, seen: &mut u32, lat: &mut Vec<u64>) {
    let now = word.load(Ordering::Acquire);
    if now != *seen {
        lat.push(now_ns().saturating_sub(stamp.load(Ordering::Relaxed)));
        *seen = now;
    }
}

fn park() -> Vec<u64> {
    let (word, stamp) = shared();
    let _s = sender(word, stamp, move || futex_wake(word));
    let mut lat = Vec::with_capacity(N);
    let mut seen = word.load(Ordering::Acquire);
    while lat.len() < N {
        futex_wait(word, seen);
        sample(word, stamp, &mut seen, &mut lat);
    }
    lat
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn thread_waker() -> Vec<u64> {
    let (word, stamp) = shared();
    let _s = sender(word, stamp, move || futex_wake(word));
    let notify = std::sync::Arc::new(tokio::sync::Notify::new());
    let n2 = notify.clone();
    // Left parked on its word when done (the page is never unmapped).
    std::thread::spawn(move || {
        pin(1);
        let mut seen = word.load(Ordering::Acquire);
        loop {
            futex_wait(word, seen);
            let now = word.load(Ordering::Acquire);
            if now != seen {
                seen = now;
                n2.notify_one();
            }
        }
    });
    runtime().block_on(async move {
        let mut lat = Vec::with_capacity(N);
        let mut seen = word.load(Ordering::Acquire);
        while lat.len() < N {
            notify.notified().await;
            sample(word, stamp, &mut seen, &mut lat);
        }
        lat
    })
}

/// A file descriptor for `AsyncFd` (closed by nobody: each path leaks a few fds).
struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Registers `fd` with the runtime's reactor for readability.
fn watch(fd: RawFd) -> tokio::io::unix::AsyncFd<Fd> {
    // SAFETY: every fd given here stays open for the life of the process.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(Fd(fd), tokio::io::Interest::READABLE) }.unwrap()
}

fn eventfd() -> RawFd {
    // SAFETY: plain eventfd(2).
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
    assert!(fd >= 0);
    fd
}

fn drain(fd: RawFd) {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into a valid u64 (an eventfd read).
    unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
}

fn eventfd_tokio() -> Vec<u64> {
    let (word, stamp) = shared();
    let efd = eventfd();
    let _s = sender(word, stamp, move || {
        let one = 1u64;
        // SAFETY: writes 8 bytes from a valid u64 (an eventfd write).
        unsafe { libc::write(efd, (&one as *const u64).cast(), 8) };
    });
    runtime().block_on(async move {
        let afd = watch(efd);
        let mut lat = Vec::with_capacity(N);
        let mut seen = word.load(Ordering::Acquire);
        while lat.len() < N {
            let mut g = afd.readable().await.unwrap();
            g.clear_ready();
            drain(efd);
            sample(word, stamp, &mut seen, &mut lat);
        }
        lat
    })
}

#[repr(C)]
#[derive(Default)]
struct RingOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    /// SQ: flags; CQ: overflow.
    a: u32,
    /// SQ: dropped; CQ: cqes.
    b: u32,
    /// SQ: array; CQ: flags.
    c: u32,
    resv1: u32,
    user_addr: u64,
}

/// `struct io_uring_params`.
#[repr(C)]
#[derive(Default)]
struct Params {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    sq_off: RingOffsets,
    cq_off: RingOffsets,
}

/// A minimal io_uring over raw syscalls: one FUTEX_WAIT in flight at a time.
struct Uring {
    fd: RawFd,
    sq: *mut u8,
    cq: *mut u8,
    sqes: *mut u8,
    p: Params,
}

impl Uring {
    fn new(flags: u32) -> std::io::Result<Uring> {
        let mut p = Params { flags, ..Params::default() };
        // SAFETY: io_uring_setup(2) fills the params struct we pass.
        let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 8u32, &mut p as *mut Params) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = fd as RawFd;
        let map = |off: i64, len: usize| {
            let (prot, flags) = (libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_POPULATE);
            // SAFETY: maps a region of the ring at the offsets io_uring_setup(2) documents.
            let m = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, off) };
            assert_ne!(m, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
            m.cast::<u8>()
        };
        let sq = map(0, p.sq_off.c as usize + p.sq_entries as usize * 4);
        let cq = map(IORING_OFF_CQ_RING, p.cq_off.b as usize + p.cq_entries as usize * 16);
        let sqes = map(IORING_OFF_SQES, p.sq_entries as usize * 64);
        Ok(Uring { fd, sq, cq, sqes, p })
    }

    fn word(&self, base: *mut u8, off: u32) -> &AtomicU32 {
        // SAFETY: `off` is a ring offset the kernel gave us, inside the mapping, aligned.
        unsafe { &*(base.add(off as usize) as *const AtomicU32) }
    }

    /// Queues and submits a FUTEX_WAIT on `w` expecting `val`.
    fn futex_wait(&self, w: &AtomicU32, val: u32) {
        let tail = self.word(self.sq, self.p.sq_off.tail).load(Ordering::Relaxed);
        let i = tail & self.word(self.sq, self.p.sq_off.ring_mask).load(Ordering::Relaxed);
        // SAFETY: entry `i` of the SQE array and of the index array are ours
        // until we publish the tail (one submission in flight at a time).
        unsafe {
            let e = self.sqes.add(i as usize * 64);
            std::ptr::write_bytes(e, 0, 64);
            *e = IORING_OP_FUTEX_WAIT;
            *(e.add(4) as *mut u32) = FUTEX2_SIZE_U32; // fd: futex2 flags (a shared futex)
            *(e.add(8) as *mut u64) = u64::from(val); // addr2: the expected value
            *(e.add(16) as *mut u64) = w.as_ptr() as u64; // addr: the word
            *(e.add(48) as *mut u64) = 0xffff_ffff; // addr3: FUTEX_BITSET_MATCH_ANY
            *(self.sq.add(self.p.sq_off.c as usize) as *mut u32).add(i as usize) = i;
        }
        self.word(self.sq, self.p.sq_off.tail).store(tail.wrapping_add(1), Ordering::Release);
        self.enter(1, 0, false);
    }

    /// With `getevents`, also runs deferred completion work (DEFER_TASKRUN)
    /// and waits for `wait` completions.
    fn enter(&self, submit: u32, wait: u32, getevents: bool) {
        let flags = u32::from(getevents); // IORING_ENTER_GETEVENTS
                                          // SAFETY: io_uring_enter(2) on our ring, without a signal mask.
        let r = unsafe { libc::syscall(libc::SYS_io_uring_enter, self.fd, submit, wait, flags, 0usize, 0usize) };
        assert!(r >= 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR));
    }

    /// Pops every completion; whether there was one.
    fn reap(&self) -> bool {
        let mut any = false;
        loop {
            let head = self.word(self.cq, self.p.cq_off.head).load(Ordering::Relaxed);
            if head == self.word(self.cq, self.p.cq_off.tail).load(Ordering::Acquire) {
                return any;
            }
            let i = head & self.word(self.cq, self.p.cq_off.ring_mask).load(Ordering::Relaxed);
            // SAFETY: CQE `i` lies before the tail the kernel published (Acquire above).
            let res = unsafe { *(self.cq.add(self.p.cq_off.b as usize + i as usize * 16 + 8) as *const i32) };
            assert!(res == 0 || res == -libc::EAGAIN, "futex wait: {res}");
            self.word(self.cq, self.p.cq_off.head).store(head.wrapping_add(1), Ordering::Release);
            any = true;
        }
    }
}

fn uring_enter() -> std::io::Result<Vec<u64>> {
    let (word, stamp) = shared();
    let ring = Uring::new(0)?;
    let _s = sender(word, stamp, move || futex_wake(word));
    let mut lat = Vec::with_capacity(N);
    let mut seen = word.load(Ordering::Acquire);
    ring.futex_wait(word, seen);
    while lat.len() < N {
        ring.enter(0, 1, true);
        if ring.reap() {
            sample(word, stamp, &mut seen, &mut lat);
            ring.futex_wait(word, seen);
        }
    }
    Ok(lat)
}

/// The reactor watches the ring fd (`efd` false) or a registered eventfd.
/// With `defer`, the ring is IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN: a
/// completion does not interrupt the runtime thread with task work; the
/// eventfd is signalled and the thread runs the work in an io_uring_enter
/// (GETEVENTS) before reaping. A wait that sees nothing for a second counts
/// as a lost wake-up.
fn uring_tokio(efd: bool, defer: bool) -> std::io::Result<Vec<u64>> {
    let (word, stamp) = shared();
    let ring = Uring::new(if defer { (1 << 12) | (1 << 13) } else { 0 })?;
    let watch_fd = if efd {
        let e = eventfd();
        // SAFETY: IORING_REGISTER_EVENTFD takes a pointer to one int.
        let r = unsafe {
            libc::syscall(libc::SYS_io_uring_register, ring.fd, IORING_REGISTER_EVENTFD, &e as *const i32, 1u32)
        };
        assert_eq!(r, 0, "register eventfd: {}", std::io::Error::last_os_error());
        e
    } else {
        ring.fd
    };
    let _s = sender(word, stamp, move || futex_wake(word));
    let lat = runtime().block_on(async move {
        let afd = watch(watch_fd);
        let mut lat = Vec::with_capacity(N);
        let mut seen = word.load(Ordering::Acquire);
        ring.futex_wait(word, seen);
        while lat.len() < N {
            let Ok(g) = tokio::time::timeout(Duration::from_secs(1), afd.readable()).await else {
                println!("  a lost wake-up (nothing for 1 s)");
                ring.enter(0, 0, true);
                ring.reap();
                ring.futex_wait(word, word.load(Ordering::Acquire));
                continue;
            };
            g.unwrap().clear_ready();
            if efd {
                drain(watch_fd);
            }
            if defer {
                ring.enter(0, 0, true);
            }
            if ring.reap() {
                sample(word, stamp, &mut seen, &mut lat);
                ring.futex_wait(word, seen);
            }
        }
        lat
    });
    Ok(lat)
}

fn main() {
    let rounds: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(5);
    PIN.store(std::env::args().any(|a| a == "--pin"), Ordering::Relaxed);
    let mut p50s: Vec<(&str, Vec<f64>)> = Vec::new();
    let mut report = |name: &'static str, lat: std::io::Result<Vec<u64>>| {
        let mut lat = match lat {
            Ok(l) => l,
            Err(e) => return println!("{name:14} unavailable: {e}"),
        };
        lat.sort_unstable();
        let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
        println!("{name:14} p50 {:6.1} µs  p99 {:7.1} µs  p99.9 {:7.1} µs", p(0.5), p(0.99), p(0.999));
        match p50s.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => v.push(p(0.5)),
            None => p50s.push((name, vec![p(0.5)])),
        }
    };
    for round in 0..rounds {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!("round {round} (load average {})", load.split(' ').next().unwrap_or("?"));
        report("park", Ok(park()));
        report("thread+waker", Ok(thread_waker()));
        report("eventfd tokio", Ok(eventfd_tokio()));
        report("uring enter", uring_enter());
        report("uring ringfd", uring_tokio(false, false));
        report("uring eventfd", uring_tokio(true, false));
        report("uring defer", uring_tokio(true, true));
    }
    println!("\n| path | median p50 µs | lowest p50 µs |\n|---|---|---|");
    for (name, mut v) in p50s {
        v.sort_by(f64::total_cmp);
        println!("| {name} | {:.1} | {:.1} |", v[v.len() / 2], v[0]);
    }
}
