//! Reliability suite, crash safety (docs/reliability.md, items 1 to 4):
//! real processes, real bus files, real SIGKILLs. The test binary re-executes
//! itself with a role (`__child`); every wait has a deadline and waits for
//! something observable; each test has its own temporary directory.
//!
//! Counts are scaled for `cargo test`; `SHMBUS_RELIABILITY_FULL=1` runs the
//! full counts (scripts/reliability-full.sh).

mod reliability_support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reliability_support::*;
use shmbus_core::{Bus, BusConfig, Consumer, GcAction, PeerKind, Poll, Producer, StartAt, WaitStrategy};

const SEC: Duration = Duration::from_secs(1);

fn env_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("SHMBUS_DIR").expect("SHMBUS_DIR"))
}

/// Item 1: 1 MiB ring, payloads of 64 B to 64 KiB.
fn kill_cfg(dir: &Path) -> BusConfig {
    BusConfig::default().dir(dir).capacity(1 << 20).max_message(64 << 10)
}

/// Item 2: a small block-mode ring, so a stalled subscriber stops the publisher quickly.
fn stall_cfg(dir: &Path) -> BusConfig {
    BusConfig::default().dir(dir).capacity(4096).max_message(512)
}

/// Items 3 and 4.
fn small_cfg(dir: &Path) -> BusConfig {
    BusConfig::default().dir(dir).capacity(64 << 10).max_message(4096).max_peers(16)
}

/// Item 4: big enough that initialisation (posix_fallocate) takes a while.
fn big_cfg(dir: &Path) -> BusConfig {
    BusConfig::default().dir(dir).capacity(32 << 20).max_message(64 << 10)
}

fn msg_len(rng: &mut Rng) -> usize {
    if rng.chance(50) {
        rng.range(64, 1025) as usize
    } else {
        rng.range(1024, (64 << 10) + 1) as usize
    }
}

