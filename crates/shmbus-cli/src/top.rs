//! `shmbus top`: a live view of the buses in a directory, read from the bus
//! files alone (no daemon, nothing attaches as a peer): every publisher and
//! subscriber with its pid, messages and bytes per second over the last
//! interval, each subscriber's lag and losses, stale peers marked. Like
//! Aeron's AeronStat.
//!
//! On a terminal the view is redrawn in place every interval; otherwise (a
//! pipe, a file) each refresh is printed as plain lines. `--once` prints one
//! view (rates over one interval) and exits; `--json` prints one JSON object
//! per refresh, on one line.
//!
//! The peer columns are one table, [`PEER_COLUMNS`]: a title, a JSON key and
//! a function of the peer. A figure the library does not report yet is
//! [`Cell::Missing`], printed `-` (and `null` in JSON).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde_json::{json, Map, Value};
use shmbus::{BusConfig, BusStatus, PeerInfo, PeerKind};

use crate::error::{CliError, CliResult};
use crate::output::{print, table};
use crate::signals::Stop;
use crate::units::{human_bytes, human_rate};

/// `shmbus top` options.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Buses to show [default: every bus in the directory].
    #[arg(value_name = "NAME", value_parser = crate::parse_name)]
    names: Vec<String>,
    /// Print one view, with rates over one interval, and exit.
    #[arg(long)]
    once: bool,
    /// Print JSON, one object per refresh on one line.
    #[arg(long)]
    json: bool,
    /// Seconds between refreshes, over which rates are computed (0.1 to 3600).
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_interval)]
    interval: f64,
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.1..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds between 0.1 and 3600")),
    }
}

/// One value of a column.
pub enum Cell {
    /// A count, printed as is.
    Count(u64),
    /// Per second, printed as `12.4 k`.
    Rate(f64),
    /// Bytes per second, printed as `1.5 MiB`.
    ByteRate(f64),
    /// Words.
    Text(String),
    /// Not known (not reported by the library yet, not applicable, or no
    /// interval to compute a rate over yet): `-`, JSON `null`.
    Missing,
}

impl Cell {
    fn text(&self) -> String {
        match self {
            Cell::Count(n) => n.to_string(),
            Cell::Rate(r) => human_rate(*r),
            Cell::ByteRate(r) => format!("{}/s", human_bytes(r.round() as u64)),
            Cell::Text(t) => t.clone(),
            Cell::Missing => "-".to_owned(),
        }
    }

    fn json(&self) -> Value {
        match self {
            Cell::Count(n) => json!(n),
            Cell::Rate(r) | Cell::ByteRate(r) => json!((r * 10.0).round() / 10.0),
            Cell::Text(t) => json!(t),
            Cell::Missing => Value::Null,
        }
    }
}

/// A peer and its rates over the last interval.
pub struct PeerRow<'a> {
    peer: &'a PeerInfo,
    /// Messages and payload bytes per second since the previous refresh
    /// (`None` on the first one, or for a peer that was not there then).
    rates: Option<(f64, f64)>,
}

impl PeerRow<'_> {
    fn subscriber(&self) -> bool {
        self.peer.kind == PeerKind::Subscriber
    }

    /// A subscriber's figure; `Missing` for a publisher.
    fn sub_count(&self, v: u64) -> Cell {
        if self.subscriber() {
            Cell::Count(v)
        } else {
            Cell::Missing
        }
    }
}

/// One column of the peer table: its title, its JSON key, its value.
pub struct Column {
    title: &'static str,
    key: &'static str,
    cell: fn(&PeerRow) -> Cell,
}

