//! The raw baselines, written for the harness: the least code that moves a
//! message through shared memory between two processes.
//!
//! - `raw-atomic` (latency floor): per direction one 64-byte line holding a
//!   32-bit sequence word, and the payload in the lines after it. The sender
//!   copies the payload in and stores the word (Release); the receiver spins
//!   on the word (Acquire) and reads the payload where it lies; the echoing
//!   side copies it straight into the other direction. One atomic each way,
//!   one payload copy per hop (as shmbus's `recv_ref` + `send`).
//! - `raw-futex` (blocking floor): the same, but the receiver never spins: it
//!   says it sleeps (a waiter flag next to the word), then parks on the word
//!   with `FUTEX_WAIT` (shared, never `FUTEX_PRIVATE_FLAG`); the sender calls
//!   `FUTEX_WAKE` after its store only when the flag says the receiver
//!   sleeps, as shmbus does with its waiter counts. In a ping-pong the
//!   receiver is nearly always asleep when the message comes, so nearly every
//!   message still costs a wake-up: that is the floor of a parked receiver.
//! - `raw-ring` (throughput ceiling): a single-producer single-consumer byte
//!   ring of 1 MiB (as a shmbus bus). A frame is a 32-byte header (the
//!   payload length; the rest unused) and the payload, 32-aligned, never
//!   wrapping (a padding marker fills the end of a lap): the same bytes per
//!   message and the same payload alignment as a shmbus frame, so the two
//!   differ only in protocol. Head and tail on their own 128-byte lines; each
//!   side keeps a cached copy of the other's index and reloads it only when
//!   it seems full or empty (as rtrb does). Copy in, copy out.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{header, run_role, spin_until, Link, Res, Rx, Tx, PEER_TIMEOUT};
use crate::spec::{ChildResult, ChildSpec, Transport};
use crate::sys::{self, SharedFile};

/// Offset of a direction's payload from its sequence word.
const PAYLOAD: usize = 64;
/// Offset of a direction's waiter flag (raw-futex) from its sequence word:
/// the same cache line.
const WAITER: usize = 4;

fn pingpong_path(spec: &ChildSpec) -> PathBuf {
    spec.dir.join("raw-pingpong.shm")
}

/// Bytes from one direction's sequence word to the other's: whole pages plus
/// half a page. With a whole number of pages, the echo's copy from one
/// direction's payload to the other's has its source and destination at the
/// same offset in a page, the layout that 4 KiB aliasing (loads that seem to
/// depend on the store 4 KiB before them) would slow down. It was suspected
/// when the first captured run had the 64 KiB raw ping-pong at 4.6 µs against
/// shmbus's 2.0 µs; measured since (docs/benchmarks.md), both layouts give
/// the same figure (about 870 ns one-way), so aliasing was not the cause
/// here. The half page stays: it costs nothing and rules it out elsewhere.
fn chan_len(size: usize) -> usize {
    (PAYLOAD + size).next_multiple_of(4096) + 2048
}

/// One end of a raw ping-pong.
pub struct RawLink {
    mem: SharedFile,
    /// Offset of the direction we send on, and of the one we receive on.
    tx: usize,
    rx: usize,
    tx_seq: u32,
    rx_seq: u32,
    futex: bool,
    /// Message size (fixed per run).
    len: usize,
}

impl RawLink {
    fn new(spec: &ChildSpec, server: bool) -> Res<RawLink> {
        let chan = chan_len(spec.size);
        let mem = if server {
            SharedFile::create(&pingpong_path(spec), 2 * chan)?
        } else {
            SharedFile::open(&pingpong_path(spec))?
        };
        if mem.len() < 2 * chan {
            return Err(format!("{} is shorter than expected", pingpong_path(spec).display()).into());
        }
        let (tx, rx) = if server { (chan, 0) } else { (0, chan) };
        Ok(RawLink { mem, tx, rx, tx_seq: 0, rx_seq: 0, futex: spec.transport == Transport::RawFutex, len: spec.size })
    }

