//! Running a bridge: open the Zenoh session, attach to every bus, start one
//! thread per mapping, print stats, and detach cleanly on SIGINT/SIGTERM.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shmbus::{BusConfig, Publisher, RecvError, SendError, StartAt, Subscriber};
use signal_hook::consts::{SIGINT, SIGTERM};
use zenoh::bytes::ZBytes;
use zenoh::qos::CongestionControl;
use zenoh::sample::{Locality, Sample};
use zenoh::{Session, Wait};

use crate::args::{zenoh_error, BridgeArgs, InMap, OutMap};
use crate::inbox::{Inbox, Item};
use crate::marker::{Marker, OwnWrites};
use crate::stats::{add, bump, InStats, OutStats};

/// One line on stdout (`ready`, `matching`, `stats`). A closed or broken
/// stdout must not end the bridge (`println!` would panic), so errors are ignored.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

/// One line on stderr, likewise never a panic.
macro_rules! warn {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($t)*);
    }};
}

/// How long a forwarding thread waits before it looks at the stop flag again.
const SLICE: Duration = Duration::from_millis(50);
/// After this long without any connected peer or router, say so once.
const LONELY_AFTER: Duration = Duration::from_secs(5);

/// Exit status: stopped by a signal after a clean detach.
pub const EXIT_OK: u8 = 0;
/// Exit status: the bridge failed (Zenoh session, a bus, a forwarding thread).
pub const EXIT_FAILED: u8 = 1;
/// Exit status: the arguments were wrong.
pub const EXIT_USAGE: u8 = 2;

type Fallible = Result<(), String>;

fn stop_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // A second signal while the first is being handled ends the process at
        // once (the kernel still releases the bridge's slots' locks).
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&flag));
        let _ = signal_hook::flag::register(sig, Arc::clone(&flag));
    }
    flag
}

/// Runs the bridge until SIGINT or SIGTERM; returns the process exit status.
/// Buses are opened in `bus_cfg`'s directory (created with its settings when
/// they do not exist yet). Errors are printed to stderr; machine-readable
/// lines (`ready`, `matching`, `stats`) go to stdout.
pub fn run(args: &BridgeArgs, bus_cfg: &BusConfig) -> u8 {
    if let Err(e) = args.check() {
        warn!("shmbus-zenoh: {e}");
        return EXIT_USAGE;
    }
    let stop = stop_flag();
    match run_inner(args, bus_cfg, &stop) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            warn!("shmbus-zenoh: {e}");
            EXIT_FAILED
        }
    }
}

struct Running {
    outs: Vec<(String, Arc<OutStats>)>,
    ins: Vec<(String, Arc<InStats>)>,
    threads: Vec<(String, JoinHandle<Fallible>)>,
}

fn run_inner(args: &BridgeArgs, bus_cfg: &BusConfig, stop: &Arc<AtomicBool>) -> Fallible {
    let zcfg = args.zenoh_config()?;
    let session = zenoh::open(zcfg).wait().map_err(|e| format!("cannot open the Zenoh session: {}", zenoh_error(e)))?;
    let zid = session.zid();
    let origin = zid.to_le_bytes();

    // Buses forwarded out: their own-writes sets, shared with the --in threads writing to them.
    let own: HashMap<&str, Arc<OwnWrites>> =
        args.outs.iter().map(|o| (o.bus.as_str(), Arc::new(OwnWrites::default()))).collect();

    let mut run = Running { outs: Vec::new(), ins: Vec::new(), threads: Vec::new() };
    let started = start_all(args, bus_cfg, &session, origin, &own, stop, &mut run);
    let mut result = started;
    if result.is_ok() {
        say!("ready zid={zid}");
        result = supervise(args, &session, stop, &run);
    }
    stop.store(true, Ordering::Relaxed);
    for (name, t) in run.threads.drain(..) {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                warn!("shmbus-zenoh: {name}: {e}");
                if result.is_ok() {
                    result = Err(format!("{name} failed"));
                }
            }
            Err(_) => result = Err(format!("{name}: the forwarding thread panicked")),
        }
    }
    print_stats(&run, "final");
    if let Err(e) = session.close().wait() {
        warn!("shmbus-zenoh: closing the Zenoh session: {}", zenoh_error(e));
    }
    result
}

