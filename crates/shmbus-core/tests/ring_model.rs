//! The ring against a `VecDeque` model, in one process over a heap-backed
//! region, and a multi-threaded stress over a real mapping.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use shmbus_core::{
    Bus, BusConfig, ClaimError, Consumer, Overflow, PeerKind, Poll, Producer, Region, StartAt, WaitStrategy,
};

fn payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seq as usize).wrapping_mul(31).wrapping_add(i * 7) as u8).collect()
}

fn heap_pair(cfg: &BusConfig, start: StartAt) -> (Producer, Consumer) {
    let region = Region::heap(cfg).unwrap();
    let second = region.share_heap().unwrap();
    let sub = Consumer::new(Bus::heap(region, PeerKind::Subscriber).unwrap(), start, WaitStrategy::Park);
    let publ = Producer::new(Bus::heap(second, PeerKind::Publisher).unwrap(), WaitStrategy::Park);
    (publ, sub)
}

#[derive(Debug, Clone)]
enum Op {
    Send(usize),
    Recv,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(prop_oneof![3 => (0usize..=992).prop_map(Op::Send), 2 => Just(Op::Recv)], 1..300)
}

fn cases() -> u32 {
    if cfg!(miri) {
        4
    } else {
        256
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Block mode: everything sent is received once, in order, byte for byte;
    /// a send is refused only while unread data is in the ring.
    #[test]
    fn block_mode_matches_a_fifo(ops in ops(), top in any::<bool>()) {
        let start = if top { u64::MAX - 4095 - 8192 } else { 0 }; // cross 2^64 within a few laps
        let cfg = BusConfig::default().capacity(4096).max_message(992).initial_position(start);
        let (mut publ, mut sub) = heap_pair(&cfg, StartAt::Latest);
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut seq = 0u64;
        let mut buf = Vec::new();
        for op in ops {
            match op {
                Op::Send(len) => {
                    let msg = payload(seq, len);
                    match publ.send(&msg, Some(Instant::now())) {
                        Ok(s) => { prop_assert_eq!(s, seq); model.push_back(msg); seq += 1; }
                        Err(ClaimError::Full) => prop_assert!(!model.is_empty(), "full with an empty ring"),
                        Err(e) => prop_assert!(false, "unexpected {:?}", e),
                    }
                }
                Op::Recv => match sub.try_read(&mut buf).unwrap() {
                    Poll::Message { len, .. } => {
                        let want = model.pop_front();
                        prop_assert_eq!(Some(&buf[..len]), want.as_deref());
                    }
                    Poll::Empty => prop_assert!(model.is_empty()),
                    Poll::Lagged { .. } => prop_assert!(false, "lagged in block mode"),
                },
            }
        }
        while let Some(want) = model.pop_front() {
            let got = matches!(sub.try_read(&mut buf).unwrap(), Poll::Message { .. });
            prop_assert!(got, "a sent message was not received");
            prop_assert_eq!(&buf, &want);
        }
        prop_assert_eq!(sub.try_read(&mut buf).unwrap(), Poll::Empty);
    }

    /// Overwrite mode: sends never fail; what is received is an in-order
    /// subsequence of what was sent, and every gap is reported exactly by Lagged.
    #[test]
    fn overwrite_mode_reports_every_gap_exactly(ops in ops(), top in any::<bool>()) {
        let start = if top { u64::MAX - 4095 - 8192 } else { 0 };
        let cfg = BusConfig::default().capacity(4096).max_message(992).overflow(Overflow::Overwrite).initial_position(start);
        let (mut publ, mut sub) = heap_pair(&cfg, StartAt::Latest);
        let mut sent: Vec<Vec<u8>> = Vec::new();
        let mut next = 0u64; // next sequence number the subscriber should see
        let mut buf = Vec::new();
        for op in ops {
            match op {
                Op::Send(len) => {
                    let msg = payload(sent.len() as u64, len);
                    let s = publ.send(&msg, Some(Instant::now())).unwrap();
                    prop_assert_eq!(s, sent.len() as u64);
                    sent.push(msg);
                }
                Op::Recv => match sub.try_read(&mut buf).unwrap() {
                    Poll::Message { seq, len } => {
                        prop_assert_eq!(seq, next);
                        prop_assert_eq!(&buf[..len], &sent[seq as usize][..]);
                        next += 1;
                    }
                    Poll::Lagged { lost } => {
                        prop_assert!(lost > 0);
                        next += lost;
                        prop_assert!(next < sent.len() as u64);
                    }
                    Poll::Empty => prop_assert_eq!(next, sent.len() as u64),
                },
            }
        }
    }
}

/// Oldest replays what the ring retains, from the start and after wrapping.
#[test]
fn oldest_starts_at_the_oldest_retained_frame() {
    let cfg = BusConfig::default().capacity(4096).max_message(992);
    let region = Region::heap(&cfg).unwrap();
    let mut publ =
        Producer::new(Bus::heap(region.share_heap().unwrap(), PeerKind::Publisher).unwrap(), WaitStrategy::Park);
    for i in 0..10u64 {
        publ.send(&payload(i, 100), None).unwrap();
    }
    let mut sub = Consumer::new(
        Bus::heap(region.share_heap().unwrap(), PeerKind::Subscriber).unwrap(),
        StartAt::Oldest,
        WaitStrategy::Park,
    );
    let mut buf = Vec::new();
    for i in 0..10u64 {
        assert_eq!(sub.try_read(&mut buf).unwrap(), Poll::Message { seq: i, len: 100 });
        assert_eq!(buf, payload(i, 100));
    }
    assert_eq!(sub.try_read(&mut buf).unwrap(), Poll::Empty);
    drop(sub);
    // Wrap the ring several times (no subscriber holds it back), then replay.
    for i in 10..200u64 {
        publ.send(&payload(i, 100), None).unwrap();
    }
    let mut sub = Consumer::new(
        Bus::heap(region.share_heap().unwrap(), PeerKind::Subscriber).unwrap(),
        StartAt::Oldest,
        WaitStrategy::Park,
    );
    let Poll::Message { seq: first, .. } = sub.try_read(&mut buf).unwrap() else { panic!("no message") };
    // 4096 bytes hold 4096/160 = 25 frames of 160 bytes; the oldest intact is within one hint segment.
    assert!(first > 170 && first < 200, "first replayed seq {first}");
    let mut expect = first + 1;
    while let Poll::Message { seq, .. } = sub.try_read(&mut buf).unwrap() {
        assert_eq!(seq, expect);
        assert_eq!(buf, payload(seq, 100));
        expect += 1;
    }
    assert_eq!(expect, 200);
}

fn stamp_msg(publisher: u64, seq: u64, len: usize) -> Vec<u8> {
    let mut m = payload(publisher * 1_000_003 + seq, len.max(24));
    m[..8].copy_from_slice(&publisher.to_le_bytes());
    m[8..16].copy_from_slice(&seq.to_le_bytes());
    let sum = m[24..].iter().fold(0u64, |a, &b| a.wrapping_mul(31).wrapping_add(u64::from(b)));
    m[16..24].copy_from_slice(&sum.to_le_bytes());
    m
}

fn check_msg(m: &[u8]) -> Option<(u64, u64)> {
    if m.len() < 24 {
        return None;
    }
    let p = u64::from_le_bytes(m[..8].try_into().ok()?);
    let s = u64::from_le_bytes(m[8..16].try_into().ok()?);
    let sum = u64::from_le_bytes(m[16..24].try_into().ok()?);
    let want = m[24..].iter().fold(0u64, |a, &b| a.wrapping_mul(31).wrapping_add(u64::from(b)));
    (sum == want && m == &stamp_msg(p, s, m.len())[..]).then_some((p, s))
}

/// One thread per publisher, each sending `n` checked messages of `len(seq)` bytes.
fn spawn_writers(pubs: Vec<Producer>, n: u64, len: fn(u64) -> usize) -> Vec<std::thread::JoinHandle<()>> {
    pubs.into_iter()
        .enumerate()
        .map(|(id, mut publ)| {
            std::thread::spawn(move || {
                for s in 0..n {
                    publ.send(&stamp_msg(id as u64, s, len(s)), None).unwrap();
                }
            })
        })
        .collect()
}

/// Two publisher threads and two subscriber threads over one real mapping:
/// block mode delivers everything, per-publisher in order, identically to both.
#[test]
fn threads_over_one_mapping_block_mode() {
    let dir = tempfile::tempdir().unwrap();
    let n: u64 = if cfg!(miri) { 50 } else { 20_000 };
    let cfg = BusConfig::default().dir(dir.path()).capacity(16 << 10).max_message(2000);
    let subs: Vec<_> = (0..2)
        .map(|_| {
            Consumer::new(
                Bus::open_or_create("stress", &cfg, PeerKind::Subscriber).unwrap(),
                StartAt::Latest,
                WaitStrategy::SpinThenPark,
            )
        })
        .collect();
    let pubs: Vec<_> = (0..2)
        .map(|_| {
            Producer::new(Bus::open_or_create("stress", &cfg, PeerKind::Publisher).unwrap(), WaitStrategy::SpinThenPark)
        })
        .collect();
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut sub| {
            std::thread::spawn(move || {
                let mut next: HashMap<u64, u64> = HashMap::new();
                let mut order = Vec::new();
                let mut buf = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(120);
                while order.len() < (2 * n) as usize {
                    match sub.read(&mut buf, Some(deadline)).unwrap() {
                        Poll::Message { seq, .. } => {
                            let (p, s) = check_msg(&buf).expect("corrupt message");
                            let e = next.entry(p).or_insert(0);
                            assert_eq!(s, *e, "publisher {p} out of order");
                            *e += 1;
                            order.push(seq);
                        }
                        Poll::Empty => panic!("timed out after {} messages", order.len()),
                        Poll::Lagged { .. } => panic!("lagged in block mode"),
                    }
                }
                order
            })
        })
        .collect();
    let writers = spawn_writers(pubs, n, |s| 24 + (s as usize * 13) % 1500);
    for w in writers {
        w.join().unwrap();
    }
    let orders: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    assert_eq!(orders[0], orders[1], "subscribers disagree on the total order");
    assert_eq!(orders[0], (0..2 * n).collect::<Vec<_>>());
}