    /// Publishes what was copied to our direction's payload.
    #[inline]
    fn publish(&mut self) {
        self.tx_seq = self.tx_seq.wrapping_add(1);
        let word = self.mem.atomic_u32(self.tx);
        // SYNC POINT with the Acquire load in the peer's `wait`: the payload
        // copied before this store is visible once the new value is.
        word.store(self.tx_seq, Ordering::Release);
        if self.futex {
            // SYNC POINT with the peer's SeqCst store of its waiter flag and
            // load of the word in `wait`: either it sees our new word and does
            // not sleep, or we see its flag and wake it (no store-load
            // reordering between our word store and our flag load).
            std::sync::atomic::fence(Ordering::SeqCst);
            if self.mem.atomic_u32(self.tx + WAITER).load(Ordering::Relaxed) != 0 {
                sys::futex_wake_one(word);
            }
        }
    }

    /// Waits until the peer published its next message.
    #[inline]
    fn wait(&mut self) -> Res<()> {
        let word = self.mem.atomic_u32(self.rx);
        let want = self.rx_seq.wrapping_add(1);
        if self.futex {
            let t0 = Instant::now();
            let waiter = self.mem.atomic_u32(self.rx + WAITER);
            loop {
                // SYNC POINT with the Release store in the peer's `publish`.
                let v = word.load(Ordering::Acquire);
                if v == want {
                    break;
                }
                if t0.elapsed() > PEER_TIMEOUT {
                    return Err(format!("peer silent for {PEER_TIMEOUT:?}").into());
                }
                // SYNC POINT with the fence and flag load in the peer's
                // `publish`: say we sleep, then look at the word once more.
                waiter.store(1, Ordering::SeqCst);
                if word.load(Ordering::SeqCst) != v {
                    waiter.store(0, Ordering::Relaxed);
                    continue;
                }
                // The kernel sleeps only while the word still holds `v`.
                sys::futex_wait(word, v, Duration::from_millis(100));
                waiter.store(0, Ordering::Relaxed);
            }
        } else {
            // SYNC POINT with the Release store in the peer's `publish`.
            spin_until(|| word.load(Ordering::Acquire) == want)?;
        }
        self.rx_seq = want;
        Ok(())
    }
}

impl Link for RawLink {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        self.mem.write(self.tx + PAYLOAD, msg);
        self.publish();
        Ok(())
    }

    fn recv_seq(&mut self) -> Res<u64> {
        self.wait()?;
        Ok(self.mem.read_u64(self.rx + PAYLOAD))
    }

    fn echo(&mut self) -> Res<u64> {
        self.wait()?;
        let seq = self.mem.read_u64(self.rx + PAYLOAD);
        // The size is fixed per run; the peer's payload is exactly that long.
        self.mem.copy_within(self.rx + PAYLOAD, self.tx + PAYLOAD, self.len);
        self.publish();
        Ok(seq)
    }
}

// ---------------------------------------------------------------------------
// The SPSC ring.

const RING_HEAD: usize = 0;
const RING_TAIL: usize = 128;
const RING_DATA: usize = 4096;
/// Ring bytes (the same as a shmbus bus in this harness).
const RING_CAPACITY: u64 = super::shm::CAPACITY;
/// A frame length meaning "the rest of this lap is padding".
const PAD: u64 = u64::MAX;

fn ring_path(spec: &ChildSpec) -> PathBuf {
    spec.dir.join("raw-ring.shm")
}

fn ring_capacity(size: usize) -> u64 {
    RING_CAPACITY.max(((size as u64 + FRAME_HEADER) * 4).next_power_of_two())
}

/// Frame header bytes (the length in the first 8) and frame alignment.
const FRAME_HEADER: u64 = 32;

#[inline]
fn frame_len(len: usize) -> u64 {
    (FRAME_HEADER + len as u64).next_multiple_of(FRAME_HEADER)
}

/// The producing end of the ring.
pub struct RingTx {
    mem: SharedFile,
    cap: u64,
    tail: u64,
    head_cache: u64,
}