/// The peer table. Adding a figure is adding one line here.
pub const PEER_COLUMNS: &[Column] = &[
    Column { title: "SLOT", key: "slot", cell: |r| Cell::Count(u64::from(r.peer.slot)) },
    Column {
        title: "KIND",
        key: "kind",
        cell: |r| Cell::Text(if r.subscriber() { "subscriber" } else { "publisher" }.into()),
    },
    Column { title: "PID", key: "pid", cell: |r| Cell::Count(u64::from(r.peer.pid)) },
    Column { title: "STATE", key: "state", cell: |r| Cell::Text(if r.peer.alive { "live" } else { "STALE" }.into()) },
    Column { title: "MSGS/S", key: "msgs_per_s", cell: |r| r.rates.map_or(Cell::Missing, |(m, _)| Cell::Rate(m)) },
    Column {
        title: "BYTES/S",
        key: "bytes_per_s",
        cell: |r| r.rates.map_or(Cell::Missing, |(_, b)| Cell::ByteRate(b)),
    },
    Column { title: "MESSAGES", key: "messages", cell: |r| Cell::Count(r.peer.messages) },
    Column { title: "LAG-BYTES", key: "lag_bytes", cell: |r| r.sub_count(r.peer.lag_bytes) },
    Column { title: "LAG-MSGS", key: "lag_messages", cell: |r| r.sub_count(r.peer.lag_messages) },
    Column { title: "LOST", key: "lost", cell: |r| r.sub_count(r.peer.lost) },
    // Claims this subscriber passed as abandoned (publishers that died or
    // were stopped past the unblock timeout), and how long it has been
    // holding a waiting block-mode publisher back (0: nobody waits on it).
    Column { title: "ABANDONED", key: "abandoned", cell: |r| r.sub_count(r.peer.abandoned) },
    Column { title: "HELD-BACK", key: "held_back_ns", cell: |r| r.sub_count(r.peer.holding_back_ns) },
];

/// What one look at the directory found.
struct Snapshot {
    at: Instant,
    buses: Vec<(String, Result<BusStatus, String>)>,
}

/// Identifies a peer between two looks: a slot reused by another process
/// (or re-attached) is another peer.
type PeerKey = (String, u32, u32, u64);

fn key(bus: &str, p: &PeerInfo) -> PeerKey {
    (bus.to_owned(), p.slot, p.pid, p.attached_unix_ns)
}

fn look(names: &[String], cfg: &BusConfig) -> Result<Snapshot, CliError> {
    let buses = if names.is_empty() {
        shmbus::list(cfg)?.into_iter().map(|(n, st)| (n, st.map_err(|e| e.to_string()))).collect()
    } else {
        names.iter().map(|n| (n.clone(), shmbus::inspect(n, cfg).map_err(|e| e.to_string()))).collect()
    };
    Ok(Snapshot { at: Instant::now(), buses })
}

/// Per-peer (messages, bytes) and per-bus published counts of a snapshot.
struct Counters {
    peers: HashMap<PeerKey, (u64, u64)>,
    published: HashMap<String, u64>,
}

impl Counters {
    fn of(s: &Snapshot) -> Counters {
        let mut peers = HashMap::new();
        let mut published = HashMap::new();
        for (name, st) in &s.buses {
            if let Ok(st) = st {
                published.insert(name.clone(), st.published);
                for p in &st.peers {
                    peers.insert(key(name, p), (p.messages, p.bytes));
                }
            }
        }
        Counters { peers, published }
    }
}

/// Rate of a counter that went from `before` to `now` in `secs`.
fn rate(before: u64, now: u64, secs: f64) -> f64 {
    now.saturating_sub(before) as f64 / secs
}

/// The view of one snapshot, with rates against the previous one.
struct View<'a> {
    snap: &'a Snapshot,
    prev: Option<(&'a Counters, f64)>,
}