fn start_all(
    args: &BridgeArgs,
    bus_cfg: &BusConfig,
    session: &Session,
    origin: [u8; 16],
    own: &HashMap<&str, Arc<OwnWrites>>,
    stop: &Arc<AtomicBool>,
    run: &mut Running,
) -> Fallible {
    for (i, m) in args.outs.iter().enumerate() {
        let stream = u32::try_from(i).map_err(|_| "too many --out mappings".to_owned())?;
        let name = format!("{}={}", m.bus, m.key);
        let stats = Arc::new(OutStats::default());
        let link = OutLink::start(m, bus_cfg, session, origin, stream, own.get(m.bus.as_str()).cloned(), &stats)?;
        let stop = Arc::clone(stop);
        let t = std::thread::Builder::new()
            .name(format!("out {name}"))
            .spawn(move || link.run(&stop))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        run.outs.push((name.clone(), stats));
        run.threads.push((format!("--out {name}"), t));
    }
    for m in &args.ins {
        let name = format!("{}={}", m.key, m.bus);
        let stats = Arc::new(InStats::default());
        let link = InLink::start(m, bus_cfg, session, origin, own.get(m.bus.as_str()).cloned(), &stats, stop, args)?;
        let stop = Arc::clone(stop);
        let t = std::thread::Builder::new()
            .name(format!("in {name}"))
            .spawn(move || link.run(&stop))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        run.ins.push((name.clone(), stats));
        run.threads.push((format!("--in {name}"), t));
    }
    Ok(())
}

/// Waits for a stop (signal or a failed thread), printing stats lines.
fn supervise(args: &BridgeArgs, session: &Session, stop: &AtomicBool, run: &Running) -> Fallible {
    let every = (args.stats > 0.0).then(|| Duration::from_secs_f64(args.stats));
    let start = Instant::now();
    let mut next_stats = every.map(|e| start + e);
    let mut warned = false;
    loop {
        std::thread::sleep(SLICE);
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        // A forwarding thread ends on its own only when it failed.
        if let Some((name, _)) = run.threads.iter().find(|(_, t)| t.is_finished()) {
            return Err(format!("{name} stopped"));
        }
        let now = Instant::now();
        if !warned && now - start > LONELY_AFTER && (!args.connect.is_empty()) {
            let peers = session.info().peers_zid().wait().count() + session.info().routers_zid().wait().count();
            if peers == 0 {
                warned = true;
                warn!(
                    "shmbus-zenoh: no Zenoh peer or router reachable after {} s (connect: {}); still trying",
                    LONELY_AFTER.as_secs(),
                    args.connect.join(", ")
                );
            }
        }
        if let (Some(at), Some(e)) = (next_stats, every) {
            if now >= at {
                let peers = session.info().peers_zid().wait().count();
                let routers = session.info().routers_zid().wait().count();
                say!("stats zenoh peers={peers} routers={routers}");
                print_stats(run, "stats");
                next_stats = Some(at + e);
            }
        }
    }
}

fn print_stats(run: &Running, what: &str) {
    for (name, s) in &run.outs {
        say!("{what} out {name} {s}");
    }
    for (name, s) in &run.ins {
        say!("{what} in {name} {s}");
    }
}

/// Attaches to an existing bus whatever its settings; a bus that does not
/// exist yet is created with `bus_cfg`'s (the defaults unless the caller
/// changed them: 1 MiB ring, 64 KiB max_message, block).
fn attach_or_create<T>(
    attach: impl Fn() -> Result<T, shmbus::Error>,
    create: impl Fn() -> Result<T, shmbus::Error>,
) -> Result<T, shmbus::Error> {
    match attach() {
        Err(shmbus::Error::NotFound { .. }) => match create() {
            // Someone else created it in between, with other settings: use theirs.
            Err(shmbus::Error::Incompatible { .. }) => attach(),
            r => r,
        },
        r => r,
    }
}

