//! Reliability suite, item 8: a loom model of the ring protocol.
//!
//! **This is a model, a transcription of the protocol, not the shipped
//! code**: a design aid that runs in every `cargo test`. The shipped
//! `Producer` and `Consumer` themselves run under loom in `tests/loom_real.rs`
//! (through `src/sync.rs`, built with `--cfg loom`; docs/reliability.md,
//! "Loom over the real code"). A change to the protocol must pass there; this
//! transcription only says what the design intends, and may lag behind it.
//!
//! It was written when the core reached the mapping only through raw
//! pointers that loom could not intercept, so it transcribes the steps and memory
//! orderings of `producer.rs` (announce, tail CAS, payload, stamp with
//! Release, hold released with Release, fence(SeqCst) then wake if a waiter
//! is counted), `consumer.rs` (stamp Acquire, copy, hold Release, fence then
//! wake; in overwrite mode copy then fence(Acquire) then re-check the tail)
//! and `wait.rs` (read the futex word, count the waiter with SeqCst, re-check,
//! futex_wait) over loom atomics, with frames of one unit so that
//! positions count frames. The futex is modelled as the kernel does it: the
//! waker bumps the word and then wakes under the bucket lock, the waiter
//! compares the word under the same lock before sleeping (a loom Mutex and
//! Condvar); sleeps are unbounded here, so a lost wake-up is a deadlock that
//! loom reports. In block mode the payload is a loom `UnsafeCell`, so any
//! overlap of a publisher's write with a subscriber's read is reported as a
//! data race. See docs/reliability.md for what the model leaves out.
//!
//! Runs in `cargo test` with a bounded preemption count
//! (`LOOM_MAX_PREEMPTIONS`, default 1; 2 under `SHMBUS_RELIABILITY_FULL=1`).
//! Both bugs this model found (a lost wake-up without the waiter's
//! fence(SeqCst) in wait.rs, a torn overwrite-mode frame without the
//! publisher's fence(Release) after its claim) show up at a bound of 1.

use loom::cell::UnsafeCell;
use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering::*};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

const ACTIVE: u32 = 1;
const CLAIMED: u32 = 2;

/// A shared futex word, modelled like the kernel: compare-and-sleep and wake
/// are serialised by the hash-bucket lock.
struct Futex {
    word: AtomicU32,
    bucket: Mutex<()>,
    cv: Condvar,
}

impl Futex {
    fn new() -> Futex {
        Futex { word: AtomicU32::new(0), bucket: Mutex::new(()), cv: Condvar::new() }
    }
    /// `os::futex_wait`: sleeps while the word holds `expected` (no timeout in the model).
    fn wait(&self, expected: u32) {
        let g = self.bucket.lock().unwrap();
        if self.word.load(Relaxed) == expected {
            drop(self.cv.wait(g).unwrap());
        }
    }
    /// `wait::wake`: bump the word (Release), then wake every sleeper.
    fn wake(&self) {
        self.word.fetch_add(1, Release);
        let _g = self.bucket.lock().unwrap();
        self.cv.notify_all();
    }
}

/// `wait::wait_until` with `WaitStrategy::Park`, minus deadlines and slices.
fn wait_until(futex: &Futex, waiters: &AtomicU32, mut ready: impl FnMut() -> bool) {
    loop {
        if ready() {
            return;
        }
        let seen = futex.word.load(Acquire);
        waiters.fetch_add(1, SeqCst);
        fence(SeqCst);
        if ready() {
            waiters.fetch_sub(1, Relaxed);
            return;
        }
        futex.wait(seen);
        waiters.fetch_sub(1, Relaxed);
    }
}

/// `wait::wake_if_waiting`, after the caller's `fence(SeqCst)`.
fn wake_if_waiting(futex: &Futex, waiters: &AtomicU32) {
    if waiters.load(Relaxed) > 0 {
        futex.wake();
    }
}