impl View<'_> {
    fn peer_rates(&self, bus: &str, p: &PeerInfo) -> Option<(f64, f64)> {
        let (c, secs) = self.prev?;
        let &(m, b) = c.peers.get(&key(bus, p))?;
        Some((rate(m, p.messages, secs), rate(b, p.bytes, secs)))
    }

    fn bus_rate(&self, st: &BusStatus) -> Cell {
        self.prev
            .and_then(|(c, secs)| c.published.get(&st.name).map(|&before| Cell::Rate(rate(before, st.published, secs))))
            .unwrap_or(Cell::Missing)
    }

    fn text(&self, dir: &str, interval: f64) -> String {
        let mut out = format!("shmbus top: {dir}, every {interval} s, {}\n\n", clock());
        if self.snap.buses.is_empty() {
            out.push_str("no buses\n");
            return out;
        }
        let mut buses = vec![["BUS", "POLICY", "CAPACITY", "PUBLISHED", "MSGS/S", "PUBS", "SUBS", "STATE"]
            .map(String::from)
            .to_vec()];
        let mut peers =
            vec![std::iter::once("BUS").chain(PEER_COLUMNS.iter().map(|c| c.title)).map(String::from).collect()];
        for (name, st) in &self.snap.buses {
            let st = match st {
                Ok(st) => st,
                Err(e) => {
                    // In the last column, so that a long message widens no other.
                    let mut row = vec![name.clone()];
                    row.extend(std::iter::repeat_n("-".to_owned(), buses[0].len() - 2));
                    row.push(format!("error: {e}"));
                    buses.push(row);
                    continue;
                }
            };
            buses.push(vec![
                name.clone(),
                st.header.overflow.to_string(),
                human_bytes(st.header.capacity),
                st.published.to_string(),
                self.bus_rate(st).text(),
                st.live_publishers().to_string(),
                st.live_subscribers().to_string(),
                if st.stale() { "STALE (no live peer)" } else { "live" }.to_owned(),
            ]);
            for p in &st.peers {
                let row = PeerRow { peer: p, rates: self.peer_rates(name, p) };
                peers.push(
                    std::iter::once(name.clone()).chain(PEER_COLUMNS.iter().map(|c| (c.cell)(&row).text())).collect(),
                );
            }
        }
        out.push_str(&table(&buses));
        out.push('\n');
        if peers.len() == 1 {
            out.push_str("no peers attached\n");
        } else {
            out.push_str(&table(&peers));
        }
        out
    }

    fn json(&self, dir: &str, interval: f64) -> Value {
        let buses: Vec<Value> = self
            .snap
            .buses
            .iter()
            .map(|(name, st)| match st {
                Err(e) => json!({ "name": name, "error": e }),
                Ok(st) => {
                    let peers: Vec<Value> = st
                        .peers
                        .iter()
                        .map(|p| {
                            let row = PeerRow { peer: p, rates: self.peer_rates(name, p) };
                            let obj: Map<String, Value> =
                                PEER_COLUMNS.iter().map(|c| (c.key.to_owned(), (c.cell)(&row).json())).collect();
                            Value::Object(obj)
                        })
                        .collect();
                    json!({
                        "name": name,
                        "path": st.path,
                        "capacity": st.header.capacity,
                        "max_message": st.header.max_message,
                        "overflow": st.header.overflow.to_string(),
                        "persistent": st.header.persistent,
                        "published": st.published,
                        "msgs_per_s": self.bus_rate(st).json(),
                        "live_publishers": st.live_publishers(),
                        "live_subscribers": st.live_subscribers(),
                        "stale": st.stale(),
                        "error": null,
                        "peers": peers,
                    })
                }
            })
            .collect();
        json!({
            "dir": dir,
            "unix_ms": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            "interval_s": interval,
            "rates_over_s": self.prev.map(|(_, s)| (s * 1000.0).round() / 1000.0),
            "buses": buses,
        })
    }
}

/// The time of day, UTC, for the heading.
fn clock() -> String {
    let s = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("{:02}:{:02}:{:02} UTC", s / 3600 % 24, s / 60 % 60, s % 60)
}

/// Clears a terminal and puts the cursor top left, so each view replaces the last.
const REDRAW: &str = "\x1b[H\x1b[2J";

/// `shmbus top`.
pub fn run(a: &TopArgs, cfg: &BusConfig) -> CliResult {
    let stop = Stop::install();
    let dir = shmbus::core::resolve_dir(cfg).display().to_string();
    let interval = Duration::from_secs_f64(a.interval);
    let tty = std::io::stdout().is_terminal() && !a.json;
    let mut prev: Option<(Snapshot, Counters)> = None;
    if a.once {
        let first = look(&a.names, cfg)?;
        if !stop.sleep(interval) {
            return Ok(0);
        }
        let counters = Counters::of(&first);
        prev = Some((first, counters));
    }
    loop {
        let snap = look(&a.names, cfg)?;
        let view = View {
            snap: &snap,
            prev: prev.as_ref().map(|(s, c)| (c, snap.at.duration_since(s.at).as_secs_f64().max(1e-3))),
        };
        let text = if a.json {
            format!("{}\n", view.json(&dir, a.interval))
        } else if tty {
            format!("{REDRAW}{}(Ctrl-C to quit)\n", view.text(&dir, a.interval))
        } else {
            format!("{}\n", view.text(&dir, a.interval))
        };
        if !print(&text)? || a.once {
            return Ok(0);
        }
        let counters = Counters::of(&snap);
        prev = Some((snap, counters));
        if !stop.sleep(interval) {
            return Ok(0);
        }
    }
}
