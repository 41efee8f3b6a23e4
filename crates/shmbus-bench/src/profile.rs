//! In-process loops for instruction counting (`valgrind --tool=callgrind`):
//! one thread alternately sends and receives `count` messages through a
//! transport's real sending and receiving ends, so the instructions per
//! message of two transports can be compared exactly and repeatably (run
//! two counts and divide the difference; see docs/benchmarks.md).

use std::time::Instant;

use shmbus::{Publisher, StartAt, Subscriber};

use crate::spec::{ChildSpec, Pattern, Role, Transport};
use crate::transport::{raw, shm, Message, Res, Rx, Tx};

/// Transports that have an in-process loop.
pub const TRANSPORTS: [Transport; 5] = [
    Transport::ShmbusSpin,
    Transport::ShmbusSpinPark,
    Transport::ShmbusPark,
    Transport::ShmbusLoan,
    Transport::RawRing,
];

fn pump(tx: &mut impl Tx, rx: &mut impl Rx, size: usize, count: u64) -> Res<f64> {
    let mut msg = Message::new(size, 0);
    let t0 = Instant::now();
    for seq in 0..count {
        msg.stamp(seq, 0);
        tx.send(msg.bytes())?;
        let (got, _) = rx.recv()?;
        if got != seq {
            return Err(format!("received {got}, expected {seq}").into());
        }
    }
    Ok(t0.elapsed().as_secs_f64() * 1e9 / count.max(1) as f64)
}

/// Sends and receives `count` messages of `size` bytes through `transport`
/// in this thread; returns nanoseconds per message (send + receive).
pub fn inproc(transport: Transport, size: usize, count: u64) -> Res<f64> {
    let dir = tempfile::Builder::new().prefix("shmbus-bench-inproc-").tempdir_in(crate::harness::scratch_root())?;
    let spec = ChildSpec {
        transport,
        pattern: Pattern::Stream,
        role: Role::Sender,
        index: 0,
        size,
        cpu: None,
        dir: dir.path().to_path_buf(),
        tag: "inproc".into(),
        peer: None,
        warmup_ms: 0,
        measure_ms: 0,
        senders: 1,
        receivers: 1,
        probe: None,
    };
    match transport {
        Transport::RawRing => {
            let (mut tx, mut rx) = raw::ring_pair(dir.path(), size)?;
            pump(&mut tx, &mut rx, size, count)
        }
        t if TRANSPORTS.contains(&t) => {
            let cfg = shm::config(&spec);
            let sub = Subscriber::open_or_create("stream", &cfg, StartAt::Latest)?;
            let publ = Publisher::open_or_create("stream", &cfg)?;
            let loan = t == Transport::ShmbusLoan;
            let (mut tx, mut rx) = (shm::ShmTx::new(publ, loan), shm::ShmRx::new(sub, size, loan));
            pump(&mut tx, &mut rx, size, count)
        }
        other => Err(format!("{other} has no in-process loop (only {TRANSPORTS:?})").into()),
    }
}