struct Slot {
    subscriber: bool,
    hold: AtomicU64,
    hold_end: AtomicU64,
    flags: AtomicU32,
}

struct Ring {
    cap: u64,
    overwrite: bool,
    /// The 128-bit (position, sequence) word: position in the low half.
    tail: AtomicU64,
    stamp: Vec<AtomicU64>,
    seq: Vec<AtomicU64>,
    /// Block mode: the payload, written and read non-atomically (as memcpy).
    payload: Vec<UnsafeCell<u64>>,
    /// Overwrite mode: the payload as two words copied without atomics of
    /// their own width in the real code; relaxed atomics here (a torn copy is
    /// legal there, and must be caught by the re-check).
    words: Vec<[AtomicU64; 2]>,
    slots: Vec<Slot>,
    data: Futex,
    data_waiters: AtomicU32,
    space: Futex,
    space_waiters: AtomicU32,
}

fn tail_word(pos: u64, seq: u64) -> u64 {
    pos | seq << 32
}

impl Ring {
    fn new(cap: u64, overwrite: bool, subscribers: usize, publishers: usize) -> Ring {
        let slots = (0..subscribers + publishers)
            .map(|i| Slot {
                subscriber: i < subscribers,
                // Subscribers attached before any message: hold at the tail (0), active in block mode.
                hold: AtomicU64::new(0),
                hold_end: AtomicU64::new(0),
                flags: AtomicU32::new(if i < subscribers && !overwrite { ACTIVE } else { 0 }),
            })
            .collect();
        Ring {
            cap,
            overwrite,
            tail: AtomicU64::new(0),
            // Stamps start "stale" (a position before the first), like `write_header`.
            stamp: (0..cap).map(|_| AtomicU64::new(u64::MAX)).collect(),
            seq: (0..cap).map(|_| AtomicU64::new(0)).collect(),
            payload: (0..cap).map(|_| UnsafeCell::new(0)).collect(),
            words: (0..cap).map(|_| [AtomicU64::new(0), AtomicU64::new(0)]).collect(),
            slots,
            data: Futex::new(),
            data_waiters: AtomicU32::new(0),
            space: Futex::new(),
            space_waiters: AtomicU32::new(0),
        }
    }

    fn idx(&self, pos: u64) -> usize {
        (pos % self.cap) as usize
    }

    /// `producer::scan_limit`: a lap past the peer furthest behind.
    fn limit(&self, own: usize, tail: u64) -> u64 {
        let mut behind_max = 0;
        for (i, s) in self.slots.iter().enumerate() {
            if i == own || (s.subscriber && self.overwrite) || s.flags.load(Acquire) & ACTIVE == 0 {
                continue;
            }
            let behind = tail.wrapping_sub(s.hold.load(Acquire));
            if behind <= self.cap && behind > behind_max {
                behind_max = behind;
            }
        }
        tail - behind_max + self.cap
    }

    /// `Producer::send` of one one-unit frame carrying `value`.
    fn send(&self, own: usize, value: u64) -> u64 {
        let me = &self.slots[own];
        let (pos, seq) = loop {
            let cur = self.tail.load(SeqCst);
            let (pos, seq) = (cur & 0xffff_ffff, cur >> 32);
            if pos + 1 > self.limit(own, pos) {
                // `Producer::wait_for_space`.
                wait_until(&self.space, &self.space_waiters, || {
                    let t = self.tail.load(SeqCst) & 0xffff_ffff;
                    t < self.limit(own, t)
                });
                continue;
            }
            // Announce, then claim (the CAS's Release half publishes the announcement).
            me.hold_end.store(pos + 1, Relaxed);
            me.hold.store(pos, Relaxed);
            me.flags.store(ACTIVE, Relaxed);
            if self.tail.compare_exchange(cur, tail_word(pos + 1, seq + 1), SeqCst, SeqCst).is_ok() {
                break (pos, seq);
            }
        };
        me.flags.store(ACTIVE | CLAIMED, Relaxed);
        // `Producer::try_claim`: a Release fence after the claim, so an
        // overwrite-mode reader that copies any byte written below also sees
        // the claim in its re-check of the tail.
        fence(Release);
        let i = self.idx(pos);
        if self.overwrite {
            self.words[i][0].store(value, Relaxed);
            self.words[i][1].store(value, Relaxed);
        } else {
            // SAFETY: loom checks the claim: no other thread may access this
            // cell while we write it (a violation is reported as a race).
            self.payload[i].with_mut(|p| unsafe { *p = value });
        }
        self.seq[i].store(seq, Relaxed);
        // Commit.
        self.stamp[i].store(pos, Release);
        me.flags.store(0, Release);
        fence(SeqCst);
        wake_if_waiting(&self.data, &self.data_waiters);
        wake_if_waiting(&self.space, &self.space_waiters);
        seq
    }

