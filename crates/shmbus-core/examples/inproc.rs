//! Sends and receives COUNT 64-byte messages in one thread through the core
//! `Producer`/`Consumer` over a real bus file: run it under
//! `valgrind --tool=callgrind` with two counts; the difference divided by the
//! count difference is the instructions per send + receive (see
//! docs/benchmarks.md, "Profiling").
//!
//! `cargo run --release -p shmbus-core --example inproc -- 100000 [SIZE] [BATCH]`
//!
//! With BATCH > 1 the messages go out with `send_batch` (BATCH at a time) and
//! come in with `try_drain`.

use shmbus_core::{Bus, BusConfig, Consumer, PeerKind, Poll, Producer, StartAt, WaitStrategy};

fn main() {
    let mut args = std::env::args().skip(1);
    let count: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let batch: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
    let dir = std::env::temp_dir().join(format!("shmbus-inproc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = BusConfig::default().dir(&dir).capacity(1 << 20).max_message(64 << 10);
    let mut sub = Consumer::new(
        Bus::open_or_create("inproc", &cfg, PeerKind::Subscriber).unwrap(),
        StartAt::Latest,
        WaitStrategy::BusySpin,
    );
    let mut publ =
        Producer::new(Bus::open_or_create("inproc", &cfg, PeerKind::Publisher).unwrap(), WaitStrategy::BusySpin);
    let msg = vec![7u8; size];
    let mut buf = Vec::with_capacity(size);
    let started = std::time::Instant::now();
    if batch == 1 {
        for _ in 0..count {
            publ.send(&msg, None).unwrap();
            match sub.try_read(&mut buf).unwrap() {
                Poll::Message { .. } => {}
                other => panic!("{other:?}"),
            }
        }
    } else {
        let msgs = vec![&msg[..]; batch];
        let mut sent = 0u64;
        let mut received = 0u64;
        while sent < count {
            let n = (count - sent).min(batch as u64) as usize;
            sent += publ.send_batch(&msgs[..n], None).unwrap() as u64;
            let d = sub.try_drain(usize::MAX, &mut buf, |_, b| assert_eq!(b.len(), size)).unwrap();
            received += d.messages as u64;
        }
        assert_eq!(received, count);
    }
    let ns = started.elapsed().as_nanos() as f64 / count as f64;
    eprintln!("{count} x {size} B (batches of {batch}): {ns:.1} ns per send + receive");
    drop((publ, sub));
    let _ = std::fs::remove_dir_all(&dir);
}
