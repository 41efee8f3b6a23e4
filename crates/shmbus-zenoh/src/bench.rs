//! `shmbus-zenoh-bench`: what the bridge costs, on loopback, next to its baselines in the same run.
//!
//! Three paths carry the same messages from one thread of this process to another:
//!
//! - `bridge`: bus (dir A) -> `shmbus-zenoh` process -> Zenoh over TCP
//!   127.0.0.1 -> `shmbus-zenoh` process -> bus (dir B). The two bridges are
//!   real processes (the binary next to this one); this process publishes on
//!   bus A and subscribes to bus B.
//! - `zenoh`: two Zenoh peer sessions opened by this process, connected over
//!   TCP 127.0.0.1 (publisher with blocking congestion control, subscriber
//!   callback into a channel): Zenoh peer to peer directly, no bus.
//! - `uds`: a Unix stream socket pair, length-prefixed frames.
//!
//! Latency: one message in flight at a time, one-way time from just before
//! the send to the receipt (one clock: both ends are in this process);
//! p50/p99/p99.9 over `--samples` messages after a warm-up. Throughput: a
//! sender thread sends `--bytes` worth of messages as fast as the path takes
//! them, the receiver counts; messages/s and MB/s from the first send to the
//! last receipt. Build with `--release`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shmbus::{BusConfig, Publisher, StartAt, Subscriber};
use zenoh::qos::CongestionControl;
use zenoh::Wait;

const DEADLINE: Duration = Duration::from_secs(60);

struct Opts {
    sizes: Vec<usize>,
    samples: u64,
    bytes: u64,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts { sizes: vec![64, 1024, 65536], samples: 5000, bytes: 256 << 20 };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--sizes" => {
                o.sizes = val()?
                    .split(',')
                    .map(|s| s.parse().map_err(|_| format!("bad size {s:?}")))
                    .collect::<Result<_, _>>()?
            }
            "--samples" => o.samples = val()?.parse().map_err(|_| "bad --samples".to_owned())?,
            "--bytes" => o.bytes = val()?.parse().map_err(|_| "bad --bytes".to_owned())?,
            "-h" | "--help" => {
                println!("shmbus-zenoh-bench [--sizes 64,1024,65536] [--samples 5000] [--bytes 268435456]");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    if o.sizes.iter().any(|&s| !(16..=65536).contains(&s)) {
        return Err("sizes must be 16..=65536 bytes".into());
    }
    Ok(o)
}

/// The sending end of a path (moved to the sender thread and back).
trait Tx: Send {
    fn send(&mut self, m: &[u8]);
}

/// The receiving end of a path.
trait Rx {
    /// Receives one message into `buf`; false after [`DEADLINE`] without one.
    fn recv(&mut self, buf: &mut Vec<u8>) -> bool;
}

struct Path2 {
    name: &'static str,
    tx: Option<Box<dyn Tx>>,
    rx: Box<dyn Rx>,
    _guard: Box<dyn std::any::Any>,
}

// ---------------------------------------------------------------- bridge

fn private_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shmbus-zenoh-bench-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir(&d).expect("create a bench directory");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).expect("chmod 0700");
    d
}

fn free_endpoint() -> String {
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port();
    format!("tcp/127.0.0.1:{port}")
}

/// Waits for a stdout line of `child` satisfying `pred`, then keeps draining its stdout.
fn wait_stdout_line(child: &mut Child, pred: impl Fn(&str) -> bool) -> Result<(), String> {
    let out = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let end = Instant::now() + DEADLINE;
    loop {
        match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(l) if pred(&l) => return Ok(()),
            Ok(_) => {}
            Err(_) => return Err("the bridge did not report a matching subscriber in time".into()),
        }
    }
}

/// The two bridge processes and their directories; dropped at the end of the run.
struct Bridges {
    children: Vec<Child>,
    dirs: Vec<PathBuf>,
}

