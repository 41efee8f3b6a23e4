//! What is measured: transports, patterns, cases, and the role a child
//! process plays in one run of a case.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The environment variable that turns a re-executed harness binary into a
/// benchmark child; its value is a [`ChildSpec`] as JSON.
pub const CHILD_ENV: &str = "SHMBUS_BENCH_CHILD";

/// Sequence number that ends a run (the last message of every sender).
pub const STOP: u64 = u64::MAX;

/// Bytes of every message that carry its header: sequence number (8, LE) and
/// sender index (1). Messages are at least this long.
pub const MSG_HEADER: usize = 9;

/// Messages per batch of [`Transport::ShmbusBatch`]: per `send_batch_all`
/// call of the sender, and at most per `recv_batch` call of the receiver.
pub const BATCH: usize = 32;

/// One way of moving messages between processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// shmbus, both sides `WaitStrategy::BusySpin`.
    ShmbusSpin,
    /// shmbus, both sides `WaitStrategy::SpinThenPark`.
    ShmbusSpinPark,
    /// shmbus, both sides `WaitStrategy::Park`.
    ShmbusPark,
    /// shmbus busy-spin through the zero-copy path: `Publisher::loan` and
    /// `Subscriber::recv_ref`, payload neither copied in nor out.
    ShmbusLoan,
    /// shmbus busy-spin in batches: `Publisher::send_batch_all` of
    /// [`BATCH`] messages (each copied into the ring) and
    /// `Subscriber::recv_batch` (each payload copied out once). Streams only.
    ShmbusBatch,
    /// Raw shared memory: one atomic sequence word each way, spun on.
    RawAtomic,
    /// Raw shared memory: one shared futex word each way, always parked on.
    RawFutex,
    /// A minimal single-producer single-consumer byte ring in a shared file.
    RawRing,
    /// Unix domain socket, `SOCK_STREAM`, blocking reads and writes.
    UdsStream,
    /// Unix domain socket, `SOCK_STREAM`, non-blocking, both sides spinning
    /// on `EAGAIN` (busy-polling): the like of shmbus busy-spin.
    UdsStreamPoll,
    /// Unix domain socket, `SOCK_SEQPACKET`.
    UdsSeqpacket,
    /// TCP over 127.0.0.1 with `TCP_NODELAY`.
    Tcp,
    /// The kernel pipe (a FIFO per direction).
    Pipe,
    /// iceoryx2 publish-subscribe, busy-polling.
    Iceoryx2,
}

/// How messages flow in a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    /// One message in flight, echoed back: latency (one-way = round trip / 2).
    Pingpong,
    /// One sender, one receiver, as fast as possible: throughput.
    Stream,
    /// One sender, four receivers: per-receiver throughput.
    Fanout,
    /// Two senders, one receiver: throughput at the receiver.
    Mpsc,
}

impl Transport {
    /// Every transport, in report order.
    pub const ALL: [Transport; 14] = [
        Transport::ShmbusSpin,
        Transport::ShmbusSpinPark,
        Transport::ShmbusPark,
        Transport::ShmbusLoan,
        Transport::ShmbusBatch,
        Transport::RawAtomic,
        Transport::RawFutex,
        Transport::RawRing,
        Transport::UdsStream,
        Transport::UdsStreamPoll,
        Transport::UdsSeqpacket,
        Transport::Tcp,
        Transport::Pipe,
        Transport::Iceoryx2,
    ];

