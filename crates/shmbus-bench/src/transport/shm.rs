//! shmbus itself, through its public API only.
//!
//! Ping-pong uses two buses, `ping` and `pong`, each with one publisher and
//! one subscriber. The echoing side reads in place (`recv_ref`) and sends
//! from there, so every hop copies the payload once, as the raw baseline
//! does. Streams copy in (`send`) and out (`recv_into`). The loan variant
//! copies nothing: `loan` + header write + `commit`, and `recv_ref`. The
//! batch variant streams in batches of [`BATCH`]: `send_batch_all` copies
//! each message in, and `recv_batch` hands over up to [`BATCH`] messages per
//! call, each payload copied out once into one buffer (as `recv_into` does).

use std::collections::VecDeque;

use shmbus::{BusConfig, Overflow, Publisher, StartAt, Subscriber, WaitStrategy};

use super::{header, run_role, Link, Message, Res, Rx, Tx};
use crate::spec::{ChildResult, ChildSpec, Transport, BATCH, MSG_HEADER};

/// Ring bytes per bus (all shared-memory transports get the same 1 MiB).
pub const CAPACITY: u64 = 1 << 20;

/// The bus settings every process of a run uses (they must agree).
pub fn config(spec: &ChildSpec) -> BusConfig {
    let wait = match spec.transport {
        Transport::ShmbusSpinPark => WaitStrategy::SpinThenPark,
        Transport::ShmbusPark => WaitStrategy::Park,
        _ => WaitStrategy::BusySpin,
    };
    // A frame may take at most a quarter of the ring.
    let max = (spec.size.max(64 << 10)) as u64;
    let capacity = CAPACITY.max(((max + 64) * 4).next_power_of_two());
    BusConfig::default()
        .dir(&spec.dir)
        .capacity(capacity)
        .max_message(max as u32)
        .overflow(Overflow::Block)
        .wait_strategy(wait)
        .max_peers(16)
}

fn loan(spec: &ChildSpec) -> bool {
    spec.transport == Transport::ShmbusLoan
}

/// Sends through `loan` (header only: the payload is written in place by
/// whoever produces it, which is not this benchmark) or `send` (copy in).
fn send(publ: &mut Publisher, msg: &[u8], loan: bool) -> Res<()> {
    if loan {
        let mut l = publ.loan(msg.len())?;
        l[..MSG_HEADER].copy_from_slice(&msg[..MSG_HEADER]);
        l.commit().expect("commit");
    } else {
        publ.send(msg)?;
    }
    Ok(())
}

/// One end of a ping-pong over two buses.
pub struct ShmLink {
    publ: Publisher,
    sub: Subscriber,
    loan: bool,
}

impl ShmLink {
    fn server(spec: &ChildSpec, ready: &mut dyn FnMut(&str)) -> Res<ShmLink> {
        let cfg = config(spec);
        let sub = Subscriber::open_or_create("ping", &cfg, StartAt::Latest)?;
        let publ = Publisher::open_or_create("pong", &cfg)?;
        ready("");
        Ok(ShmLink { publ, sub, loan: loan(spec) })
    }

    fn client(spec: &ChildSpec) -> Res<ShmLink> {
        let cfg = config(spec);
        // Subscribe to the answers before sending anything.
        let sub = Subscriber::open_or_create("pong", &cfg, StartAt::Latest)?;
        let publ = Publisher::open_or_create("ping", &cfg)?;
        Ok(ShmLink { publ, sub, loan: loan(spec) })
    }
}

impl Link for ShmLink {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        send(&mut self.publ, msg, self.loan)
    }

    fn recv_seq(&mut self) -> Res<u64> {
        let m = self.sub.recv_ref(None)?;
        Ok(header(&m)?.0)
    }

    fn echo(&mut self) -> Res<u64> {
        let m = self.sub.recv_ref(None)?;
        let seq = header(&m)?.0;
        send(&mut self.publ, &m, self.loan)?;
        Ok(seq)
    }
}

/// A stream's receiving end.
pub struct ShmRx {
    sub: Subscriber,
    buf: Vec<u8>,
    loan: bool,
}

