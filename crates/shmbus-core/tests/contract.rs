//! Regression tests for the core contract (issue 9): each test reproduces a
//! finding against the real `Producer`/`Consumer` code, in one process over a
//! heap region (threads) or over a real mapping.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmbus_core::{Bus, BusConfig, Consumer, Overflow, PeerKind, Poll, Producer, Region, StartAt, WaitStrategy};

/// A self-checking message: 8-byte counter, then bytes derived from it.
fn fill(counter: u64, len: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&counter.to_le_bytes());
    out.extend((8..len).map(|i| (counter as usize).wrapping_mul(131).wrapping_add(i) as u8));
}

fn check(buf: &[u8]) -> Result<u64, String> {
    if buf.len() < 8 {
        return Err(format!("short message of {} bytes", buf.len()));
    }
    let counter = u64::from_le_bytes(buf[..8].try_into().unwrap());
    for (i, b) in buf.iter().enumerate().skip(8) {
        if *b != (counter as usize).wrapping_mul(131).wrapping_add(i) as u8 {
            return Err(format!("torn payload: counter {counter} byte {i}"));
        }
    }
    Ok(counter)
}

/// Finding 1: a subscriber attaching (at `Oldest` and `Latest`) while a
/// busy-spinning publisher floods a small block-mode ring is lossless from the
/// moment it is attached: no hang, no `Lagged`, no torn payload, and the
/// messages it gets are consecutive.
#[test]
fn block_mode_attach_under_load_is_lossless() {
    let cfg = BusConfig::default().capacity(4096).max_message(992).overflow(Overflow::Block);
    let region = Region::heap(&cfg).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let publ_region = region.share_heap().unwrap();
    let stop2 = stop.clone();
    let publisher = std::thread::spawn(move || {
        let mut p = Producer::new(Bus::heap(publ_region, PeerKind::Publisher).unwrap(), WaitStrategy::BusySpin);
        let mut msg = Vec::new();
        let mut counter = 0u64;
        while !stop2.load(Ordering::Relaxed) {
            fill(counter, 8 + (counter as usize * 37) % 101, &mut msg);
            // Short deadlines so the loop sees `stop` even when no one reads.
            if p.send(&msg, Some(Instant::now() + Duration::from_millis(5))).is_ok() {
                counter += 1;
            }
        }
        counter
    });
    let started = Instant::now();
    let (mut attaches, mut problems) = (0u64, Vec::new());
    let mut buf = Vec::new();
    while started.elapsed() < Duration::from_secs(3) && problems.len() < 5 {
        let start = if attaches % 2 == 0 { StartAt::Oldest } else { StartAt::Latest };
        let bus = Bus::heap(region.share_heap().unwrap(), PeerKind::Subscriber).unwrap();
        let mut c = Consumer::new(bus, start, WaitStrategy::BusySpin);
        attaches += 1;
        let mut last: Option<u64> = None;
        for _ in 0..300 {
            match c.read(&mut buf, Some(Instant::now() + Duration::from_secs(2))) {
                Ok(Poll::Message { .. }) => match check(&buf) {
                    Ok(n) => {
                        if let Some(l) = last {
                            if n != l + 1 {
                                problems.push(format!("{start:?}: counter {n} after {l}"));
                                break;
                            }
                        }
                        last = Some(n);
                    }
                    Err(e) => {
                        problems.push(format!("{start:?}: {e}"));
                        break;
                    }
                },
                Ok(Poll::Lagged { lost }) => {
                    problems.push(format!("{start:?}: Lagged {{ lost: {lost} }} in block mode"));
                    break;
                }
                Ok(Poll::Empty) => {
                    let snap = region.snapshot();
                    let u64at = |o: usize| u64::from_le_bytes(snap[o..o + 8].try_into().unwrap());
                    let u32at = |o: usize| u32::from_le_bytes(snap[o..o + 4].try_into().unwrap());
                    let slots: Vec<String> = (0..3)
                        .map(|i| {
                            let b = 4096 + i * 128;
                            format!(
                                "slot{i}: state {} flags {:#x} hold {} end {} frame {} seq {} revoked {:#x}",
                                u32at(b),
                                u32at(b + 32),
                                u64at(b + 16),
                                u64at(b + 24),
                                u64at(b + 88),
                                u64at(b + 96),
                                u32at(b + 108)
                            )
                        })
                        .collect();
                    let data = shmbus_core::layout::data_offset(64, 4096) as usize;
                    let f = data + (c.cursor() as usize & 4095);
                    eprintln!(
                        "HANG tail {} seq {} cursor {} stamp {} len {} meta {:#x} {slots:?}",
                        u64at(128),
                        u64at(136),
                        c.cursor(),
                        u64at(f),
                        u32at(f + 8),
                        u32at(f + 12)
                    );
                    problems.push(format!("{start:?}: no message for 2 s (lapped: cursor {})", c.cursor()));
                    break;
                }
                Err(e) => {
                    problems.push(format!("{start:?}: {e}"));
                    break;
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let sent = publisher.join().unwrap();
    assert!(problems.is_empty(), "{} attaches, {sent} sent: {problems:?}", attaches);
    assert!(attaches > 10 && sent > 1000, "too little traffic: {attaches} attaches, {sent} sent");
}

/// Finding 1, deterministically: attaching at `Oldest` to a full ring while
/// the publisher keeps trying to send, twenty times over: the replay is
/// contiguous and intact and the publisher never overwrites it.
#[test]
fn oldest_replay_is_intact_under_a_full_ring() {
    let cfg = BusConfig::default().capacity(4096).max_message(992).overflow(Overflow::Block);
    let region = Region::heap(&cfg).unwrap();
    let pr = region.share_heap().unwrap();
    let mut p = Producer::new(Bus::heap(pr, PeerKind::Publisher).unwrap(), WaitStrategy::BusySpin);
    let mut msg = Vec::new();
    let mut n = 0u64;
    for _ in 0..500 {
        fill(n, 8 + (n as usize * 37) % 101, &mut msg);
        p.send(&msg, Some(Instant::now())).unwrap();
        n += 1;
    }
    for round in 0..20 {
        let mut c = Consumer::new(
            Bus::heap(region.share_heap().unwrap(), PeerKind::Subscriber).unwrap(),
            StartAt::Oldest,
            WaitStrategy::BusySpin,
        );
        let mut buf = Vec::new();
        let mut last = None;
        for k in 0..300 {
            fill(n, 8 + (n as usize * 37) % 101, &mut msg);
            if p.send(&msg, Some(Instant::now())).is_ok() {
                n += 1;
            }
            match c.try_read(&mut buf).unwrap() {
                Poll::Message { .. } => {
                    let v = check(&buf).unwrap_or_else(|e| panic!("round {round} k {k}: {e}"));
                    if let Some(l) = last {
                        assert_eq!(v, l + 1, "round {round} k {k}");
                    }
                    last = Some(v);
                }
                r => panic!("round {round} k {k}: {r:?} cursor {}", c.cursor()),
            }
        }
    }
}

/// A subscriber counts as present (for `live_peers`, `wait_for_peers` and
/// `inspect`'s `live_subscribers`, which `shmbus pub` and the demo wait on)
/// only once its cursor is placed: a publisher that waited for it and then
/// published must not publish into the gap between its taking a slot and
/// placing its cursor, where a subscriber starting at the latest message
/// would miss what was sent (issue 15 session, found reading the CLI tests).
#[test]
fn a_subscriber_is_present_only_once_its_cursor_is_placed() {
    for overflow in [Overflow::Block, Overflow::Overwrite] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BusConfig::default().dir(dir.path()).capacity(1 << 16).overflow(overflow);
        let publ =
            Producer::new(Bus::open_or_create("present", &cfg, PeerKind::Publisher).unwrap(), WaitStrategy::Park);
        // A subscriber that has taken its slot but not placed its cursor yet.
        let half = Bus::attach("present", &cfg, PeerKind::Subscriber).unwrap();
        assert_eq!(publ.bus().live_peers(PeerKind::Subscriber), 0, "{overflow:?}: not placed yet");
        let st = shmbus_core::inspect("present", &cfg).unwrap();
        assert_eq!(st.ready_subscribers(), 0, "{overflow:?}: inspect counts it ready before it is placed");
        assert_eq!(st.live_subscribers(), 1, "{overflow:?}: attached handles are live");
        let sub = Consumer::new(half, StartAt::Latest, WaitStrategy::Park);
        assert_eq!(publ.bus().live_peers(PeerKind::Subscriber), 1, "{overflow:?}: placed");
        let st = shmbus_core::inspect("present", &cfg).unwrap();
        assert_eq!((st.live_subscribers(), st.ready_subscribers()), (1, 1), "{overflow:?}");
        drop(sub);
    }
}