    /// The name used by `--transports` and in charts.
    pub fn id(self) -> &'static str {
        match self {
            Transport::ShmbusSpin => "shmbus-spin",
            Transport::ShmbusSpinPark => "shmbus-spin-park",
            Transport::ShmbusPark => "shmbus-park",
            Transport::ShmbusLoan => "shmbus-loan",
            Transport::ShmbusBatch => "shmbus-batch",
            Transport::RawAtomic => "raw-atomic",
            Transport::RawFutex => "raw-futex",
            Transport::RawRing => "raw-ring",
            Transport::UdsStream => "uds-stream",
            Transport::UdsStreamPoll => "uds-stream-poll",
            Transport::UdsSeqpacket => "uds-seqpacket",
            Transport::Tcp => "tcp",
            Transport::Pipe => "pipe",
            Transport::Iceoryx2 => "iceoryx2",
        }
    }

    /// The `transport` field of a JSON record.
    pub fn family(self) -> &'static str {
        match self {
            Transport::ShmbusSpin | Transport::ShmbusSpinPark | Transport::ShmbusPark | Transport::ShmbusBatch => {
                "shmbus"
            }
            Transport::UdsStreamPoll => "uds-stream",
            other => other.id(),
        }
    }

    /// The `mode` field of a JSON record: how the receiving side waits.
    pub fn mode(self) -> &'static str {
        match self {
            Transport::ShmbusSpin | Transport::RawAtomic | Transport::RawRing => "busy-spin",
            Transport::ShmbusLoan => "busy-spin, no payload copy",
            Transport::ShmbusBatch => "busy-spin, batches of 32",
            Transport::ShmbusSpinPark => "spin-then-park",
            Transport::ShmbusPark | Transport::RawFutex => "park",
            Transport::UdsStream | Transport::UdsSeqpacket | Transport::Tcp | Transport::Pipe => "blocking",
            Transport::Iceoryx2 | Transport::UdsStreamPoll => "busy-poll",
        }
    }

    /// The patterns this transport is measured in.
    pub fn patterns(self) -> &'static [Pattern] {
        match self {
            Transport::ShmbusPark => &[Pattern::Pingpong, Pattern::Stream, Pattern::Fanout, Pattern::Mpsc],
            Transport::ShmbusSpinPark => &[Pattern::Pingpong, Pattern::Stream, Pattern::Fanout],
            // A ping-pong has one message in flight: nothing to batch.
            Transport::ShmbusBatch | Transport::RawRing => &[Pattern::Stream],
            Transport::RawAtomic | Transport::RawFutex => &[Pattern::Pingpong],
            _ => &[Pattern::Pingpong, Pattern::Stream],
        }
    }

    /// Whether this build can run it (iceoryx2 needs the `iceoryx2` feature).
    pub fn available(self) -> bool {
        self != Transport::Iceoryx2 || cfg!(feature = "iceoryx2")
    }

    /// Transports named by a `--transports` word: one id, or a group
    /// (`all`, `shmbus`, `raw`, `sockets`).
    pub fn parse_group(word: &str) -> Result<Vec<Transport>, String> {
        let all = || Transport::ALL.iter().copied().filter(|t| t.available()).collect::<Vec<_>>();
        match word {
            "all" => Ok(all()),
            "shmbus" => Ok(all().into_iter().filter(|t| t.family().starts_with("shmbus")).collect()),
            "raw" => Ok(all().into_iter().filter(|t| t.id().starts_with("raw-")).collect()),
            "sockets" => Ok(vec![
                Transport::UdsStream,
                Transport::UdsStreamPoll,
                Transport::UdsSeqpacket,
                Transport::Tcp,
                Transport::Pipe,
            ]),
            one => {
                let t: Transport = one.parse()?;
                if t.available() {
                    Ok(vec![t])
                } else {
                    Err(format!(
                        "transport {one} is not in this build (rebuild with `--features shmbus-bench/iceoryx2`)"
                    ))
                }
            }
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Transport::ALL.iter().copied().find(|t| t.id() == s).ok_or_else(|| {
            let ids: Vec<_> = Transport::ALL.iter().map(|t| t.id()).collect();
            format!("unknown transport {s:?} (expected all, shmbus, raw, sockets or one of {})", ids.join(", "))
        })
    }
}

impl Pattern {
    /// Every pattern, in report order.
    pub const ALL: [Pattern; 4] = [Pattern::Pingpong, Pattern::Stream, Pattern::Fanout, Pattern::Mpsc];

    /// The `pattern` field of a JSON record and the `--patterns` word.
    pub fn id(self) -> &'static str {
        match self {
            Pattern::Pingpong => "pingpong",
            Pattern::Stream => "stream",
            Pattern::Fanout => "fanout-1x4",
            Pattern::Mpsc => "mpsc-2x1",
        }
    }

    /// (senders, receivers).
    pub fn shape(self) -> (u32, u32) {
        match self {
            Pattern::Pingpong | Pattern::Stream => (1, 1),
            Pattern::Fanout => (1, 4),
            Pattern::Mpsc => (2, 1),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl FromStr for Pattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fanout" => return Ok(Pattern::Fanout),
            "mpsc" => return Ok(Pattern::Mpsc),
            _ => {}
        }
        Pattern::ALL
            .iter()
            .copied()
            .find(|p| p.id() == s)
            .ok_or_else(|| format!("unknown pattern {s:?} (expected pingpong, stream, fanout or mpsc)"))
    }
}

/// One measured combination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Case {
    /// Pattern.
    pub pattern: Pattern,
    /// Message size in bytes.
    pub size: usize,
    /// Transport.
    pub transport: Transport,
}

