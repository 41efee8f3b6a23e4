//! Reliability suite, hostile input (docs/reliability.md, items 5 to 7):
//! every single-byte mutation and every truncation of a bus file, a hostile
//! process scribbling over a live mapping, and property tests (the stable
//! twin of the cargo-fuzz target in fuzz/) over header validation and frame
//! parsing from arbitrary bytes.
//!
//! Opening and using damaged files happens in child processes, so a panic,
//! an abort or a SIGBUS is observed as a failure instead of killing the test.

mod reliability_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use reliability_support::{Rng, *};
use shmbus_core::{Bus, BusConfig, Consumer, Error, Overflow, PeerKind, Poll, Producer, Region, StartAt, WaitStrategy};

const SEC: Duration = Duration::from_secs(1);

fn env_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("SHMBUS_DIR").expect("SHMBUS_DIR"))
}

/// The template bus of item 5: 4 peer slots (a 4096-byte header and a
/// 512-byte peer table in an 8192-byte first part), a 4096-byte ring.
fn mut_cfg(dir: &Path) -> BusConfig {
    BusConfig::default().dir(dir).capacity(4096).max_message(992).max_peers(4).persistent(true)
}

/// Builds a template file image with traffic in the ring, a subscriber slot,
/// a publisher slot, and a publisher holding an uncommitted claim (so that the
/// mutated copies carry dead peers with work to repair).
fn template(dir: &Path, name: &str) -> Vec<u8> {
    let cfg = mut_cfg(dir);
    let mut sub = Consumer::new(
        Bus::open_or_create(name, &cfg, PeerKind::Subscriber).unwrap(),
        StartAt::Oldest,
        WaitStrategy::Park,
    );
    let mut publ = Producer::new(Bus::open_or_create(name, &cfg, PeerKind::Publisher).unwrap(), WaitStrategy::Park);
    let mut holder = Producer::new(Bus::open_or_create(name, &cfg, PeerKind::Publisher).unwrap(), WaitStrategy::Park);
    let mut buf = Vec::new();
    for seq in 0..40u64 {
        publ.send(&make_msg(7, seq, 0, 32 + (seq as usize * 53) % 600), Some(Instant::now() + SEC)).unwrap();
        if seq < 37 {
            assert!(matches!(sub.try_read(&mut buf).unwrap(), Poll::Message { .. }));
        }
    }
    let _claim = holder.claim(100, Some(Instant::now())).unwrap();
    let bytes = std::fs::read(dir.join(format!("{name}.bus"))).unwrap();
    drop((sub, publ, holder));
    shmbus_core::remove(name, &cfg, true).unwrap();
    bytes
}

#[derive(Clone, Copy, Debug)]
enum Mutation {
    Byte(usize, u8),
    Truncate(usize),
    Extend(usize),
}

/// Every mutation of item 5, in a fixed order derived from the template.
/// Full scale: every byte before the ring (header, peer table and the unused
/// rest of that page) with six values each, and every truncation length.
/// CI scale: the header and the peer table with two values each, and every
/// 8th truncation length plus the boundaries.
fn mutations(tpl: &[u8], data_offset: usize, full_scale: bool) -> Vec<Mutation> {
    let mut out = Vec::new();
    let (end, values) = if full_scale { (data_offset, 6) } else { (4096 + 4 * 128, 2) };
    for (off, &orig) in tpl[..end].iter().enumerate() {
        let mut vals = vec![orig ^ 0x01, 0xff, 0x00, orig ^ 0x80, orig ^ 0x10, orig.wrapping_add(1)];
        vals.truncate(values);
        vals.sort_unstable();
        vals.dedup();
        out.extend(vals.into_iter().filter(|v| *v != orig).map(|v| Mutation::Byte(off, v)));
    }
    let n = tpl.len();
    let edges = [0, 1, 8, 4095, 4096, 4097, data_offset - 1, data_offset, data_offset + 1, n - 1, n];
    out.extend((0..=n).filter(|l| full_scale || l % 8 == 0 || edges.contains(l)).map(Mutation::Truncate));
    out.extend([1, 7, 8, 4095, 4096, 65536].map(Mutation::Extend));
    out
}

fn apply(tpl: &[u8], m: Mutation) -> Vec<u8> {
    let mut b = tpl.to_vec();
    match m {
        Mutation::Byte(off, v) => b[off] = v,
        Mutation::Truncate(len) => b.truncate(len),
        Mutation::Extend(n) => b.resize(b.len() + n, 0),
    }
    b
}