/// The child entry point: does nothing unless started with a role.
#[test]
fn __child() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let a = args();
    let dir = env_dir();
    match role.as_str() {
        // live-pub ID STOPFILE: paced stream of checked messages until STOPFILE exists.
        "live-pub" => {
            let id: u64 = a[0].parse().unwrap();
            let stop = PathBuf::from(&a[1]);
            let mut rng = Rng::seeded(id ^ mono_ns());
            let mut p = Producer::new(
                Bus::attach("kill", &kill_cfg(&dir), PeerKind::Publisher).unwrap(),
                WaitStrategy::SpinThenPark,
            );
            let mut seq = 0u64;
            while !stop.exists() {
                let len = if rng.chance(80) { rng.range(64, 2048) as usize } else { msg_len(&mut rng) };
                let m = make_msg(id, seq, mono_ns(), len);
                p.send(&m, Some(Instant::now() + 30 * SEC)).expect("live publisher blocked for 30 s");
                seq += 1;
                std::thread::sleep(Duration::from_micros(300));
            }
            say(format!("sent {seq}"));
        }
        // victim ID MODE SEED: publishes until SIGKILLed.
        "victim" => {
            let id: u64 = a[0].parse().unwrap();
            let mode = a[1].as_str();
            let mut rng = Rng::seeded(a[2].parse().unwrap());
            let mut p = Producer::new(
                Bus::attach("kill", &kill_cfg(&dir), PeerKind::Publisher).unwrap(),
                WaitStrategy::SpinThenPark,
            );
            say("attached");
            let mut seq = 0u64;
            loop {
                let len = msg_len(&mut rng);
                let m = make_msg(id, seq, mono_ns(), len);
                match mode {
                    "stream" => {
                        p.send(&m, None).unwrap();
                    }
                    // Write the payload in place in chunks, pausing between them, so
                    // that a kill lands mid-frame most of the time.
                    "slow" | "hold" => {
                        let claim = p.claim(len, None).unwrap();
                        let ptr = p.payload_ptr(&claim);
                        for (i, chunk) in m.chunks(4096).enumerate() {
                            // SAFETY: the claim gives this publisher `len` bytes at `ptr`
                            // until it commits; `chunk` lies within them.
                            unsafe { std::ptr::copy_nonoverlapping(chunk.as_ptr(), ptr.add(i * 4096), chunk.len()) };
                            if mode == "hold" && i * 4096 >= len / 2 {
                                say("held");
                                std::thread::sleep(Duration::from_secs(600));
                            }
                            for _ in 0..rng.range(0, 2000) {
                                std::hint::spin_loop();
                            }
                        }
                        let _ = p.commit(claim, false);
                    }
                    other => panic!("unknown mode {other}"),
                }
                seq += 1;
            }
        }
        // stall-sub: attaches as a subscriber and never reads.
        "stall-sub" => {
            let _c = Consumer::new(
                Bus::attach("stall", &stall_cfg(&dir), PeerKind::Subscriber).unwrap(),
                StartAt::Latest,
                WaitStrategy::Park,
            );
            say("attached");
            while hear().is_some() {}
        }
        // all-pub / all-sub: traffic on bus "all" until killed.
        "all-pub" => {
            let mut p = Producer::new(
                Bus::open_or_create("all", &small_cfg(&dir), PeerKind::Publisher).unwrap(),
                WaitStrategy::SpinThenPark,
            );
            let id = std::process::id() as u64;
            for seq in 0.. {
                let _ = p.send(&make_msg(id, seq, 0, 64 + (seq as usize * 97) % 4000), Some(Instant::now()));
                if seq % 64 == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        "all-sub" => {
            let mut c = Consumer::new(
                Bus::open_or_create("all", &small_cfg(&dir), PeerKind::Subscriber).unwrap(),
                StartAt::Oldest,
                WaitStrategy::SpinThenPark,
            );
            let mut buf = Vec::new();
            loop {
                if let Poll::Message { .. } =
                    c.read(&mut buf, Some(Instant::now() + Duration::from_millis(50))).unwrap()
                {
                    check_msg(&buf).unwrap();
                }
            }
        }
        // race-worker: on "go", open_or_create("race"); on "detach", drop it.
        "race-worker" => {
            let cfg = small_cfg(&dir);
            let mut bus = None;
            while let Some(line) = hear() {
                match line.as_str() {
                    "go" => match Bus::open_or_create("race", &cfg, PeerKind::Subscriber) {
                        Ok(b) => {
                            let ok = b.info().capacity == cfg.get_capacity() && b.info().max_message == 4096;
                            say(match (b.created(), ok) {
                                (_, false) => "error header differs from the configuration".to_string(),
                                (true, true) => "created".to_string(),
                                (false, true) => "attached".to_string(),
                            });
                            bus = Some(b);
                        }
                        Err(e) => say(format!("error {e}")),
                    },
                    "detach" => {
                        drop(bus.take());
                        say("detached");
                    }
                    other => panic!("unknown command {other}"),
                }
            }
        }
        // create-loop: creates and removes a big bus until killed.
        "create-loop" => {
            let cfg = big_cfg(&dir);
            say("looping");
            loop {
                shmbus_core::create_bus("init", &cfg).unwrap();
                shmbus_core::remove("init", &cfg, false).unwrap();
            }
        }
        // create-count N: creates and removes bus "gcrace" N times; reports failures.
        "create-count" => {
            let n: u64 = a[0].parse().unwrap();
            let cfg = small_cfg(&dir);
            say("ready");
            let mut failures = Vec::new();
            for _ in 0..n {
                match Bus::open_or_create("gcrace", &cfg, PeerKind::Publisher) {
                    Ok(bus) => drop(bus),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            say(format!("failures {} {:?}", failures.len(), failures.first()));
        }
        other => panic!("unknown role {other}"),
    }
}

#[derive(Default)]
struct SubStats {
    torn: u64,
    duplicates: u64,
    gaps: u64,
    victim_msgs: u64,
    live_msgs: u64,
    errors: Vec<String>,
}

/// Item 1. A publisher is SIGKILLed at random points (also mid-frame: while
/// it writes a payload in place, or while it holds a claim) while a second
/// publisher stays alive: no torn or corrupt message is delivered, none
/// twice, none of a publisher's committed messages is skipped, and the
/// subscriber receives from the live publisher within 1 s of each kill.
#[test]
fn publisher_sigkill_mid_stream() {
    let kills = scale(100, 500);
    let dir = tempfile::tempdir().unwrap();
    let cfg = kill_cfg(dir.path());
    let mut rng = Rng::new("publisher_sigkill_mid_stream");
    let mut sub = Consumer::new(
        Bus::open_or_create("kill", &cfg, PeerKind::Subscriber).unwrap(),
        StartAt::Latest,
        WaitStrategy::SpinThenPark,
    );
    let stats = Arc::new(Mutex::new(SubStats::default()));
    let live_log: Arc<Mutex<Vec<(u64, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stats, live_log, stop) = (stats.clone(), live_log.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut next: HashMap<u64, u64> = HashMap::new();
            let mut idle_since = Instant::now();
            loop {
                match sub.read(&mut buf, Some(Instant::now() + Duration::from_millis(20))) {
                    Ok(Poll::Message { .. }) => {
                        idle_since = Instant::now();
                        let now = mono_ns();
                        let mut s = stats.lock().unwrap();
                        match check_msg(&buf) {
                            Err(e) => {
                                s.torn += 1;
                                s.errors.push(e);
                            }
                            Ok((id, seq, send_ns)) => {
                                let want = next.entry(id).or_insert(0);
                                if seq < *want {
                                    s.duplicates += 1;
                                    s.errors.push(format!("duplicate: id {id} seq {seq}, expected {want}"));
                                } else {
                                    if seq > *want {
                                        s.gaps += 1;
                                        s.errors.push(format!("gap: id {id} seq {seq}, expected {want}"));
                                    }
                                    *want = seq + 1;
                                }
                                if id == 1 {
                                    s.live_msgs += 1;
                                    live_log.lock().unwrap().push((send_ns, now));
                                } else {
                                    s.victim_msgs += 1;
                                }
                            }
                        }
                    }
                    Ok(Poll::Empty) => {
                        if stop.load(Ordering::Acquire) && idle_since.elapsed() > Duration::from_millis(300) {
                            return;
                        }
                    }
                    Ok(Poll::Lagged { lost }) => {
                        stats.lock().unwrap().errors.push(format!("lagged {lost} in block mode"))
                    }
                    Err(e) => {
                        stats.lock().unwrap().errors.push(format!("read error: {e}"));
                        return;
                    }
                }
            }
        })
    };
    let stopfile = dir.path().join("stop");
    let live = spawn("live-pub", dir.path(), &["1".into(), stopfile.to_string_lossy().into_owned()]);
    wait_for("the live publisher's first message", 30 * SEC, || !live_log.lock().unwrap().is_empty());
    let mut gaps_ms = Vec::new();
    let (mut held, mut slow, mut stream, mut at_start) = (0u64, 0u64, 0u64, 0u64);
    for k in 0..kills {
        let mode = match rng.range(0, 100) {
            0..=24 => "hold",
            25..=59 => "slow",
            _ => "stream",
        };
        let mut victim =
            spawn("victim", dir.path(), &[(1000 + k).to_string(), mode.into(), rng.next_u64().to_string()]);
        if rng.chance(10) {
            // Kill it while it starts up or attaches.
            std::thread::sleep(Duration::from_micros(rng.range(0, 5000)));
            at_start += 1;
        } else if mode == "hold" {
            victim.expect_line("held", 30 * SEC);
            held += 1;
        } else {
            victim.expect_line("attached", 30 * SEC);
            std::thread::sleep(Duration::from_micros(rng.range(0, 20_000)));
            if mode == "slow" {
                slow += 1;
            } else {
                stream += 1;
            }
        }
        let kill_ns = mono_ns();
        victim.kill();
        // The subscriber must get a message the live publisher sent after the kill.
        let deadline = Instant::now() + 30 * SEC;
        let gap = loop {
            let found = {
                let log = live_log.lock().unwrap();
                log.iter().rev().take_while(|(s, _)| *s > kill_ns).last().map(|(_, r)| *r)
            };
            if let Some(recv_ns) = found {
                break recv_ns.saturating_sub(kill_ns);
            }
            assert!(Instant::now() < deadline, "kill {k} ({mode}): no message from the live publisher for 30 s");
            std::thread::sleep(Duration::from_millis(1));
        };
        gaps_ms.push(gap / 1_000_000);
    }
    std::fs::write(&stopfile, b"").unwrap();
    live.finish(30 * SEC);
    stop.store(true, Ordering::Release);
    reader.join().unwrap();
    let s = stats.lock().unwrap();
    gaps_ms.sort_unstable();
    let max_gap = *gaps_ms.last().unwrap();
    figure(
        "publisher_sigkill_mid_stream",
        &format!(
            "kills={kills} held_claim={held} mid_payload={slow} streaming={stream} at_startup={at_start} delivered={} victim_msgs={} torn={} duplicates={} skipped={} gap_p50_ms={} gap_p99_ms={} max_gap_ms={max_gap}",
            s.victim_msgs + s.live_msgs,
            s.victim_msgs,
            s.torn,
            s.duplicates,
            s.gaps,
            pct(&gaps_ms, 0.5),
            pct(&gaps_ms, 0.99),
        ),
    );
    assert!(s.errors.is_empty(), "{} problems, first: {:?}", s.errors.len(), &s.errors[..s.errors.len().min(10)]);
    assert_eq!((s.torn, s.duplicates, s.gaps), (0, 0, 0));
    assert!(s.victim_msgs > 0, "the victims never published");
    assert!(max_gap < 1000, "the live publisher's messages stopped for {max_gap} ms after a kill");
}

/// Item 2. A subscriber holding a block-mode publisher back is SIGKILLed:
/// the publisher resumes within 1 s each time, and no peer slot is leaked.
#[test]
fn subscriber_sigkill_releases_blocked_publisher() {
    let rounds = scale(60, 200);
    let dir = tempfile::tempdir().unwrap();
    let cfg = stall_cfg(dir.path());
    let mut rng = Rng::new("subscriber_sigkill_releases_blocked_publisher");
    let mut p = Producer::new(Bus::open_or_create("stall", &cfg, PeerKind::Publisher).unwrap(), WaitStrategy::Park);
    let mut resume_ms = Vec::new();
    for round in 0..rounds {
        let mut child = spawn("stall-sub", dir.path(), &[]);
        child.expect_line("attached", 30 * SEC);
        let mut sent = 0;
        while p.send(&[round as u8; 500], Some(Instant::now())).is_ok() {
            sent += 1;
            assert!(sent < 100, "the stalled subscriber does not hold the publisher back");
        }
        let (result, done) = std::thread::scope(|s| {
            let h = s.spawn(|| {
                let r = p.send(&[0xEE; 500], Some(Instant::now() + 30 * SEC));
                (r, Instant::now())
            });
            // Observable: the publisher is parked waiting for space.
            wait_for("the publisher to park", 30 * SEC, || {
                shmbus_core::inspect("stall", &cfg).is_ok_and(|st| st.space_waiters >= 1)
            });
            std::thread::sleep(Duration::from_micros(rng.range(0, 5000)));
            let t = Instant::now();
            child.kill();
            let (r, done) = h.join().unwrap();
            (r, done.saturating_duration_since(t))
        });
        assert!(result.is_ok(), "round {round}: the publisher did not resume: {:?}", result.err());
        resume_ms.push(done.as_micros() as u64);
    }
    let st = shmbus_core::inspect("stall", &cfg).unwrap();
    let dead = st.peers.iter().filter(|p| !p.alive).count();
    resume_ms.sort_unstable();
    let max_us = *resume_ms.last().unwrap();
    figure(
        "subscriber_sigkill_releases_blocked_publisher",
        &format!(
            "kills={rounds} resume_p50_ms={:.1} resume_p99_ms={:.1} max_resume_ms={:.1} slots_in_use={} dead_slots={dead}",
            pct(&resume_ms, 0.5) as f64 / 1000.0,
            pct(&resume_ms, 0.99) as f64 / 1000.0,
            max_us as f64 / 1000.0,
            st.peers.len()
        ),
    );
    assert!(max_us < 1_000_000, "a publisher took {max_us} us to resume after its subscriber was killed");
    assert_eq!(dead, 0, "dead peer slots left: {:?}", st.peers);
    assert_eq!(st.peers.len(), 1, "only the publisher should be attached: {:?}", st.peers);
}

/// Item 3. Every process of a bus is SIGKILLed at a random point (starting
/// up, creating, attaching, publishing, reading): gc then removes every stale
/// file, and a fresh open_or_create works every time.
#[test]
fn all_processes_sigkilled_then_gc() {
    let rounds = scale(40, 100);
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_cfg(dir.path());
    let mut rng = Rng::new("all_processes_sigkilled_then_gc");
    let (mut removed, mut partial, mut empty_rounds) = (0, 0, 0);
    for round in 0..rounds {
        let n = rng.range(2, 5);
        let mut kids: Vec<Proc> =
            (0..n).map(|_| spawn(if rng.chance(50) { "all-pub" } else { "all-sub" }, dir.path(), &[])).collect();
        std::thread::sleep(Duration::from_micros(rng.range(0, 60_000)));
        while !kids.is_empty() {
            let i = rng.range(0, kids.len() as u64) as usize;
            kids.swap_remove(i).kill();
            std::thread::sleep(Duration::from_micros(rng.range(0, 2000)));
        }
        let before = dir_entries(dir.path());
        if before.is_empty() {
            empty_rounds += 1;
        }
        for action in shmbus_core::gc(&cfg).unwrap() {
            match action {
                GcAction::Removed { .. } => removed += 1,
                GcAction::RemovedPartial { .. } => partial += 1,
                GcAction::Skipped { path, reason } => {
                    panic!("round {round}: gc skipped {}: {reason}", path.display());
                }
            }
        }
        let after = dir_entries(dir.path());
        assert!(after.is_empty(), "round {round}: gc left {after:?} (before gc: {before:?})");
        let fresh = Bus::open_or_create("all", &cfg, PeerKind::Publisher).expect("fresh open_or_create");
        assert!(fresh.created(), "round {round}: the fresh bus was not created anew");
        let mut p = Producer::new(fresh, WaitStrategy::Park);
        p.send(b"fresh", Some(Instant::now())).unwrap();
        drop(p);
        assert!(dir_entries(dir.path()).is_empty(), "round {round}: the fresh bus was not removed on detach");
    }
    figure(
        "all_processes_sigkilled_then_gc",
        &format!(
            "rounds={rounds} stale_buses_removed={removed} partial_files_removed={partial} skipped=0 rounds_before_any_file={empty_rounds} fresh_ok={rounds}"
        ),
    );
}

/// Item 4. Eight processes race open_or_create on one name: exactly one
/// creates it each round, none attaches to a half-initialised file; the last
/// one out removes it. Then a creator SIGKILLed during initialisation does not
/// block the name, and gc removes the temporary file it leaves.
#[test]
fn create_race_and_killed_creator() {
    let rounds = scale(100, 200);
    let dir = tempfile::tempdir().unwrap();
    let mut workers: Vec<Proc> = (0..8).map(|_| spawn("race-worker", dir.path(), &[])).collect();
    let mut attached = 0u64;
    for round in 0..rounds {
        for w in workers.iter_mut() {
            w.send("go");
        }
        let results: Vec<String> = workers.iter_mut().map(|w| w.expect_line("a race result", 30 * SEC)).collect();
        let errors: Vec<&String> = results.iter().filter(|r| r.starts_with("error")).collect();
        assert!(errors.is_empty(), "round {round}: {errors:?}");
        assert_eq!(results.iter().filter(|r| *r == "created").count(), 1, "round {round}: {results:?}");
        attached += results.iter().filter(|r| *r == "attached").count() as u64;
        for w in workers.iter_mut() {
            w.send("detach");
        }
        for w in workers.iter_mut() {
            assert_eq!(w.expect_line("detached", 30 * SEC), "detached");
        }
        let left = dir_entries(dir.path());
        assert!(left.is_empty(), "round {round}: left behind {left:?}");
    }
    for w in workers {
        w.finish(30 * SEC);
    }

    // A creator killed at a random point while it creates and removes a 32 MiB bus.
    let kills = scale(50, 200);
    let big = big_cfg(dir.path());
    let mut rng = Rng::new("create_race_and_killed_creator");
    let (mut tmp_left, mut bus_left, mut gc_partial) = (0u64, 0u64, 0u64);
    let mut reopen_us = Vec::new();
    for k in 0..kills {
        let mut child = spawn("create-loop", dir.path(), &[]);
        child.expect_line("looping", 30 * SEC);
        std::thread::sleep(Duration::from_micros(rng.range(0, 10_000)));
        child.kill();
        let entries = dir_entries(dir.path());
        let tmps = entries.iter().filter(|e| e.starts_with(".init.bus.") && e.ends_with(".tmp")).count();
        assert!(
            entries.iter().all(|e| e == "init.bus" || (e.starts_with(".init.bus.") && e.ends_with(".tmp"))),
            "kill {k}: unexpected files {entries:?}"
        );
        tmp_left += tmps as u64;
        bus_left += entries.iter().any(|e| e == "init.bus") as u64;
        // The name is not blocked: open_or_create succeeds at once.
        let t = Instant::now();
        let bus = Bus::open_or_create("init", &big, PeerKind::Publisher)
            .unwrap_or_else(|e| panic!("kill {k}: the name is blocked after a killed creator: {e} ({entries:?})"));
        reopen_us.push(t.elapsed().as_micros() as u64);
        drop(bus);
        for action in shmbus_core::gc(&big).unwrap() {
            match action {
                GcAction::RemovedPartial { .. } => gc_partial += 1,
                other => panic!("kill {k}: unexpected gc action {other:?}"),
            }
        }
        let left = dir_entries(dir.path());
        assert!(left.is_empty(), "kill {k}: gc left {left:?}");
    }
    reopen_us.sort_unstable();
    let max_reopen = *reopen_us.last().unwrap();
    figure(
        "create_race_and_killed_creator",
        &format!(
            "race_rounds={rounds} racers=8 creators_per_round=1 attaches={attached} half_initialised_attaches=0 creator_kills={kills} tmp_files_left={tmp_left} complete_files_left={bus_left} gc_removed_tmp={gc_partial} max_reopen_ms={:.1}",
            max_reopen as f64 / 1000.0
        ),
    );
    assert_eq!(tmp_left, gc_partial, "gc did not remove every temporary file");
    assert!(max_reopen < 1_000_000, "open_or_create took {max_reopen} us after a killed creator");
}

/// gc running while processes create buses: gc must never remove the
/// temporary file of a creator that is still alive, so no open_or_create
/// fails.
#[test]
fn gc_racing_live_creators() {
    let n = scale(3000, 30_000);
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_cfg(dir.path());
    let mut kids: Vec<Proc> = (0..2).map(|_| spawn("create-count", dir.path(), &[n.to_string()])).collect();
    for k in kids.iter_mut() {
        k.expect_line("ready", 30 * SEC);
    }
    let mut gcs = 0u64;
    let mut partial_removed = 0u64;
    while kids.iter_mut().any(|k| k.child.try_wait().unwrap().is_none()) {
        for action in shmbus_core::gc(&cfg).unwrap() {
            if let GcAction::RemovedPartial { .. } = action {
                partial_removed += 1;
            }
        }
        gcs += 1;
    }
    let results: Vec<String> = kids.into_iter().flat_map(|k| k.finish(30 * SEC)).collect();
    let failed: u64 = results.iter().map(|r| r.split(' ').nth(1).unwrap().parse::<u64>().unwrap()).sum();
    figure(
        "gc_racing_live_creators",
        &format!("creations={} gc_runs={gcs} tmp_removed_by_gc={partial_removed} failed_creations={failed}", 2 * n),
    );
    assert_eq!(failed, 0, "{results:?}");
}