impl Tx for RingTx {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        let need = frame_len(msg.len());
        let off = self.tail % self.cap;
        let room = self.cap - off;
        // A frame never wraps: if it does not fit before the end of the lap,
        // the rest of the lap becomes padding.
        let pad = if need <= room { 0 } else { room };
        let end = self.tail + pad + need;
        if end - self.head_cache > self.cap {
            let head = self.mem.atomic_u64(RING_HEAD);
            let cap = self.cap;
            // SYNC POINT with the consumer's Release store of the head: the
            // bytes before it were read and may be overwritten.
            spin_until(|| {
                self.head_cache = head.load(Ordering::Acquire);
                end - self.head_cache <= cap
            })?;
        }
        let mut at = self.tail;
        if pad > 0 {
            self.mem.write(RING_DATA + off as usize, &PAD.to_le_bytes());
            at += pad;
        }
        let o = RING_DATA + (at % self.cap) as usize;
        self.mem.write(o, &(msg.len() as u64).to_le_bytes());
        self.mem.write(o + FRAME_HEADER as usize, msg);
        self.tail = end;
        // SYNC POINT with the consumer's Acquire load of the tail: the frame
        // (and any padding marker) is visible once the tail is.
        self.mem.atomic_u64(RING_TAIL).store(end, Ordering::Release);
        Ok(())
    }
}

/// The consuming end of the ring.
pub struct RingRx {
    mem: SharedFile,
    cap: u64,
    head: u64,
    tail_cache: u64,
    buf: Vec<u8>,
}

impl Rx for RingRx {
    fn recv(&mut self) -> Res<(u64, u8)> {
        loop {
            if self.head == self.tail_cache {
                let tail = self.mem.atomic_u64(RING_TAIL);
                let head = self.head;
                // SYNC POINT with the producer's Release store of the tail.
                spin_until(|| {
                    self.tail_cache = tail.load(Ordering::Acquire);
                    self.tail_cache != head
                })?;
            }
            let off = self.head % self.cap;
            let len = self.mem.read_u64(RING_DATA + off as usize);
            if len == PAD {
                self.head += self.cap - off;
                continue;
            }
            if len > self.cap / 4 || frame_len(len as usize) > self.cap - off {
                return Err(format!("ring frame at {} has impossible length {len}", self.head).into());
            }
            let len = len as usize;
            self.buf.resize(len, 0);
            self.mem.read(RING_DATA + off as usize + FRAME_HEADER as usize, &mut self.buf);
            self.head += frame_len(len);
            // SYNC POINT with the producer's Acquire load of the head: we are
            // done reading the bytes before it.
            self.mem.atomic_u64(RING_HEAD).store(self.head, Ordering::Release);
            return header(&self.buf);
        }
    }
}

/// Runs a child of a raw-baseline case.
pub fn run(spec: &ChildSpec, ready: &mut dyn FnMut(&str)) -> Res<ChildResult> {
    let ring_len = |size| RING_DATA + ring_capacity(size) as usize;
    run_role(
        spec,
        ready,
        |spec, ready| {
            let l = RawLink::new(spec, true)?;
            ready("");
            Ok(l)
        },
        |spec| RawLink::new(spec, false),
        |spec, ready| {
            let mem = SharedFile::create(&ring_path(spec), ring_len(spec.size))?;
            ready("");
            Ok(RingRx {
                mem,
                cap: ring_capacity(spec.size),
                head: 0,
                tail_cache: 0,
                buf: Vec::with_capacity(spec.size),
            })
        },
        |spec| {
            let mem = SharedFile::open(&ring_path(spec))?;
            if mem.len() < ring_len(spec.size) {
                return Err(format!("{} is shorter than expected", ring_path(spec).display()).into());
            }
            Ok(RingTx { mem, cap: ring_capacity(spec.size), tail: 0, head_cache: 0 })
        },
    )
}

/// A ring's two ends in one process (for in-process profiling): the file is
/// created in `dir` and mapped twice.
pub fn ring_pair(dir: &std::path::Path, size: usize) -> Res<(RingTx, RingRx)> {
    let path = dir.join("raw-ring.shm");
    let cap = ring_capacity(size);
    let rx_mem = SharedFile::create(&path, RING_DATA + cap as usize)?;
    let tx_mem = SharedFile::open(&path)?;
    Ok((
        RingTx { mem: tx_mem, cap, tail: 0, head_cache: 0 },
        RingRx { mem: rx_mem, cap, head: 0, tail_cache: 0, buf: Vec::with_capacity(size) },
    ))
}
