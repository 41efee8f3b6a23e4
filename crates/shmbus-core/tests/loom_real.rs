//! Loom over the real code: the shipped `Producer`, `Consumer`, `Bus`,
//! `Region::heap` and `wait.rs`, with every atomic, fence, futex call and
//! clock replaced through `src/sync.rs` (see its documentation for what each
//! replacement does and where it is stronger than hardware).
//!
//! Run with
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p shmbus-core --release --test loom_real`
//! (a step of `.ci/run`). Each model is small and runs with a bounded number
//! of preemptions (the bound is given per model; `LOOM_MAX_PREEMPTIONS`
//! overrides it). Every model prints how many executions it explored. Models
//! that find a bug in the current protocol stay here, `#[ignore]`d with the
//! finding; docs/reliability.md describes the counterexamples.
//!
//! Sizes: the ring is the smallest a bus allows (4096 bytes). A message of
//! `BIG` bytes fills a quarter of it (a 1024-byte frame). Payload bytes are
//! copied word by word with Relaxed atomics, so every concurrent copy is a
//! place where loom explores torn values: concurrently sent messages are kept
//! to one or two words, and a full ring is written before the threads start
//! (single-threaded, so it costs time but no exploration).
#![cfg(loom)]

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use shmbus_core::{Bus, BusConfig, Consumer, Overflow, PeerKind, Poll, Producer, Region, StartAt, WaitStrategy};

/// The largest payload of a 4096-byte ring: its frame is a quarter of the ring.
const BIG: usize = 992;
/// A small payload: one word.
const SMALL: usize = 8;

fn config(overflow: Overflow) -> BusConfig {
    BusConfig::default().capacity(4096).max_message(BIG as u32).max_peers(4).overflow(overflow)
}

/// A self-checking payload: every byte is a function of the sequence number
/// and its index, so a payload mixed from two messages is detected.
fn payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seq as u8).wrapping_mul(37).wrapping_add(i as u8).wrapping_add(1)).collect()
}

fn intact(seq: u64, buf: &[u8]) -> bool {
    buf == payload(seq, buf.len()).as_slice()
}

fn publisher(region: &Region) -> Producer {
    Producer::new(Bus::heap(region.share_heap().unwrap(), PeerKind::Publisher).unwrap(), WaitStrategy::Park)
}

fn subscriber(region: &Region, start: StartAt) -> Consumer {
    Consumer::new(Bus::heap(region.share_heap().unwrap(), PeerKind::Subscriber).unwrap(), start, WaitStrategy::Park)
}

/// Sends message `seq` (its payload is `payload(seq, len)`); the bus assigns
/// sequence numbers, so the caller's `seq` must be the bus's next one.
fn send(p: &mut Producer, seq: u64, len: usize) {
    let got = p.send(&payload(seq, len), None).expect("send");
    assert_eq!(got, seq, "the bus numbered the message differently");
}

/// Runs `f` under loom with at most `bound` preemptions (or
/// `LOOM_MAX_PREEMPTIONS`) and prints the executions explored.
fn model(name: &str, bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let bound = std::env::var("LOOM_MAX_PREEMPTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(bound);
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(bound);
    builder.max_branches = 1_000_000;
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let started = std::time::Instant::now();
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f()
    });
    eprintln!(
        "loom_real {name}: preemption bound {bound}, {} executions, {:.1?}",
        runs.load(std::sync::atomic::Ordering::Relaxed),
        started.elapsed()
    );
}

/// Reads everything until the publishers are `done` and the ring is drained,
/// checking each message; returns the sequence numbers received.
fn drain(sub: &mut Consumer, done: &AtomicBool) -> Vec<u64> {
    drain_lagged(sub, done, false).0
}

/// As `drain`; with `allow_lagged`, a `Lagged` is counted (and returned)
/// instead of failing the model.
fn drain_lagged(sub: &mut Consumer, done: &AtomicBool, allow_lagged: bool) -> (Vec<u64>, u64) {
    let mut lagged = 0;
    let mut buf = Vec::new();
    let mut got = Vec::new();
    loop {
        // Read `done` before looking: if it was set, an Empty read means drained.
        let finished = done.load(Ordering::Acquire);
        match sub.try_read(&mut buf).expect("read") {
            Poll::Message { seq, len } => {
                assert_eq!(len, buf.len());
                assert!(intact(seq, &buf), "message #{seq} delivered torn: {buf:?}");
                got.push(seq);
            }
            Poll::Lagged { lost } if allow_lagged => lagged += lost,
            Poll::Lagged { lost } => panic!("Lagged({lost}) in block mode after {got:?}"),
            Poll::Empty if finished => return (got, lagged),
            Poll::Empty => thread::yield_now(),
        }
    }
}