    /// `Consumer::read` in block mode: waits for the frame at `cursor`, copies
    /// it, advances its hold and wakes a parked publisher.
    fn recv_block(&self, own: usize, cursor: &mut u64) -> (u64, u64) {
        let i = self.idx(*cursor);
        let pos = *cursor;
        wait_until(&self.data, &self.data_waiters, || self.stamp[i].load(Acquire) == pos);
        // SAFETY: the stamp says the frame is committed and our hold keeps
        // publishers off it; loom reports a race if that does not hold.
        let value = self.payload[i].with(|p| unsafe { *p });
        let seq = self.seq[i].load(Relaxed);
        *cursor += 1;
        self.slots[own].hold.store(*cursor, Release);
        fence(SeqCst);
        wake_if_waiting(&self.space, &self.space_waiters);
        (seq, value)
    }

    /// `Consumer::try_read` in overwrite mode: `Some(Ok(seq, value))`,
    /// `Some(Err(()))` when overrun (resynchronise), `None` when not ready.
    fn try_recv_overwrite(&self, cursor: u64) -> Option<Result<(u64, u64, u64), ()>> {
        let i = self.idx(cursor);
        let overrun = |t: u64| t.wrapping_sub(cursor) > self.cap;
        if self.stamp[i].load(Acquire) != cursor {
            return if overrun(self.tail.load(Acquire) & 0xffff_ffff) { Some(Err(())) } else { None };
        }
        let seq = self.seq[i].load(Relaxed);
        let a = self.words[i][0].load(Relaxed);
        let b = self.words[i][1].load(Relaxed);
        fence(Acquire);
        if overrun(self.tail.load(Acquire) & 0xffff_ffff) {
            return Some(Err(()));
        }
        Some(Ok((seq, a, b)))
    }
}

mod reliability_support;

/// Runs `f` under loom and prints the number of executions explored.
fn check(name: &str, f: impl Fn() + Sync + Send + 'static) {
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = runs.clone();
    let b = builder();
    let bound = b.preemption_bound;
    b.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f()
    });
    reliability_support::figure(
        name,
        &format!(
            "preemption_bound={} executions={} failures=0",
            bound.map_or("unbounded".to_string(), |b| b.to_string()),
            runs.load(std::sync::atomic::Ordering::Relaxed)
        ),
    );
}

fn builder() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    if std::env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
        b.preemption_bound = Some(if std::env::var("SHMBUS_RELIABILITY_FULL").is_ok_and(|v| v == "1") { 2 } else { 1 });
    }
    b
}