fn kind(e: &Error) -> String {
    let s = format!("{e:?}");
    s.split([' ', '{', '(']).next().unwrap_or("?").to_owned()
}

/// Opens a damaged file and exercises it: subscriber and publisher attach,
/// reads, sends, inspect, list, gc. Returns the outcome ("ok" or the error
/// kinds met); a delivered message that fails its check is an error.
fn exercise(dir: &Path, name: &str, cfg: &BusConfig, long_wait: bool) -> Result<String, String> {
    let mut outcome = Vec::new();
    let mut note = |what: &str, r: Result<(), Error>| {
        if let Err(e) = r {
            outcome.push(format!("{what}:{}", kind(&e)));
        }
    };
    let sub = Bus::attach(name, cfg, PeerKind::Subscriber);
    let publ = Bus::attach(name, cfg, PeerKind::Publisher);
    let mut buf = Vec::new();
    match sub {
        Ok(bus) => {
            let mut c = Consumer::new(bus, StartAt::Oldest, WaitStrategy::Park);
            for _ in 0..50 {
                match c.try_read(&mut buf) {
                    Ok(Poll::Message { .. }) => {
                        check_msg(&buf).map_err(|e| format!("corrupt delivery: {e}"))?;
                    }
                    Ok(Poll::Lagged { .. }) => {}
                    Ok(Poll::Empty) => break,
                    Err(e) => {
                        note("read", Err(e));
                        break;
                    }
                }
            }
            if let Ok(publ) = publ {
                let mut p = Producer::new(publ, WaitStrategy::Park);
                for seq in 0..3 {
                    let _ = p.send(&make_msg(9, seq, 0, 200), Some(Instant::now()));
                }
                let deadline = Instant::now() + if long_wait { Duration::from_millis(25) } else { Duration::ZERO };
                match c.read(&mut buf, Some(deadline)) {
                    Ok(Poll::Message { .. }) => {
                        check_msg(&buf).map_err(|e| format!("corrupt delivery: {e}"))?;
                    }
                    Ok(_) => {}
                    Err(e) => note("read2", Err(e)),
                }
            }
        }
        Err(e) => {
            note("attach", Err(e));
            if let Ok(publ) = publ {
                let mut p = Producer::new(publ, WaitStrategy::Park);
                let _ = p.send(&make_msg(9, 0, 0, 200), Some(Instant::now()));
            }
        }
    }
    note("inspect", shmbus_core::inspect(name, cfg).map(drop));
    note("list", shmbus_core::list(cfg).map(drop));
    note("gc", shmbus_core::gc(cfg).map(drop));
    let _ = dir;
    Ok(if outcome.is_empty() { "ok".into() } else { outcome.join(",") })
}