fn assert_consecutive(got: &[u64], last: u64) {
    if let Some(&first) = got.first() {
        let want: Vec<u64> = (first..=last).collect();
        assert_eq!(got, want.as_slice(), "not every message after the first one received was delivered in order");
    }
}

/// (a) A subscriber attaches at `Latest` while a publisher sends three small
/// messages (block mode): what it receives is intact, in order, without
/// `Lagged`, and is exactly the messages sent after its starting point.
#[test]
fn attach_latest_during_publish() {
    model("attach_latest_during_publish", 2, || {
        let region = Region::heap(&config(Overflow::Block)).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let mut publ = publisher(&region);
        let d = done.clone();
        let p = thread::spawn(move || {
            for seq in 0..3 {
                send(&mut publ, seq, SMALL);
            }
            d.store(true, Ordering::Release);
        });
        let mut sub = subscriber(&region, StartAt::Latest);
        let got = drain(&mut sub, &done);
        p.join().unwrap();
        assert_consecutive(&got, 2);
    });
}

/// (a) A subscriber attaches at `Oldest` to a full ring while a publisher
/// sends one small message that overwrites the oldest frame (block mode).
/// The ring holds, oldest first, two small frames (#0, #1), three `BIG` ones
/// and one of 864 bytes that ends the lap, all written before the threads
/// start. The subscriber reads its first two messages: intact, in order, and
/// no `Lagged` (what `Oldest` could not retain while attaching is simply not
/// part of its replay). Only the small frames are read, to keep it cheap.
#[test]
fn attach_oldest_during_publish() {
    model("attach_oldest_during_publish", 2, || {
        let region = Region::heap(&config(Overflow::Block)).unwrap();
        let mut publ = publisher(&region);
        for (seq, len) in [SMALL, SMALL, BIG, BIG, BIG, 864].into_iter().enumerate() {
            send(&mut publ, seq as u64, len);
        }
        let p = thread::spawn(move || send(&mut publ, 6, SMALL));
        let mut sub = subscriber(&region, StartAt::Oldest);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while got.len() < 2 {
            match sub.read(&mut buf, None).expect("read") {
                Poll::Message { seq, .. } => {
                    assert!(intact(seq, &buf), "message #{seq} delivered torn: {buf:?}");
                    got.push(seq);
                }
                other => panic!("{other:?} in block mode after {got:?}"),
            }
        }
        // The publisher may be parked for space behind our hold: detaching
        // releases it (and wakes it).
        drop(sub);
        p.join().unwrap();
        assert_eq!(got[1], got[0] + 1, "not in order: {got:?}");
    });
}

/// (a) The same race as `attach_oldest_during_publish`, tolerating the
/// `Lagged` that model finds, to look further: what is delivered is still
/// intact and in order, and the subscriber does not hang or miss the last
/// message.
#[test]
fn attach_oldest_during_publish_intact() {
    model("attach_oldest_during_publish_intact", 1, || {
        let region = Region::heap(&config(Overflow::Block)).unwrap();
        let mut publ = publisher(&region);
        for seq in 0..4 {
            send(&mut publ, seq, BIG);
        }
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let p = thread::spawn(move || {
            for seq in 4..6 {
                send(&mut publ, seq, SMALL);
            }
            d.store(true, Ordering::Release);
        });
        let mut sub = subscriber(&region, StartAt::Oldest);
        let (got, _lagged) = drain_lagged(&mut sub, &done, true);
        p.join().unwrap();
        assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order: {got:?}");
        assert_eq!(got.last(), Some(&5), "an Oldest subscriber attached before the last send missed it");
    });
}

/// (b) Two publishers claim concurrently (`per` small messages each) while
/// a subscriber attached beforehand reads, parking when the ring is empty:
/// one total order (sequence numbers `0..2 * per` in ring order), every
/// payload intact, each publisher's messages in the order it sent them.
fn two_publishers(per: u8) {
    let region = Region::heap(&config(Overflow::Block)).unwrap();
    let mut sub = subscriber(&region, StartAt::Latest);
    let mut handles = Vec::new();
    for id in 0..2u8 {
        let mut publ = publisher(&region);
        handles.push(thread::spawn(move || {
            for k in 0..per {
                // The bus picks the sequence number, so the payload names its
                // publisher and that publisher's counter instead.
                publ.send(&[id, k, id ^ 0x5a, k ^ 0xa5, 7, 7, 7, 7], None).expect("send");
            }
        }));
    }
    let mut buf = Vec::new();
    let mut got = Vec::new();
    while got.len() < 2 * per as usize {
        match sub.read(&mut buf, None).expect("read") {
            Poll::Message { seq, .. } => got.push((seq, buf.clone())),
            other => panic!("{other:?} in block mode"),
        }
    }
    for h in handles {
        h.join().unwrap();
    }
    let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (0..2 * u64::from(per)).collect::<Vec<_>>());
    let mut next = [0u8; 2];
    for (_, b) in &got {
        let (id, k) = (b[0], b[1]);
        assert!(id < 2 && b[2] == id ^ 0x5a && b[3] == k ^ 0xa5 && b[4..] == [7; 4], "torn payload {b:?}");
        assert_eq!(k, next[id as usize], "publisher {id}'s messages out of order");
        next[id as usize] += 1;
    }
}

