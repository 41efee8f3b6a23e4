//! Zero-copy: a publisher writes a 64 KiB frame in place in the ring
//! (`loan` + `commit`), and a subscriber reads it in place (`recv_ref`, block
//! mode), without copying the payload in or out. Runs both sides in one process.
use std::time::Duration;

use shmbus::{BusConfig, Publisher, StartAt, Subscriber};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = BusConfig::default().capacity(4 << 20); // max_message follows: 64 KiB
    let name = format!("frames-{}", std::process::id());
    let mut sub = Subscriber::open_or_create(&name, &cfg, StartAt::Latest)?;
    let mut publ = Publisher::open_or_create(&name, &cfg)?;

    for frame_no in 0..3u8 {
        let mut loan = publ.loan(64 << 10)?; // space in the ring, ours until commit
        for (i, px) in loan.iter_mut().enumerate() {
            *px = frame_no.wrapping_add(i as u8);
        }
        loan.commit()?; // dropping it instead would publish nothing
    }
    for frame_no in 0..3u8 {
        let frame = sub.recv_ref(Some(Duration::from_secs(1)))?; // borrowed from the ring
        let ok = frame.iter().enumerate().all(|(i, &px)| px == frame_no.wrapping_add(i as u8));
        println!("frame {} (seq {}): {} bytes, intact: {ok}", frame_no, frame.seq(), frame.len());
        assert!(ok);
        // Dropping `frame` lets publishers reuse its space.
    }
    Ok(())
}