/// Overwrite mode with a slow reader: no torn message is ever delivered and
/// received + reported lost == published, exactly.
#[test]
fn threads_over_one_mapping_overwrite_mode() {
    let dir = tempfile::tempdir().unwrap();
    let n: u64 = if cfg!(miri) { 50 } else { 50_000 };
    let cfg = BusConfig::default().dir(dir.path()).capacity(8 << 10).max_message(992).overflow(Overflow::Overwrite);
    let mut sub = Consumer::new(
        Bus::open_or_create("ow", &cfg, PeerKind::Subscriber).unwrap(),
        StartAt::Latest,
        WaitStrategy::SpinThenPark,
    );
    let pubs: Vec<_> = (0..2)
        .map(|_| {
            Producer::new(Bus::open_or_create("ow", &cfg, PeerKind::Publisher).unwrap(), WaitStrategy::SpinThenPark)
        })
        .collect();
    let writers = spawn_writers(pubs, n, |s| 24 + (s as usize * 29) % 900);
    let mut buf = Vec::new();
    let (mut received, mut lost, mut last_seq) = (0u64, 0u64, None::<u64>);
    let deadline = Instant::now() + Duration::from_secs(120);
    while received + lost < 2 * n {
        match sub.read(&mut buf, Some(deadline)).unwrap() {
            Poll::Message { seq, .. } => {
                check_msg(&buf).expect("torn or corrupt message delivered");
                if let Some(l) = last_seq {
                    assert!(seq > l, "sequence went backwards");
                }
                last_seq = Some(seq);
                received += 1;
                if received % 64 == 0 {
                    std::thread::yield_now(); // be slow now and then
                }
            }
            Poll::Lagged { lost: l } => lost += l,
            Poll::Empty => panic!("timed out: received {received} lost {lost}"),
        }
    }
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(received + lost, 2 * n);
    assert_eq!(last_seq, Some(2 * n - 1));
}