#[test]
fn two_publishers_one_message_each() {
    model("two_publishers_one_message_each", 2, || two_publishers(1));
}

#[test]
fn two_publishers_two_messages_each() {
    model("two_publishers_two_messages_each", 1, || two_publishers(2));
}

/// (b) A publisher that detaches with a claim in flight (its `Drop` publishes
/// the claim as padding) while another publisher sends: a parked subscriber
/// skips the abandoned frame and receives the other message intact, with no
/// `Lagged` (block mode).
#[test]
fn abandoned_claim_does_not_wedge() {
    model("abandoned_claim_does_not_wedge", 2, || {
        let region = Region::heap(&config(Overflow::Block)).unwrap();
        let mut sub = subscriber(&region, StartAt::Latest);
        let mut quitter = publisher(&region);
        let mut sender = publisher(&region);
        let q = thread::spawn(move || {
            let claim = quitter.try_claim(SMALL);
            assert!(claim.is_some(), "an empty ring refused a claim");
            drop(quitter);
        });
        let s = thread::spawn(move || {
            sender.send(&[0xab; SMALL], None).expect("send");
        });
        let mut buf = Vec::new();
        match sub.read(&mut buf, None).expect("read") {
            Poll::Message { len, .. } => assert_eq!(&buf[..len], &[0xab; SMALL], "torn or wrong payload"),
            other => panic!("{other:?} in block mode"),
        }
        q.join().unwrap();
        s.join().unwrap();
        let after = sub.try_read(&mut buf).expect("read");
        assert!(!matches!(after, Poll::Message { .. }), "the abandoned claim was delivered: {after:?}");
    });
}

/// (c) Overwrite mode, the seqlock: a subscriber positioned at the oldest of
/// four `BIG` frames copies it while a publisher laps it with a message of
/// three words. The subscriber either delivers the old message intact or
/// reports `Lagged` and then delivers intact messages: never a torn payload.
#[test]
fn overwrite_lapped_reader_never_torn() {
    model("overwrite_lapped_reader_never_torn", 3, || {
        let region = Region::heap(&config(Overflow::Overwrite)).unwrap();
        let mut publ = publisher(&region);
        for seq in 0..4 {
            send(&mut publ, seq, BIG);
        }
        let mut sub = subscriber(&region, StartAt::Oldest);
        let p = thread::spawn(move || send(&mut publ, 4, 24));
        let mut buf = Vec::new();
        let mut lost = 0;
        // The first read races with the lapping claim.
        match sub.try_read(&mut buf).expect("read") {
            Poll::Message { seq, .. } => assert!(intact(seq, &buf), "message #{seq} delivered torn"),
            Poll::Lagged { lost: n } => lost += n,
            Poll::Empty => {}
        }
        p.join().unwrap();
        // Afterwards everything still in the ring is intact.
        for _ in 0..8 {
            match sub.try_read(&mut buf).expect("read") {
                Poll::Message { seq, .. } => assert!(intact(seq, &buf), "message #{seq} delivered torn"),
                Poll::Lagged { lost: n } => lost += n,
                Poll::Empty => break,
            }
        }
        assert!(lost <= 1, "lost {lost} messages to one lapping claim");
    });
}

/// (d) The park/wake handshake: a subscriber parked (`WaitStrategy::Park`,
/// no deadline) on an empty ring is woken by the publisher's commit. A lost
/// wake-up is a deadlock that loom reports (a park is unbounded in the model).
#[test]
fn parked_subscriber_is_woken() {
    model("parked_subscriber_is_woken", 3, || {
        let region = Region::heap(&config(Overflow::Block)).unwrap();
        let mut sub = subscriber(&region, StartAt::Latest);
        let mut publ = publisher(&region);
        let p = thread::spawn(move || send(&mut publ, 0, SMALL));
        let mut buf = Vec::new();
        assert_eq!(sub.read(&mut buf, None).expect("read"), Poll::Message { seq: 0, len: SMALL });
        assert!(intact(0, &buf));
        p.join().unwrap();
    });
}