/// The child entry point: does nothing unless started with a role.
#[test]
fn __child() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let a = args();
    let dir = env_dir();
    match role.as_str() {
        // mutate-check START VALUES: applies mutations START.. of the template
        // in dir/template.bin, each to a fresh dir/mut.bus, and exercises it.
        "mutate-check" => {
            let start: usize = a[0].parse().unwrap();
            let long_every: usize = a[1].parse().unwrap();
            let tpl = std::fs::read(dir.join("template.bin")).unwrap();
            let cfg = mut_cfg(&dir);
            let data_offset = shmbus_core::layout::data_offset(4, 4096) as usize;
            let all = mutations(&tpl, data_offset, full());
            let path = dir.join("mut.bus");
            for (i, m) in all.iter().enumerate().skip(start) {
                say(format!("S {i}"));
                // The file is rewritten while nothing in this process maps it.
                std::fs::write(&path, apply(&tpl, *m)).unwrap();
                match exercise(&dir, "mut", &cfg, i % long_every == 0) {
                    Ok(outcome) => say(format!("E {i} {outcome}")),
                    Err(bad) => say(format!("BAD {i} {m:?} {bad}")),
                }
            }
            say("DONE");
        }
        // scribbler MILLIS SEED: writes random bytes all over the mapping of bus "hostile".
        "scribbler" => {
            let millis: u64 = a[0].parse().unwrap();
            let mut rng = Rng::seeded(a[1].parse().unwrap());
            let file = std::fs::OpenOptions::new().read(true).write(true).open(dir.join("hostile.bus")).unwrap();
            let len = file.metadata().unwrap().len() as usize;
            let map = memmap2::MmapOptions::new().len(len).map_raw(&file).unwrap();
            let base = map.as_mut_ptr();
            let data_offset = shmbus_core::layout::data_offset(8, 4096) as usize;
            let end = Instant::now() + Duration::from_millis(millis);
            let mut writes = 0u64;
            say("ready");
            while Instant::now() < end {
                // Mostly the words peers change while they run; the fields
                // checked only at attach (magic, sizes) rarely, so that peers
                // stay attached and keep meeting the damage.
                let (lo, hi) = match rng.range(0, 1000) {
                    0..=4 => (0, 128),                // static header fields
                    5..=149 => (128, 512),            // tail, futex words, waiter counts, epoch
                    150..=249 => (1024, 4096),        // resynchronisation hints
                    250..=449 => (4096, data_offset), // the peer table
                    _ => (data_offset, len),          // the ring
                };
                let off = rng.range(lo as u64, hi as u64) as usize;
                let n = (rng.range(1, 65) as usize).min(len - off);
                for i in 0..n {
                    // SAFETY: `off + i < len`, inside our mapping; this process is
                    // deliberately hostile and writes plain bytes under the others.
                    unsafe { base.add(off + i).write_volatile(rng.next_u64() as u8) };
                }
                writes += 1;
                if rng.chance(50) {
                    std::thread::sleep(Duration::from_micros(rng.range(0, 300)));
                }
            }
            say(format!("writes {writes}"));
        }
        // h-pub MILLIS / h-sub MILLIS: use bus "hostile" with 50 ms timeouts and re-attach after errors.
        "h-pub" | "h-sub" => {
            let millis: u64 = a[0].parse().unwrap();
            let cfg = BusConfig::default().dir(&dir);
            let end = Instant::now() + Duration::from_millis(millis);
            let kind = if role == "h-pub" { PeerKind::Publisher } else { PeerKind::Subscriber };
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            let mut max_call = Duration::ZERO;
            let mut handle: Option<(Option<Producer>, Option<Consumer>)> = None;
            let mut buf = Vec::new();
            let mut seq = 0u64;
            say("ready");
            while Instant::now() < end {
                let t = Instant::now();
                let (ps, cs) = match &mut handle {
                    Some(h) => h,
                    None => {
                        match Bus::attach("hostile", &cfg, kind) {
                            Ok(bus) => {
                                *counts.entry("attach ok".into()).or_default() += 1;
                                handle = Some(match kind {
                                    PeerKind::Publisher => (Some(Producer::new(bus, WaitStrategy::SpinThenPark)), None),
                                    PeerKind::Subscriber => {
                                        (None, Some(Consumer::new(bus, StartAt::Oldest, WaitStrategy::SpinThenPark)))
                                    }
                                });
                            }
                            Err(e) => {
                                *counts.entry(format!("attach {}", kind_of(&e))).or_default() += 1;
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                        max_call = max_call.max(t.elapsed());
                        continue;
                    }
                };
                let failed = if let Some(p) = ps {
                    let r = p.send(
                        &make_msg(3, seq, 0, 64 + (seq as usize * 211) % 3000),
                        Some(Instant::now() + Duration::from_millis(50)),
                    );
                    seq += 1;
                    match r {
                        Ok(_) => {
                            *counts.entry("sent".into()).or_default() += 1;
                            false
                        }
                        Err(shmbus_core::ClaimError::Full) => {
                            *counts.entry("timeout".into()).or_default() += 1;
                            false
                        }
                        Err(e) => {
                            *counts
                                .entry(format!("send {e:?}").split(' ').take(2).collect::<Vec<_>>().join(" "))
                                .or_default() += 1;
                            true
                        }
                    }
                } else {
                    let c = cs.as_mut().unwrap();
                    match c.read(&mut buf, Some(Instant::now() + Duration::from_millis(50))) {
                        Ok(Poll::Message { .. }) => {
                            let k = if check_msg(&buf).is_ok() { "intact" } else { "damaged" };
                            *counts.entry(format!("message {k}")).or_default() += 1;
                            false
                        }
                        Ok(Poll::Empty) => {
                            *counts.entry("timeout".into()).or_default() += 1;
                            false
                        }
                        Ok(Poll::Lagged { .. }) => {
                            *counts.entry("lagged".into()).or_default() += 1;
                            false
                        }
                        Err(e) => {
                            *counts.entry(format!("read {}", kind_of(&e))).or_default() += 1;
                            true
                        }
                    }
                };
                max_call = max_call.max(t.elapsed());
                if failed {
                    handle = None;
                }
            }
            drop(handle);
            let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{}={v}", k.replace(' ', "_"))).collect();
            say(format!("stats max_call_us={} {}", max_call.as_micros(), summary.join(" ")));
        }
        other => panic!("unknown role {other}"),
    }
}

fn kind_of(e: &Error) -> String {
    kind(e)
}

/// Item 5. Every single-byte mutation of the header and peer table (several
/// values per offset) and every truncation length of a bus file with traffic
/// and dead peers in it: each gives a typed error or correct operation; no
/// panic, no signal, no hang, no corrupt message delivered.
#[test]
fn every_byte_mutation_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let tpl = template(dir.path(), "tpl");
    std::fs::write(dir.path().join("template.bin"), &tpl).unwrap();
    let long_every = scale(64, 4) as usize;
    let data_offset = shmbus_core::layout::data_offset(4, 4096) as usize;
    let all = mutations(&tpl, data_offset, full());
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    let (mut done, mut start) = (0usize, 0usize);
    while start < all.len() {
        let mut child = spawn("mutate-check", dir.path(), &[start.to_string(), long_every.to_string()]);
        let mut current = start;
        loop {
            match child.line(10 * SEC) {
                Some(l) if l == "DONE" => {
                    start = all.len();
                    break;
                }
                Some(l) if l.starts_with("S ") => current = l[2..].parse().unwrap(),
                Some(l) if l.starts_with("E ") => {
                    let outcome = l.splitn(3, ' ').nth(2).unwrap_or("").to_owned();
                    let key = if outcome == "ok" { "ok".to_string() } else { "typed_error".to_string() };
                    *outcomes.entry(key).or_default() += 1;
                    done += 1;
                }
                Some(l) if l.starts_with("BAD ") => {
                    failures.push(l);
                    done += 1;
                }
                Some(other) => panic!("unexpected line {other}"),
                None => {
                    // A hang, or the child died (panic, abort, signal).
                    let hung = child.child.try_wait().unwrap().is_none();
                    child.kill();
                    let status = child.child.wait().unwrap();
                    failures.push(format!(
                        "{} at mutation {current} {:?}: {status}",
                        if hung { "hang" } else { "crash" },
                        all[current]
                    ));
                    done += 1;
                    start = current + 1;
                    break;
                }
            }
        }
        let _ = child.child.wait();
    }
    let bytes = all.iter().filter(|m| matches!(m, Mutation::Byte(..))).count();
    let truncations = all.iter().filter(|m| matches!(m, Mutation::Truncate(..))).count();
    figure(
        "every_byte_mutation_and_truncation",
        &format!(
            "mutations={} byte_mutations={bytes} truncations={truncations} ok={} typed_errors={} panics_signals_hangs={}",
            all.len(),
            outcomes.get("ok").copied().unwrap_or(0),
            outcomes.get("typed_error").copied().unwrap_or(0),
            failures.len()
        ),
    );
    assert_eq!(done, all.len());
    assert!(failures.is_empty(), "{} failures, first: {:?}", failures.len(), &failures[..failures.len().min(20)]);
}

