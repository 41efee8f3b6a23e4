//! Header validation and frame parsing from arbitrary bytes (issue #6,
//! docs/reliability.md item 7). The stable twin of this target is the
//! property tests at the end of crates/shmbus-core/tests/reliability_hostile.rs.
//!
//! The first input byte picks the shape of the input:
//! - 0: the rest is a whole bus file (validated, then used if valid);
//! - 1: the rest is a list of (offset u16, value u8) patches to the header and
//!   peer table of a valid file with traffic in it;
//! - 2: a valid header over a ring, tail, hints and peer slots taken from the
//!   rest of the input.
//!
//! In every case the file is validated as a bus file would be on open
//! (`Region::from_bytes`); when valid, subscribers read it from both start
//! points and a publisher sends into it. Any panic is a finding.
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use shmbus_core::{Bus, BusConfig, Consumer, PeerKind, Poll, Producer, Region, StartAt, WaitStrategy};

fn template() -> &'static [u8] {
    static T: OnceLock<Vec<u8>> = OnceLock::new();
    T.get_or_init(|| {
        let cfg = BusConfig::default().capacity(4096).max_message(992).max_peers(4);
        let region = Region::heap(&cfg).expect("heap region");
        let mut publ = Producer::new(
            Bus::heap(region.share_heap().expect("heap"), PeerKind::Publisher).expect("slot"),
            WaitStrategy::Park,
        );
        for seq in 0..30u64 {
            let len = 32 + (seq as usize * 71) % 700;
            let msg: Vec<u8> = (0..len).map(|i| (seq as usize * 31 + i) as u8).collect();
            publ.send(&msg, Some(Instant::now())).expect("send");
        }
        drop(publ);
        region.snapshot()
    })
}

fn drive(region: Region) {
    let max = region.info().max_message as usize;
    let mut buf = Vec::new();
    for start in [StartAt::Oldest, StartAt::Latest] {
        let Some(r) = region.share_heap() else { return };
        let Ok(bus) = Bus::heap(r, PeerKind::Subscriber) else { continue };
        let mut c = Consumer::new(bus, start, WaitStrategy::BusySpin);
        for _ in 0..64 {
            match c.try_read(&mut buf) {
                Ok(Poll::Message { len, .. }) => assert!(len <= max && buf.len() == len),
                Ok(Poll::Lagged { .. }) => {}
                Ok(Poll::Empty) | Err(_) => break,
            }
        }
    }
    if let Some(r) = region.share_heap() {
        if let Ok(bus) = Bus::heap(r, PeerKind::Publisher) {
            let mut p = Producer::new(bus, WaitStrategy::BusySpin);
            for len in [0usize, 1, 100, max] {
                let _ = p.send(&vec![0xa5; len], Some(Instant::now()));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 3 {
        0 => {
            if let Ok(region) = Region::from_bytes(rest) {
                drive(region);
            }
        }
        1 => {
            let mut bytes = template().to_vec();
            let table_end = shmbus_core::layout::data_offset(4, 4096) as usize;
            for c in rest.chunks_exact(3) {
                bytes[usize::from(u16::from_le_bytes([c[0], c[1]])) % table_end] = c[2];
            }
            if let Ok(region) = Region::from_bytes(&bytes) {
                drive(region);
            }
        }
        _ => {
            let mut bytes = template().to_vec();
            let data_offset = bytes.len() - 4096;
            let mut input = rest;
            let mut take = |n: usize| {
                let (a, b) = input.split_at(n.min(input.len()));
                input = b;
                a
            };
            // Tail position (offset 128), hints (offset 1024), peer slots, then the ring.
            let tail = take(8);
            bytes[128..128 + tail.len()].copy_from_slice(tail);
            let hints = take(1024);
            bytes[1024..1024 + hints.len()].copy_from_slice(hints);
            let slots = take(512);
            bytes[4096..4096 + slots.len()].copy_from_slice(slots);
            let ring = take(4096);
            bytes[data_offset..data_offset + ring.len()].copy_from_slice(ring);
            let region = Region::from_bytes(&bytes).expect("the header is valid");
            drive(region);
        }
    }
});
