//! The transports, each behind the same three small traits, and the roles
//! (pinger, ponger, sender, receiver) written once over those traits.
//!
//! Every message starts with a 9-byte header: its sequence number (u64 LE,
//! [`STOP`] ends a run) and the index of its sender. Payload bytes after the
//! header are a fixed pattern written once.

use std::error::Error;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::spec::{ChildResult, ChildSpec, Role, MSG_HEADER, STOP};

pub mod probe;
pub mod raw;
pub mod shm;
pub mod socket;

#[cfg(feature = "iceoryx2")]
pub mod iox;

/// Errors of a child: anything, with a message.
pub type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// How long a waiting side waits for a silent peer before giving up (the
/// parent also kills children that overrun their time).
pub const PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// One end of a ping-pong: a way there and a way back.
pub trait Link {
    /// Sends `msg`.
    fn send(&mut self, msg: &[u8]) -> Res<()>;
    /// Waits for the next message and returns its sequence number, reading
    /// it where it lies when the transport allows.
    fn recv_seq(&mut self) -> Res<u64>;
    /// Waits for the next message, sends it straight back, and returns its
    /// sequence number.
    fn echo(&mut self) -> Res<u64>;
}

/// The sending end of a stream.
pub trait Tx {
    /// Sends `msg`, waiting for room as the transport does.
    fn send(&mut self, msg: &[u8]) -> Res<()>;

    /// Messages handed over per [`Tx::send_batch`] call; 1 (the default):
    /// the sender calls [`Tx::send`] for each message instead.
    fn batch(&self) -> usize {
        1
    }

    /// Sends `msgs` in order, waiting for room as the transport does (only
    /// called when [`Tx::batch`] is more than 1).
    fn send_batch(&mut self, msgs: &[Message]) -> Res<()> {
        msgs.iter().try_for_each(|m| self.send(m.bytes()))
    }
}

/// The receiving end of a stream.
pub trait Rx {
    /// Waits for the next message, takes it out of the transport (a copy,
    /// except for the zero-copy path) and returns its header.
    fn recv(&mut self) -> Res<(u64, u8)>;
}

/// Runs a child's role over its transport. `ready` is called once a server
/// can accept clients, with what clients need to know (e.g. a TCP port).
pub fn run(spec: &ChildSpec, ready: &mut dyn FnMut(&str)) -> Res<ChildResult> {
    use crate::spec::Transport as T;
    match spec.transport {
        T::ShmbusSpin | T::ShmbusSpinPark | T::ShmbusPark | T::ShmbusLoan | T::ShmbusBatch => shm::run(spec, ready),
        T::RawAtomic | T::RawFutex | T::RawRing => raw::run(spec, ready),
        T::UdsStream | T::UdsStreamPoll | T::UdsSeqpacket | T::Tcp | T::Pipe => socket::run(spec, ready),
        #[cfg(feature = "iceoryx2")]
        T::Iceoryx2 => iox::run(spec, ready),
        #[cfg(not(feature = "iceoryx2"))]
        T::Iceoryx2 => {
            let _ = ready;
            Err("this build has no iceoryx2 (feature `iceoryx2` of shmbus-bench is off)".into())
        }
    }
}

/// Dispatches a role to the matching constructor of a transport.
pub fn run_role<L: Link, R: Rx, S: Tx>(
    spec: &ChildSpec,
    ready: &mut dyn FnMut(&str),
    ponger: impl FnOnce(&ChildSpec, &mut dyn FnMut(&str)) -> Res<L>,
    pinger: impl FnOnce(&ChildSpec) -> Res<L>,
    receiver: impl FnOnce(&ChildSpec, &mut dyn FnMut(&str)) -> Res<R>,
    sender: impl FnOnce(&ChildSpec) -> Res<S>,
) -> Res<ChildResult> {
    let probe = match &spec.probe {
        Some(path) => Some(probe::Probe::open(path)?),
        None => None,
    };
    let result = match spec.role {
        Role::Ponger | Role::Receiver => {
            let result = if spec.role == Role::Ponger {
                let link = ponger(spec, ready)?;
                probe.as_ref().map(|p| p.respond(0)).transpose()?;
                run_ponger(link)?
            } else {
                let rx = receiver(spec, ready)?;
                probe.as_ref().map(|p| p.respond(0)).transpose()?;
                run_receiver(spec, rx)?
            };
            probe.as_ref().map(|p| p.respond(1)).transpose()?;
            result
        }
        Role::Pinger | Role::Sender => {
            // Probe once connected: a socket server answers only after accept.
            let mut result = if spec.role == Role::Pinger {
                let link = pinger(spec)?;
                let before = probe.as_ref().map(|p| p.initiate(0)).transpose()?;
                ChildResult { floor_before_ns: before, ..run_pinger(spec, link)? }
            } else {
                let tx = sender(spec)?;
                let before = probe.as_ref().map(|p| p.initiate(0)).transpose()?;
                ChildResult { floor_before_ns: before, ..run_sender(spec, tx)? }
            };
            result.floor_after_ns = probe.as_ref().map(|p| p.initiate(1)).transpose()?;
            result
        }
    };
    Ok(result)
}