/// One `--out BUS=KEYEXPR`: the bus subscriber and the Zenoh publisher.
struct OutLink {
    name: String,
    sub: Subscriber,
    publisher: zenoh::pubsub::Publisher<'static>,
    matching: Arc<AtomicBool>,
    own: Option<Arc<OwnWrites>>,
    stats: Arc<OutStats>,
    origin: [u8; 16],
    stream: u32,
}

impl OutLink {
    fn start(
        m: &OutMap,
        bus_cfg: &BusConfig,
        session: &Session,
        origin: [u8; 16],
        stream: u32,
        own: Option<Arc<OwnWrites>>,
        stats: &Arc<OutStats>,
    ) -> Result<OutLink, String> {
        let name = format!("{}={}", m.bus, m.key);
        // Latest: a restarted bridge does not send again what it sent before.
        let sub = attach_or_create(
            || Subscriber::attach(&m.bus, bus_cfg, StartAt::Latest),
            || Subscriber::open_or_create(&m.bus, bus_cfg, StartAt::Latest),
        )
        .map_err(|e| format!("--out {name}: cannot attach to bus '{}': {e}", m.bus))?;
        let publisher = session
            .declare_publisher(m.key.clone())
            // Lossless towards Zenoh: a full transmit queue makes put wait
            // (and so this bus subscriber, and so the bus's publishers in block mode).
            .congestion_control(CongestionControl::Block)
            // Only to other sessions: a bridge never receives its own samples.
            .allowed_destination(Locality::Remote)
            .wait()
            .map_err(|e| format!("--out {name}: cannot declare a Zenoh publisher: {}", zenoh_error(e)))?;
        let matching = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&matching);
        let label = name.clone();
        publisher
            .matching_listener()
            .callback(move |st| {
                flag.store(st.matching(), Ordering::Relaxed);
                say!("matching out {label} {}", st.matching());
            })
            .background()
            .wait()
            .map_err(|e| format!("--out {name}: cannot watch the matching status: {}", zenoh_error(e)))?;
        Ok(OutLink { name, sub, publisher, matching, own, stats: Arc::clone(stats), origin, stream })
    }

    fn run(mut self, stop: &AtomicBool) -> Fallible {
        let mut counter = 0u64;
        let mut buf = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match self.sub.recv_into(&mut buf, Some(SLICE)) {
                Ok(seq) => {
                    bump(&self.stats.read);
                    if self.own.as_ref().is_some_and(|o| o.is_own(seq)) {
                        bump(&self.stats.own);
                        continue;
                    }
                    let marker = Marker { origin: self.origin, stream: self.stream, counter };
                    counter = counter.wrapping_add(1);
                    let matched = self.matching.load(Ordering::Relaxed);
                    self.publisher
                        .put(ZBytes::from(std::mem::take(&mut buf)))
                        .attachment(ZBytes::from(marker.encode().to_vec()))
                        .wait()
                        .map_err(|e| {
                            format!("cannot put on Zenoh key {}: {}", self.publisher.key_expr(), zenoh_error(e))
                        })?;
                    bump(if matched { &self.stats.forwarded } else { &self.stats.unmatched });
                }
                Err(RecvError::Timeout) => {}
                Err(RecvError::Lagged { lost }) => add(&self.stats.lagged, lost),
                Err(e) => return Err(format!("--out {}: bus '{}': {e}", self.name, self.sub.name())),
            }
        }
        Ok(())
    }
}

/// One `--in KEYEXPR=BUS`: the Zenoh subscriber (feeding an inbox) and the bus publisher.
struct InLink {
    name: String,
    publ: Publisher,
    inbox: Arc<Inbox>,
    _sub: zenoh::pubsub::Subscriber<()>,
    own: Option<Arc<OwnWrites>>,
    stats: Arc<InStats>,
}