/// Item 6. A hostile process writes random bytes over the whole mapping
/// (header, peer table, ring) while a publisher and a subscriber process use
/// the bus with 50 ms timeouts: neither panics, crashes or blocks for more
/// than 1 s in one call; they get messages, timeouts or typed errors.
#[test]
fn hostile_scribbler_over_live_mapping() {
    let millis = scale(2500, 30_000);
    let mut rng = Rng::new("hostile_scribbler_over_live_mapping");
    for overflow in [Overflow::Block, Overflow::Overwrite] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BusConfig::default()
            .dir(dir.path())
            .capacity(64 << 10)
            .max_message(4096)
            .max_peers(8)
            .persistent(true)
            .overflow(overflow);
        shmbus_core::create_bus("hostile", &cfg).unwrap();
        let m = millis.to_string();
        let mut sub = spawn("h-sub", dir.path(), std::slice::from_ref(&m));
        let mut publ = spawn("h-pub", dir.path(), std::slice::from_ref(&m));
        sub.expect_line("ready", 30 * SEC);
        publ.expect_line("ready", 30 * SEC);
        let mut scrib = spawn("scribbler", dir.path(), &[m.clone(), rng.next_u64().to_string()]);
        scrib.expect_line("ready", 30 * SEC);
        let limit = Duration::from_millis(millis) + 60 * SEC;
        let s = sub.finish(limit);
        let p = publ.finish(limit);
        let w = scrib.finish(limit);
        let stat = |v: &[String]| v.iter().find(|l| l.starts_with("stats")).cloned().expect("stats line");
        let (s, p) = (stat(&s), stat(&p));
        let max_us =
            |l: &str| -> u64 { l.split(' ').find_map(|f| f.strip_prefix("max_call_us=")).unwrap().parse().unwrap() };
        figure(
            "hostile_scribbler_over_live_mapping",
            &format!(
                "overflow={overflow} seconds={:.1} scribbles={} panics=0 crashes=0 sub=[{}] pub=[{}]",
                millis as f64 / 1000.0,
                w.iter().find_map(|l| l.strip_prefix("writes ")).unwrap_or("?"),
                &s[6..],
                &p[6..]
            ),
        );
        assert!(max_us(&s) < 1_000_000, "a subscriber call blocked for more than 1 s: {s}");
        assert!(max_us(&p) < 1_000_000, "a publisher call blocked for more than 1 s: {p}");
        shmbus_core::remove("hostile", &cfg, true).unwrap();
    }
}