/// A sender's message buffer, starting on a 64-byte boundary so that the
/// copy into a transport never depends on where the allocator put it.
pub struct Message {
    buf: Vec<u8>,
    off: usize,
    len: usize,
}

impl Message {
    /// A message of `size` bytes from sender `index`, a fixed pattern after the header.
    pub fn new(size: usize, index: u8) -> Message {
        let mut buf = vec![0u8; size + 64];
        let off = buf.as_ptr().align_offset(64).min(64);
        for (i, b) in buf[off..off + size].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(7);
        }
        let mut m = Message { buf, off, len: size };
        m.stamp(0, index);
        m
    }

    /// Writes the header.
    #[inline]
    pub fn stamp(&mut self, seq: u64, index: u8) {
        stamp(&mut self.buf[self.off..self.off + self.len], seq, index);
    }

    /// The bytes to send.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.off..self.off + self.len]
    }
}

impl AsRef<[u8]> for Message {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

/// Writes the header into `msg`.
#[inline]
pub fn stamp(msg: &mut [u8], seq: u64, index: u8) {
    msg[..8].copy_from_slice(&seq.to_le_bytes());
    msg[8] = index;
}

/// Reads the header of `msg`.
#[inline]
pub fn header(msg: &[u8]) -> Res<(u64, u8)> {
    if msg.len() < MSG_HEADER {
        return Err(format!("message of {} bytes is shorter than the {MSG_HEADER}-byte header", msg.len()).into());
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&msg[..8]);
    Ok((u64::from_le_bytes(seq), msg[8]))
}

fn run_ponger(mut link: impl Link) -> Res<ChildResult> {
    let mut n = 0u64;
    while link.echo()? != STOP {
        n += 1;
    }
    Ok(ChildResult { sent: n, ..ChildResult::default() })
}

fn run_pinger(spec: &ChildSpec, mut link: impl Link) -> Res<ChildResult> {
    let mut msg = Message::new(spec.size, spec.index);
    let mut errors = 0u64;
    let mut seq = 0u64;
    let start = Instant::now();
    let warm_end = start + Duration::from_millis(spec.warmup_ms);
    let end = warm_end + Duration::from_millis(spec.measure_ms);
    // Warm-up: caches, page tables, branch predictors, CPU frequency.
    while Instant::now() < warm_end {
        msg.stamp(seq, spec.index);
        link.send(msg.bytes())?;
        errors += u64::from(link.recv_seq()? != seq);
        seq += 1;
    }
    // Round trips in nanoseconds, 1 ns to 100 s, 3 significant digits.
    let mut hist = Histogram::<u64>::new_with_bounds(1, 100_000_000_000, 3)?;
    // One clock read per round trip: the time from the end of the previous
    // round trip to the end of this one (stamping and recording included).
    let mut prev = Instant::now();
    loop {
        msg.stamp(seq, spec.index);
        link.send(msg.bytes())?;
        errors += u64::from(link.recv_seq()? != seq);
        seq += 1;
        let now = Instant::now();
        hist.saturating_record(now.duration_since(prev).as_nanos().min(u128::from(u64::MAX)) as u64);
        prev = now;
        if now >= end {
            break;
        }
    }
    msg.stamp(STOP, spec.index);
    link.send(msg.bytes())?;
    errors += u64::from(link.recv_seq()? != STOP);
    let one_way = |q: f64| hist.value_at_quantile(q) as f64 / 2.0;
    Ok(ChildResult {
        samples: hist.len(),
        p50_ns: one_way(0.5),
        p99_ns: one_way(0.99),
        p999_ns: one_way(0.999),
        max_ns: hist.max() as f64 / 2.0,
        errors,
        sent: seq + 1,
        ..ChildResult::default()
    })
}

fn run_sender(spec: &ChildSpec, mut tx: impl Tx) -> Res<ChildResult> {
    if tx.batch() > 1 {
        return run_batch_sender(spec, tx);
    }
    let mut msg = Message::new(spec.size, spec.index);
    let end = Instant::now() + Duration::from_millis(spec.warmup_ms + spec.measure_ms);
    let mut seq = 0u64;
    loop {
        msg.stamp(seq, spec.index);
        tx.send(msg.bytes())?;
        seq += 1;
        if seq.is_multiple_of(64) && Instant::now() >= end {
            break;
        }
    }
    msg.stamp(STOP, spec.index);
    tx.send(msg.bytes())?;
    Ok(ChildResult { sent: seq + 1, ..ChildResult::default() })
}

/// [`run_sender`] for a transport that takes batches: each round stamps
/// `tx.batch()` messages (each in its own buffer, built like `run_sender`'s
/// one) and hands them over in one call; the clock is read about every 64
/// messages. Only whole batches are sent, and the STOP goes alone after the
/// last of them, so it is never part of a partial batch.
fn run_batch_sender(spec: &ChildSpec, mut tx: impl Tx) -> Res<ChildResult> {
    let batch = tx.batch();
    let mut msgs: Vec<Message> = (0..batch).map(|_| Message::new(spec.size, spec.index)).collect();
    let end = Instant::now() + Duration::from_millis(spec.warmup_ms + spec.measure_ms);
    let mut seq = 0u64;
    let mut since_clock = 0usize;
    loop {
        for (m, s) in msgs.iter_mut().zip(seq..) {
            m.stamp(s, spec.index);
        }
        tx.send_batch(&msgs)?;
        seq += batch as u64;
        since_clock += batch;
        if since_clock >= 64 {
            since_clock = 0;
            if Instant::now() >= end {
                break;
            }
        }
    }
    let stop = &mut msgs[0];
    stop.stamp(STOP, spec.index);
    tx.send(stop.bytes())?;
    Ok(ChildResult { sent: seq + 1, ..ChildResult::default() })
}

fn run_receiver(spec: &ChildSpec, mut rx: impl Rx) -> Res<ChildResult> {
    let senders = spec.senders.max(1) as usize;
    let mut expected = vec![0u64; senders];
    let mut errors = 0u64;
    let mut stops = 0usize;
    // The clock starts after `warmup_ms` of receiving and stops at the first STOP.
    let (first_seq, first_from) = rx.recv()?;
    let warm_end = Instant::now() + Duration::from_millis(spec.warmup_ms);
    let mut check = |seq: u64, from: u8, errors: &mut u64| match expected.get_mut(usize::from(from)) {
        Some(e) => {
            *errors += u64::from(seq != *e);
            *e = seq.wrapping_add(1);
        }
        None => *errors += 1,
    };
    let mut measuring: Option<(Instant, u64)> = None;
    let mut stopped: Option<(Instant, u64)> = None;
    let mut n = 0u64;
    let (mut seq, mut from) = (first_seq, first_from);
    loop {
        if seq == STOP {
            stops += 1;
            if stopped.is_none() {
                stopped = Some((Instant::now(), n));
            }
            if stops == senders {
                break;
            }
        } else {
            check(seq, from, &mut errors);
            n += 1;
            if measuring.is_none() && n.is_multiple_of(64) && Instant::now() >= warm_end {
                measuring = Some((Instant::now(), n));
            }
        }
        (seq, from) = rx.recv()?;
    }
    let (msgs, secs) = match (measuring, stopped) {
        (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => (n1 - n0, (t1 - t0).as_secs_f64()),
        _ => return Err(format!("the stream ended before the {} ms warm-up did", spec.warmup_ms).into()),
    };
    Ok(ChildResult { msgs, secs, errors, ..ChildResult::default() })
}

/// Spins (with a CPU hint) until `ready()` is true, failing after
/// [`PEER_TIMEOUT`] without it: the peer died or never came.
#[inline]
pub fn spin_until(mut ready: impl FnMut() -> bool) -> Res<()> {
    let mut spins = 0u32;
    let mut since: Option<Instant> = None;
    while !ready() {
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1 << 16) {
            let t0 = *since.get_or_insert_with(Instant::now);
            if t0.elapsed() > PEER_TIMEOUT {
                return Err(format!("peer silent for {PEER_TIMEOUT:?}").into());
            }
        }
    }
    Ok(())
}