impl InLink {
    #[allow(clippy::too_many_arguments)]
    fn start(
        m: &InMap,
        bus_cfg: &BusConfig,
        session: &Session,
        origin: [u8; 16],
        own: Option<Arc<OwnWrites>>,
        stats: &Arc<InStats>,
        stop: &Arc<AtomicBool>,
        args: &BridgeArgs,
    ) -> Result<InLink, String> {
        let name = format!("{}={}", m.key, m.bus);
        let publ =
            attach_or_create(|| Publisher::attach(&m.bus, bus_cfg), || Publisher::open_or_create(&m.bus, bus_cfg))
                .map_err(|e| format!("--in {name}: cannot attach to bus '{}': {e}", m.bus))?;
        let inbox = Arc::new(Inbox::new(args.in_buffer));
        let (q, st, stop) = (Arc::clone(&inbox), Arc::clone(stats), Arc::clone(stop));
        let sub = session
            .declare_subscriber(m.key.clone())
            .allowed_origin(Locality::Remote)
            .callback(move |sample: Sample| {
                let marker = sample.attachment().and_then(|a| Marker::decode(&a.to_bytes()));
                if marker.is_some_and(|mk| mk.origin == origin) {
                    bump(&st.own);
                    return;
                }
                let queued = q.push(Item { payload: sample.payload().clone(), marker }, &stop);
                st.queued_bytes.store(queued as u64, Ordering::Relaxed);
            })
            .wait()
            .map_err(|e| format!("--in {name}: cannot declare a Zenoh subscriber: {}", zenoh_error(e)))?;
        Ok(InLink { name, publ, inbox, _sub: sub, own, stats: Arc::clone(stats) })
    }

    fn run(mut self, stop: &AtomicBool) -> Fallible {
        // The next counter expected from each sending bridge's mapping.
        let mut next: HashMap<([u8; 16], u32), u64> = HashMap::new();
        while !stop.load(Ordering::Relaxed) {
            let Some((item, left)) = self.inbox.pop(SLICE) else {
                // Idle: the gauge again from the inbox itself. The Zenoh
                // callback stores the size after its push outside the inbox's
                // lock, so it can land after our store of what was left after
                // popping that very item, and leave a stale non-zero value.
                self.stats.queued_bytes.store(self.inbox.bytes() as u64, Ordering::Relaxed);
                continue;
            };
            self.stats.queued_bytes.store(left as u64, Ordering::Relaxed);
            bump(&self.stats.received);
            if let Some(m) = item.marker {
                let key = (m.origin, m.stream);
                match next.get(&key).copied() {
                    // The first sample seen from this sender: what it sent
                    // before we listened was not ours to receive.
                    None => {
                        next.insert(key, m.counter.wrapping_add(1));
                    }
                    Some(n) if m.counter >= n => {
                        add(&self.stats.net_lost, m.counter - n);
                        next.insert(key, m.counter.wrapping_add(1));
                    }
                    Some(_) => bump(&self.stats.reordered),
                }
            }
            let bytes = item.payload.to_bytes();
            if bytes.len() > self.publ.max_message() {
                bump(&self.stats.too_large);
                continue;
            }
            if !self.write(&bytes, stop)? {
                break;
            }
        }
        Ok(())
    }

    /// Publishes one message, waiting for space in short slices so a stop is
    /// seen. Returns false when stopped before it could be written.
    fn write(&mut self, bytes: &[u8], stop: &AtomicBool) -> Result<bool, String> {
        let mut backoff = Duration::from_micros(20);
        loop {
            match self.publ.try_loan(bytes.len()) {
                Ok(mut loan) => {
                    if let Some(own) = &self.own {
                        // Before the commit makes it visible to our own --out subscriber.
                        own.insert(loan.seq());
                    }
                    loan.copy_from_slice(bytes);
                    match loan.commit() {
                        Ok(()) => {
                            bump(&self.stats.written);
                            return Ok(true);
                        }
                        // Held past a peer's unblock timeout (this process was
                        // stopped): nothing was published; write it again.
                        Err(SendError::Abandoned { .. }) => continue,
                        Err(e) => return Err(format!("--in {}: {e}", self.name)),
                    }
                }
                Err(SendError::Full) => {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(false);
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(1));
                }
                Err(SendError::TooLarge { .. }) => {
                    bump(&self.stats.too_large);
                    return Ok(true);
                }
                Err(e) => return Err(format!("--in {}: {e}", self.name)),
            }
        }
    }
}