impl ShmRx {
    /// Wraps a subscriber (`loan`: read in place with `recv_ref`).
    pub fn new(sub: Subscriber, size: usize, loan: bool) -> ShmRx {
        ShmRx { sub, buf: Vec::with_capacity(size), loan }
    }
}

impl Rx for ShmRx {
    fn recv(&mut self) -> Res<(u64, u8)> {
        if self.loan {
            let m = self.sub.recv_ref(None)?;
            header(&m)
        } else {
            self.sub.recv_into(&mut self.buf, None)?;
            header(&self.buf)
        }
    }
}

/// A stream's sending end.
pub struct ShmTx {
    publ: Publisher,
    loan: bool,
}

impl ShmTx {
    /// Wraps a publisher (`loan`: write the header in place with `loan`).
    pub fn new(publ: Publisher, loan: bool) -> ShmTx {
        ShmTx { publ, loan }
    }
}

impl Tx for ShmTx {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        send(&mut self.publ, msg, self.loan)
    }
}

/// A stream's receiving end that drains in batches.
pub struct ShmBatchRx {
    sub: Subscriber,
    buf: Vec<u8>,
    /// Headers of the messages drained but not yet returned by `recv`.
    ready: VecDeque<(u64, u8)>,
}

impl ShmBatchRx {
    /// Wraps a subscriber.
    pub fn new(sub: Subscriber, size: usize) -> ShmBatchRx {
        ShmBatchRx { sub, buf: Vec::with_capacity(size), ready: VecDeque::with_capacity(BATCH) }
    }
}

impl Rx for ShmBatchRx {
    fn recv(&mut self) -> Res<(u64, u8)> {
        loop {
            if let Some(h) = self.ready.pop_front() {
                return Ok(h);
            }
            let (buf, ready) = (&mut self.buf, &mut self.ready);
            let mut bad = Ok(());
            // Waits (busy-spinning, as the bus is configured) for the first
            // message, then takes what is ready, up to BATCH.
            let drained = self.sub.recv_batch(BATCH, None, |_seq, bytes| {
                buf.clear();
                buf.extend_from_slice(bytes);
                match header(buf) {
                    Ok(h) => ready.push_back(h),
                    Err(e) => bad = Err(e),
                }
            })?;
            bad?;
            if drained.lost > 0 {
                return Err(format!("{} messages lost in a block-mode stream", drained.lost).into());
            }
        }
    }
}

/// A stream's sending end that sends in batches.
pub struct ShmBatchTx {
    publ: Publisher,
}

impl Tx for ShmBatchTx {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        Ok(self.publ.send(msg)?)
    }

    fn batch(&self) -> usize {
        BATCH
    }

    fn send_batch(&mut self, msgs: &[Message]) -> Res<()> {
        Ok(self.publ.send_batch_all(msgs)?)
    }
}

/// Runs a child of a shmbus case.
pub fn run(spec: &ChildSpec, ready: &mut dyn FnMut(&str)) -> Res<ChildResult> {
    if spec.transport == Transport::ShmbusBatch {
        return run_role(
            spec,
            ready,
            |_, _| Err::<ShmLink, _>("shmbus-batch has no ping-pong (one message in flight is no batch)".into()),
            |_| Err("shmbus-batch has no ping-pong (one message in flight is no batch)".into()),
            |spec, ready| {
                let sub = Subscriber::open_or_create("stream", &config(spec), StartAt::Latest)?;
                ready("");
                Ok(ShmBatchRx::new(sub, spec.size))
            },
            |spec| Ok(ShmBatchTx { publ: Publisher::open_or_create("stream", &config(spec))? }),
        );
    }
    run_role(
        spec,
        ready,
        ShmLink::server,
        ShmLink::client,
        |spec, ready| {
            let sub = Subscriber::open_or_create("stream", &config(spec), StartAt::Latest)?;
            ready("");
            Ok(ShmRx::new(sub, spec.size, loan(spec)))
        },
        |spec| Ok(ShmTx::new(Publisher::open_or_create("stream", &config(spec))?, loan(spec))),
    )
}