// Item 7, stable twin of fuzz/fuzz_targets/bus_file.rs: the same three
// targets as property tests.

fn heap_template() -> Vec<u8> {
    let cfg = BusConfig::default().capacity(4096).max_message(992).max_peers(4);
    let region = Region::heap(&cfg).unwrap();
    let mut publ =
        Producer::new(Bus::heap(region.share_heap().unwrap(), PeerKind::Publisher).unwrap(), WaitStrategy::Park);
    for seq in 0..30u64 {
        publ.send(&make_msg(5, seq, 0, 32 + (seq as usize * 71) % 700), Some(Instant::now())).unwrap();
    }
    drop(publ);
    region.snapshot()
}

/// Runs the ring protocol over a region validated from arbitrary bytes:
/// subscribers at both start points and a publisher; must never panic.
fn drive(region: Region) {
    let info = region.info().clone();
    let mut buf = Vec::new();
    for start in [StartAt::Oldest, StartAt::Latest] {
        let Some(r) = region.share_heap() else { return };
        let Ok(bus) = Bus::heap(r, PeerKind::Subscriber) else { continue };
        let mut c = Consumer::new(bus, start, WaitStrategy::BusySpin);
        for _ in 0..64 {
            match c.try_read(&mut buf) {
                Ok(Poll::Message { len, .. }) => assert!(len <= info.max_message as usize),
                Ok(Poll::Lagged { .. }) => {}
                Ok(Poll::Empty) | Err(_) => break,
            }
        }
    }
    if let Some(r) = region.share_heap() {
        if let Ok(bus) = Bus::heap(r, PeerKind::Publisher) {
            let mut p = Producer::new(bus, WaitStrategy::BusySpin);
            for len in [0usize, 1, 100, info.max_message as usize] {
                let _ = p.send(&vec![0xa5; len], Some(Instant::now()));
            }
        }
    }
}

fn cases() -> u32 {
    if full() {
        20_000
    } else {
        512
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    /// Header validation of arbitrary bytes: a typed error, never a panic.
    #[test]
    fn validate_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..20_000)) {
        if let Ok(region) = Region::from_bytes(&bytes) {
            drive(region);
        }
    }

    /// A valid file with bytes of its header and peer table replaced: a typed
    /// error, or a region the protocol runs over without panicking.
    #[test]
    fn validate_mutated_header(muts in prop::collection::vec((0usize..8192, any::<u8>()), 1..16)) {
        let mut bytes = heap_template();
        for (off, v) in muts {
            bytes[off] = v;
        }
        if let Ok(region) = Region::from_bytes(&bytes) {
            drive(region);
        }
    }

    /// A valid header over an arbitrary ring (frames, tail and hints): frame
    /// parsing gives messages, Empty, Lagged or a typed error, never a panic.
    #[test]
    fn frames_from_arbitrary_bytes(
        ring in prop::collection::vec(any::<u8>(), 4096),
        tail in any::<u64>(),
        hints in prop::collection::vec(any::<u64>(), 0..128),
        slots in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = heap_template();
        let data = bytes.len() - 4096;
        bytes[data..].copy_from_slice(&ring);
        bytes[128..136].copy_from_slice(&tail.to_le_bytes());
        for (i, h) in hints.iter().enumerate() {
            bytes[1024 + i * 8..1032 + i * 8].copy_from_slice(&h.to_le_bytes());
        }
        bytes[4096..4096 + slots.len()].copy_from_slice(&slots);
        let region = Region::from_bytes(&bytes).expect("the header is valid");
        drive(region);
    }
}