impl Drop for Bridges {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

impl Tx for Publisher {
    fn send(&mut self, m: &[u8]) {
        Publisher::send(self, m).expect("send on bus A");
    }
}

impl Rx for Subscriber {
    fn recv(&mut self, buf: &mut Vec<u8>) -> bool {
        self.recv_into(buf, Some(DEADLINE)).is_ok()
    }
}

fn bridge_path() -> Result<Path2, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bridge = exe.with_file_name("shmbus-zenoh");
    if !bridge.exists() {
        return Err(format!("{} not found: cargo build --release -p shmbus-zenoh", bridge.display()));
    }
    let (a, b) = (private_dir("a"), private_dir("b"));
    let mut guard = Bridges { children: vec![], dirs: vec![a.clone(), b.clone()] };
    // The default bus: 1 MiB ring, 64 KiB max_message, block.
    let publ = Publisher::open_or_create("bench", &BusConfig::default().dir(&a)).map_err(|e| e.to_string())?;
    let sub = Subscriber::open_or_create("bench", &BusConfig::default().dir(&b), StartAt::Latest)
        .map_err(|e| e.to_string())?;
    let ep = free_endpoint();
    let spawn = |dir: &Path, args: &[&str]| {
        Command::new(&bridge)
            .arg("--dir")
            .arg(dir)
            .args(["--multicast-scouting", "off", "--stats", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start {}: {e}", bridge.display()))
    };
    guard.children.push(spawn(&a, &["--listen", &ep, "--out", "bench=bench/path"])?);
    guard.children.push(spawn(&b, &["--connect", &ep, "--in", "bench/path=bench"])?);
    wait_stdout_line(&mut guard.children[0], |l| l == "matching out bench=bench/path true")?;
    Ok(Path2 {
        name: "bus-bridge-zenoh-bridge-bus",
        tx: Some(Box::new(publ)),
        rx: Box::new(sub),
        _guard: Box::new(guard),
    })
}

// ---------------------------------------------------------------- zenoh alone

struct ZTx(zenoh::pubsub::Publisher<'static>);

impl Tx for ZTx {
    fn send(&mut self, m: &[u8]) {
        self.0.put(m.to_vec()).wait().expect("zenoh put");
    }
}

struct ZRx(mpsc::Receiver<zenoh::bytes::ZBytes>);

impl Rx for ZRx {
    fn recv(&mut self, buf: &mut Vec<u8>) -> bool {
        match self.0.recv_timeout(DEADLINE) {
            Ok(z) => {
                buf.clear();
                buf.extend_from_slice(&z.to_bytes());
                true
            }
            Err(_) => false,
        }
    }
}

fn zenoh_path() -> Result<Path2, String> {
    let ep = free_endpoint();
    let conf = |k: &str| -> Result<zenoh::Config, String> {
        let mut c = zenoh::Config::default();
        c.insert_json5("scouting/multicast/enabled", "false").map_err(|e| e.to_string())?;
        c.insert_json5(k, &format!("[\"{ep}\"]")).map_err(|e| e.to_string())?;
        Ok(c)
    };
    let s1 = zenoh::open(conf("listen/endpoints")?).wait().map_err(|e| e.to_string())?;
    let s2 = zenoh::open(conf("connect/endpoints")?).wait().map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::sync_channel(256);
    let sub = s2
        .declare_subscriber("bench/direct")
        .callback(move |s: zenoh::sample::Sample| {
            let _ = tx.send(s.payload().clone());
        })
        .wait()
        .map_err(|e| e.to_string())?;
    let publ = s1
        .declare_publisher("bench/direct")
        .congestion_control(CongestionControl::Block)
        .wait()
        .map_err(|e| e.to_string())?;
    let end = Instant::now() + DEADLINE;
    while !publ.matching_status().wait().map_err(|e| e.to_string())?.matching() {
        if Instant::now() > end {
            return Err("the Zenoh sessions did not match".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(Path2 {
        name: "zenoh-peer-to-peer",
        tx: Some(Box::new(ZTx(publ))),
        rx: Box::new(ZRx(rx)),
        _guard: Box::new((sub, s1, s2)),
    })
}

// ---------------------------------------------------------------- unix socket

struct UTx(UnixStream, Vec<u8>);

impl Tx for UTx {
    /// One write(2) per message: the length prefix and the payload together.
    fn send(&mut self, m: &[u8]) {
        self.1.clear();
        self.1.extend_from_slice(&u32::try_from(m.len()).expect("small").to_le_bytes());
        self.1.extend_from_slice(m);
        self.0.write_all(&self.1).expect("write to the socket");
    }
}

struct URx(std::io::BufReader<UnixStream>);

impl Rx for URx {
    fn recv(&mut self, buf: &mut Vec<u8>) -> bool {
        let mut len = [0u8; 4];
        if self.0.read_exact(&mut len).is_err() {
            return false;
        }
        buf.resize(u32::from_le_bytes(len) as usize, 0);
        self.0.read_exact(buf).is_ok()
    }
}

fn uds_path() -> Result<Path2, String> {
    let (a, b) = UnixStream::pair().map_err(|e| e.to_string())?;
    b.set_read_timeout(Some(DEADLINE)).map_err(|e| e.to_string())?;
    Ok(Path2 {
        name: "unix-stream-socket",
        tx: Some(Box::new(UTx(a, Vec::new()))),
        rx: Box::new(URx(BufReader::with_capacity(1 << 17, b))),
        _guard: Box::new(()),
    })
}

// ---------------------------------------------------------------- measuring

fn now_ns(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

struct Row {
    path: &'static str,
    size: usize,
    p50: f64,
    p99: f64,
    p999: f64,
    msgs_per_s: f64,
    mb_per_s: f64,
}

fn latency(p: &mut Path2, size: usize, samples: u64) -> Result<Histogram<u64>, String> {
    let base = Instant::now();
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())?;
    let mut msg = vec![0u8; size];
    let mut buf = Vec::new();
    let tx = p.tx.as_mut().expect("tx");
    let warmup = samples / 10 + 10;
    for i in 0..warmup + samples {
        msg[..8].copy_from_slice(&now_ns(base).to_le_bytes());
        msg[8..16].copy_from_slice(&i.to_le_bytes());
        tx.send(&msg);
        if !p.rx.recv(&mut buf) {
            return Err(format!("{}: message {i} did not arrive", p.name));
        }
        let t = now_ns(base);
        let sent = u64::from_le_bytes(buf[..8].try_into().map_err(|_| "short message")?);
        let seq = u64::from_le_bytes(buf[8..16].try_into().map_err(|_| "short message")?);
        if seq != i || buf.len() != size {
            return Err(format!("{}: expected message {i} of {size} B, got {seq} of {} B", p.name, buf.len()));
        }
        if i >= warmup {
            h.record(t.saturating_sub(sent).max(1)).map_err(|e| e.to_string())?;
        }
    }
    Ok(h)
}

fn throughput(p: &mut Path2, size: usize, total_bytes: u64) -> Result<(f64, f64), String> {
    let n = (total_bytes / size as u64).clamp(1000, 2_000_000);
    let mut tx = p.tx.take().expect("tx");
    let start = Instant::now();
    let sender = std::thread::spawn(move || {
        let mut msg = vec![0u8; size];
        for i in 0..n {
            msg[8..16].copy_from_slice(&i.to_le_bytes());
            tx.send(&msg);
        }
        tx
    });
    let mut buf = Vec::new();
    for i in 0..n {
        if !p.rx.recv(&mut buf) {
            return Err(format!("{}: message {i} of {n} did not arrive", p.name));
        }
        let seq = u64::from_le_bytes(buf[8..16].try_into().map_err(|_| "short message")?);
        if seq != i {
            return Err(format!("{}: message {seq} arrived where {i} was expected", p.name));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    p.tx = Some(sender.join().map_err(|_| "the sender panicked")?);
    let msgs = n as f64 / secs;
    Ok((msgs, msgs * size as f64 / 1e6))
}

fn measure(p: &mut Path2, o: &Opts, rows: &mut Vec<Row>) -> Result<(), String> {
    for &size in &o.sizes {
        let h = latency(p, size, o.samples)?;
        let (msgs_per_s, mb_per_s) = throughput(p, size, o.bytes)?;
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let row = Row { path: p.name, size, p50: us(0.5), p99: us(0.99), p999: us(0.999), msgs_per_s, mb_per_s };
        eprintln!(
            "{:<30} {:>6} B  p50 {:>8.1} us  p99 {:>8.1} us  {:>10.0} msg/s  {:>8.1} MB/s",
            row.path, row.size, row.p50, row.p99, row.msgs_per_s, row.mb_per_s
        );
        rows.push(row);
    }
    Ok(())
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("shmbus-zenoh-bench: {e}");
            std::process::exit(2);
        }
    };
    let mut rows = Vec::new();
    type Make = fn() -> Result<Path2, String>;
    let makers: [(&str, Make); 3] = [("bridge", bridge_path), ("zenoh", zenoh_path), ("uds", uds_path)];
    for (what, make) in makers {
        let r = make().and_then(|mut p| measure(&mut p, &o, &mut rows));
        if let Err(e) = r {
            eprintln!("shmbus-zenoh-bench: {what}: {e}");
            std::process::exit(1);
        }
    }
    println!("| path | size | latency p50 (us) | p99 (us) | p99.9 (us) | throughput (msg/s) | throughput (MB/s) |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} B | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} |",
            r.path, r.size, r.p50, r.p99, r.p999, r.msgs_per_s, r.mb_per_s
        );
    }
}