/// Two publishers and one subscriber, block mode, a ring of one frame: the
/// second claim must wait for the subscriber (space wake-up) and for the first
/// publisher's in-flight claim; the subscriber parks for data (data wake-up).
/// Both messages arrive once, in sequence order, intact, with no data race
/// and no lost wake-up.
#[test]
fn loom_block_two_publishers_one_subscriber() {
    check("loom_block_two_publishers_one_subscriber", || {
        let ring = Arc::new(Ring::new(1, false, 1, 2));
        let pubs: Vec<_> = (0..2u64)
            .map(|k| {
                let ring = ring.clone();
                thread::spawn(move || ring.send(1 + k as usize, 100 + k))
            })
            .collect();
        let mut cursor = 0;
        let a = ring.recv_block(0, &mut cursor);
        let b = ring.recv_block(0, &mut cursor);
        let seqs: Vec<u64> = pubs.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!((a.0, b.0), (0, 1), "sequence numbers out of order");
        let mut values = [a.1, b.1];
        values.sort_unstable();
        assert_eq!(values, [100, 101]);
        // The message with sequence s carries the value of the publisher that got s.
        for (k, s) in seqs.iter().enumerate() {
            let got = if *s == 0 { a.1 } else { b.1 };
            assert_eq!(got, 100 + k as u64);
        }
    });
}

/// One publisher and two subscribers, block mode, a ring of one frame: the
/// publisher must wait for the slower subscriber each time; both subscribers
/// receive both messages, with no data race and no lost wake-up.
#[test]
fn loom_block_one_publisher_two_subscribers() {
    check("loom_block_one_publisher_two_subscribers", || {
        let ring = Arc::new(Ring::new(1, false, 2, 1));
        let subs: Vec<_> = (0..2usize)
            .map(|s| {
                let ring = ring.clone();
                thread::spawn(move || {
                    let mut cursor = 0;
                    [ring.recv_block(s, &mut cursor), ring.recv_block(s, &mut cursor)]
                })
            })
            .collect();
        ring.send(2, 7);
        ring.send(2, 8);
        for h in subs {
            assert_eq!(h.join().unwrap(), [(0, 7), (1, 8)]);
        }
    });
}

/// Overwrite mode, a ring of two frames, one publisher sending three
/// messages while a subscriber reads with the seqlock re-check: a delivered
/// message is never torn (both words of the payload belong to its sequence
/// number), sequence numbers only grow, and received + lost == published.
#[test]
fn loom_overwrite_seqlock_never_delivers_torn_frames() {
    check("loom_overwrite_seqlock_never_delivers_torn_frames", || {
        let ring = Arc::new(Ring::new(2, true, 1, 1));
        let publ = {
            let ring = ring.clone();
            thread::spawn(move || {
                for s in 0..3u64 {
                    ring.send(1, 1000 + s);
                }
            })
        };
        let mut cursor = 0u64;
        let mut next_seq = 0u64;
        let (mut received, mut lost) = (0u64, 0u64);
        // A bounded number of attempts (the model has no waiting in this test).
        for _ in 0..4 {
            match ring.try_recv_overwrite(cursor) {
                None => thread::yield_now(),
                Some(Ok((seq, a, b))) => {
                    assert_eq!((a, b), (1000 + seq, 1000 + seq), "torn frame delivered");
                    assert!(seq >= next_seq);
                    lost += seq - next_seq;
                    next_seq = seq + 1;
                    received += 1;
                    cursor += 1;
                }
                Some(Err(())) => {
                    // `Consumer::resync`: jump to the oldest frame a lap behind the tail.
                    let t = ring.tail.load(SeqCst) & 0xffff_ffff;
                    cursor = t.saturating_sub(ring.cap).max(cursor + 1);
                }
            }
        }
        publ.join().unwrap();
        // Drain what is left.
        while let Some(r) = ring.try_recv_overwrite(cursor) {
            match r {
                Ok((seq, a, b)) => {
                    assert_eq!((a, b), (1000 + seq, 1000 + seq), "torn frame delivered");
                    lost += seq - next_seq;
                    next_seq = seq + 1;
                    received += 1;
                    cursor += 1;
                }
                Err(()) => cursor = (ring.tail.load(SeqCst) & 0xffff_ffff) - ring.cap,
            }
        }
        lost += 3 - next_seq;
        assert_eq!(received + lost, 3);
    });
}