/// (d) The other direction: a publisher parked on a full block-mode ring is
/// woken by the subscriber's reads (checkpoints and running dry).
#[test]
fn parked_publisher_is_woken() {
    model("parked_publisher_is_woken", 2, || {
        let region = Region::heap(&config(Overflow::Block)).unwrap();
        let mut sub = subscriber(&region, StartAt::Latest);
        let mut publ = publisher(&region);
        for seq in 0..4 {
            send(&mut publ, seq, BIG);
        }
        // The ring is full: this send parks until the subscriber frees space.
        let p = thread::spawn(move || send(&mut publ, 4, SMALL));
        let mut buf = Vec::new();
        for seq in 0..5 {
            assert_eq!(sub.read(&mut buf, None).expect("read"), Poll::Message { seq, len: buf.len() });
            assert!(intact(seq, &buf), "message #{seq} delivered torn");
        }
        p.join().unwrap();
    });
}

/// Issue 9, finding 2: a publisher that claimed a frame and stays stopped
/// (here: a thread that never commits until the subscriber is done) is
/// abandoned by the subscriber waiting on it once its unblock timeout
/// passes (the model's clock advances 1 ms per reading); the subscriber
/// counts it as abandoned and receives the next publisher's message intact;
/// the stopped publisher's late commit then fails as abandoned.
#[test]
fn stalled_claim_is_abandoned() {
    model("stalled_claim_is_abandoned", 3, || {
        let region = Region::heap(&config(Overflow::Block)).unwrap();
        let mut sub = subscriber(&region, StartAt::Latest);
        sub.set_unblock_timeout(std::time::Duration::from_millis(1));
        let mut stalled = publisher(&region);
        let mut other = publisher(&region);
        let claim = stalled.try_claim(8).expect("claim");
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let p = thread::spawn(move || {
            send(&mut other, 1, SMALL);
            d.store(true, Ordering::Release);
        });
        let mut buf = Vec::new();
        let got = loop {
            match sub.read(&mut buf, None).expect("read") {
                Poll::Message { seq, .. } => break seq,
                other => panic!("{other:?}"),
            }
        };
        p.join().unwrap();
        assert_eq!(got, 1, "the next message after the abandoned claim");
        assert!(intact(1, &buf), "torn: {buf:?}");
        assert_eq!(sub.abandoned_total(), 1);
        assert!(matches!(stalled.commit(claim, false), Err(shmbus_core::ClaimError::Abandoned { seq: 0 })));
        let _ = done;
    });
}

/// (k) A batch of three messages, the header of its second frame already
/// written (a commit stopped half way), whose owner finishes the commit
/// while a subscriber waiting at the batch abandons it (unblock timeout
/// 1 ms; a bounded park returns at once in the model): exactly one of them
/// wins the first frame, so the batch is published whole or abandoned
/// whole. Whatever the interleaving, the subscriber receives the intact
/// messages 0..k of the batch (k = 3 or 0), counts the other 3 - k as
/// abandoned (not lost), then the next publisher's message #3; and the
/// owner's commit says the same k (Ok for 3, Abandoned naming message #0).
#[test]
fn batch_commit_races_abandonment() {
    model("batch_commit_races_abandonment", 2, || {
        let region = Region::heap(&config(Overflow::Block)).unwrap();
        let mut sub = subscriber(&region, StartAt::Latest);
        sub.set_unblock_timeout(std::time::Duration::from_millis(1));
        let mut batcher = publisher(&region);
        let mut other = publisher(&region);
        let msgs: Vec<Vec<u8>> = (0..3).map(|s| payload(s, SMALL)).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
        let claim = batcher.claim_batch_stopping(&refs, 1).expect("claim the batch");
        let owner = thread::spawn(move || match batcher.commit(claim, false) {
            Ok(_) => 3,
            Err(shmbus_core::ClaimError::Abandoned { seq }) => seq,
            Err(e) => panic!("{e:?}"),
        });
        let next = thread::spawn(move || send(&mut other, 3, SMALL));
        let mut buf = Vec::new();
        let mut got = Vec::new();
        loop {
            match sub.read(&mut buf, None).expect("read") {
                Poll::Message { seq, .. } => {
                    assert!(intact(seq, &buf), "message #{seq} torn: {buf:?}");
                    got.push(seq);
                    if seq == 3 {
                        break;
                    }
                }
                other => panic!("{other:?} after {got:?}"),
            }
        }
        let k = owner.join().unwrap();
        next.join().unwrap();
        assert!(k == 0 || k == 3, "a batch is published whole or not at all: {k}");
        let want: Vec<u64> = (0..k).chain([3]).collect();
        assert_eq!(got, want, "the owner's commit reported {k} published");
        assert_eq!(sub.abandoned_total(), 3 - k, "received {got:?}");
        assert_eq!(sub.lost_total(), 0);
    });
}