/// A producer dropped between claim and commit publishes the claim as
/// padding, so subscribers are not stuck behind it.
#[test]
fn dropping_a_producer_mid_claim_does_not_wedge_subscribers() {
    let cfg = BusConfig::default().capacity(4096).max_message(992);
    let region = Region::heap(&cfg).unwrap();
    let mut sub = Consumer::new(
        Bus::heap(region.share_heap().unwrap(), PeerKind::Subscriber).unwrap(),
        StartAt::Latest,
        WaitStrategy::Park,
    );
    let mut dying =
        Producer::new(Bus::heap(region.share_heap().unwrap(), PeerKind::Publisher).unwrap(), WaitStrategy::Park);
    let mut live =
        Producer::new(Bus::heap(region.share_heap().unwrap(), PeerKind::Publisher).unwrap(), WaitStrategy::Park);
    let _claim = dying.claim(100, None).unwrap();
    live.send(b"behind the claim", None).unwrap();
    let mut buf = Vec::new();
    assert_eq!(sub.try_read(&mut buf).unwrap(), Poll::Empty, "an uncommitted frame must hold readers back");
    drop(dying);
    assert!(matches!(sub.try_read(&mut buf).unwrap(), Poll::Message { .. }));
    assert_eq!(buf, b"behind the claim");
}