/// What a child process does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Echoes every message back (started first).
    Ponger,
    /// Sends, waits for the echo, and times the round trip.
    Pinger,
    /// Receives a stream and times it (started first).
    Receiver,
    /// Sends a stream for a fixed time.
    Sender,
}

impl Role {
    /// Servers are started first and say READY before clients start.
    pub fn is_server(self) -> bool {
        matches!(self, Role::Ponger | Role::Receiver)
    }
}

/// Everything a child needs, passed as JSON in [`CHILD_ENV`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChildSpec {
    /// Transport.
    pub transport: Transport,
    /// Pattern.
    pub pattern: Pattern,
    /// Role.
    pub role: Role,
    /// Index among the processes of this role (a sender's index goes into its messages).
    pub index: u8,
    /// Message size in bytes.
    pub size: usize,
    /// CPU to pin to, if any.
    pub cpu: Option<usize>,
    /// A fresh private directory for this run's files (bus files, sockets, FIFOs).
    pub dir: PathBuf,
    /// A tag unique to this run (for names outside `dir`, e.g. iceoryx2 services).
    pub tag: String,
    /// What the servers said when READY (e.g. a TCP port), for clients.
    pub peer: Option<String>,
    /// Warm-up time before measuring.
    pub warmup_ms: u64,
    /// Measuring time.
    pub measure_ms: u64,
    /// Number of senders in the case (a receiver waits for this many STOPs).
    pub senders: u32,
    /// Number of receivers in the case.
    pub receivers: u32,
    /// The floor probe's shared file (pinned 1 -> 1 cases): the two processes
    /// measure the raw cache-line round trip between their CPUs before and
    /// after the case, so each run carries the hardware floor it ran on.
    pub probe: Option<PathBuf>,
}

/// What a child reports.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChildResult {
    /// Pinger: measured round trips.
    pub samples: u64,
    /// Pinger: one-way latency percentiles (round trip / 2), nanoseconds.
    pub p50_ns: f64,
    /// See `p50_ns`.
    pub p99_ns: f64,
    /// See `p50_ns`.
    pub p999_ns: f64,
    /// See `p50_ns`.
    pub max_ns: f64,
    /// Receiver: messages received while measuring.
    pub msgs: u64,
    /// Receiver: measuring time in seconds.
    pub secs: f64,
    /// Receiver and pinger: messages out of order, lost or with a wrong echo.
    pub errors: u64,
    /// Sender: messages sent, warm-up included.
    pub sent: u64,
    /// Client of a pinned case: one-way cache-line latency between the two
    /// CPUs (p50 of the floor probe) just before the case, nanoseconds.
    pub floor_before_ns: Option<f64>,
    /// The same just after the case.
    pub floor_after_ns: Option<f64>,
}

/// Message sizes for humans: 64 B, 1 KiB, 64 KiB.
pub fn size_label(size: usize) -> String {
    if size >= 1 << 20 && size.is_multiple_of(1 << 20) {
        format!("{} MiB", size >> 20)
    } else if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size >> 10)
    } else {
        format!("{size} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_ids_round_trip() {
        for t in Transport::ALL {
            assert_eq!(t.id().parse::<Transport>(), Ok(t));
        }
        assert!("nope".parse::<Transport>().is_err());
        assert!(Transport::parse_group("shmbus").unwrap().contains(&Transport::ShmbusLoan));
        assert!(Transport::parse_group("shmbus").unwrap().contains(&Transport::ShmbusBatch));
        assert!(Transport::parse_group("all").unwrap().contains(&Transport::ShmbusBatch));
        assert_eq!(Transport::ShmbusBatch.mode(), format!("busy-spin, batches of {BATCH}"));
        assert_eq!(Transport::parse_group("raw").unwrap().len(), 3);
    }

    #[test]
    fn fan_out_runs_in_both_parking_modes_and_batches_only_stream() {
        for t in [Transport::ShmbusPark, Transport::ShmbusSpinPark] {
            assert!(t.patterns().contains(&Pattern::Fanout), "{t}");
        }
        assert_eq!(Transport::ShmbusBatch.patterns(), &[Pattern::Stream]);
    }

    #[test]
    fn sizes_read_as_humans_write_them() {
        assert_eq!(size_label(64), "64 B");
        assert_eq!(size_label(1024), "1 KiB");
        assert_eq!(size_label(65536), "64 KiB");
        assert_eq!(size_label(1000), "1000 B");
    }
}
