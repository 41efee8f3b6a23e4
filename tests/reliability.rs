//! Reliability suite through the public API (docs/reliability.md, item 6):
//! the facade's `send_timeout`, `recv_timeout` and zero-copy `recv_ref`
//! while another process writes random bytes over the mapping. The core's
//! own suite is in crates/shmbus-core/tests/reliability_*.rs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmbus::{BusConfig, Overflow, Publisher, RecvError, SendError, StartAt, Subscriber};

const ROLE: &str = "SHMBUS_REL_API_ROLE";

fn full() -> bool {
    std::env::var("SHMBUS_RELIABILITY_FULL").is_ok_and(|v| v == "1")
}

/// The child entry point: does nothing unless started with a role.
#[test]
fn __child() {
    let Ok(role) = std::env::var(ROLE) else { return };
    assert_eq!(role, "scribble");
    let dir = PathBuf::from(std::env::var_os("SHMBUS_DIR").unwrap());
    let millis: u64 = std::env::var("SHMBUS_REL_API_MILLIS").unwrap().parse().unwrap();
    let file = std::fs::OpenOptions::new().read(true).write(true).open(dir.join("facade.bus")).unwrap();
    let len = file.metadata().unwrap().len() as usize;
    // SAFETY: this process is deliberately hostile; it only writes plain
    // bytes into its own mapping of the file.
    let map = unsafe { memmap(&file, len) };
    let mut x = u64::from(std::process::id()) | 1;
    let end = Instant::now() + Duration::from_millis(millis);
    while Instant::now() < end {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Mostly the live words of the header (128..512), the peer table and the ring.
        let off = match x % 10 {
            0..=2 => 128 + (x >> 8) as usize % 384,
            3..=4 => 4096 + (x >> 8) as usize % 8192,
            _ => 12288 + (x >> 8) as usize % (len - 12288),
        };
        let n = ((x >> 40) as usize % 16 + 1).min(len - off);
        for i in 0..n {
            map[off + i] = (x >> (i % 8 * 8)) as u8;
        }
        if x % 3 == 0 {
            std::thread::sleep(Duration::from_micros(x % 200));
        }
    }
}

/// A plain mutable view of a shared mapping, for the hostile child only.
///
/// # Safety
/// Other processes change these bytes; the caller only writes them.
unsafe fn memmap(file: &std::fs::File, len: usize) -> &'static mut [u8] {
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh shared mapping of `len` bytes of an open file; never unmapped.
    let p = unsafe {
        libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, file.as_raw_fd(), 0)
    };
    assert_ne!(p, libc::MAP_FAILED);
    // SAFETY: the mapping is `len` bytes long and lives until the process exits.
    unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) }
}

fn spawn_scribbler(dir: &Path, millis: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["__child", "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(ROLE, "scribble")
        .env("SHMBUS_DIR", dir)
        .env("SHMBUS_REL_API_MILLIS", millis.to_string())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Item 6 through the facade: while a hostile process scribbles over the
/// mapping, `send_timeout`, `recv_timeout` and `recv_ref` never panic and
/// never block past 1 s; they return messages, timeouts or typed errors.
#[test]
fn facade_calls_stay_bounded_under_a_hostile_writer() {
    let millis = if full() { 20_000 } else { 2000 };
    for overflow in [Overflow::Block, Overflow::Overwrite] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BusConfig::default()
            .dir(dir.path())
            .capacity(64 << 10)
            .max_message(4096)
            .max_peers(64)
            .overflow(overflow)
            .persistent(true);
        let mut sub = Subscriber::open_or_create("facade", &cfg, StartAt::Latest).unwrap();
        let mut publ = Publisher::open_or_create("facade", &cfg).unwrap();
        let mut child = spawn_scribbler(dir.path(), millis);
        let t = Duration::from_millis(20);
        let (mut sent, mut got, mut timeouts, mut errors) = (0u64, 0u64, 0u64, 0u64);
        let mut max_call = Duration::ZERO;
        let end = Instant::now() + Duration::from_millis(millis);
        let mut i = 0u64;
        while Instant::now() < end {
            let start = Instant::now();
            match publ.send_timeout(&i.to_le_bytes().repeat(1 + (i % 200) as usize), t) {
                Ok(()) => sent += 1,
                Err(SendError::Timeout | SendError::Full) => timeouts += 1,
                Err(_) => errors += 1,
            }
            max_call = max_call.max(start.elapsed());
            let start = Instant::now();
            let r = if i.is_multiple_of(2) {
                sub.recv_timeout(t).map(|m| m.len())
            } else {
                sub.recv_ref(Some(t)).map(|m| m.len())
            };
            match r {
                Ok(_) => got += 1,
                Err(RecvError::Timeout) | Err(RecvError::Lagged { .. }) => timeouts += 1,
                Err(_) => errors += 1,
            }
            max_call = max_call.max(start.elapsed());
            i += 1;
        }
        let status = child.wait().unwrap();
        assert!(status.success(), "scribbler: {status}");
        let line = format!(
            "FIGURE facade_calls_stay_bounded_under_a_hostile_writer scale={} overflow={overflow} seconds={:.1} sent={sent} received={got} timeouts={timeouts} typed_errors={errors} max_call_ms={:.1} panics=0",
            if full() { "full" } else { "ci" },
            millis as f64 / 1000.0,
            max_call.as_secs_f64() * 1000.0
        );
        println!("{line}");
        if let Some(path) = std::env::var_os("SHMBUS_RELIABILITY_FIGURES") {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
                let _ = writeln!(f, "{line}");
            }
        }
        assert!(max_call < Duration::from_secs(1), "a call blocked for {max_call:?}");
        drop((sub, publ));
        let _ = shmbus::remove("facade", &cfg, true);
    }
}
