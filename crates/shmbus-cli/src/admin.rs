//! `create`, `ls`, `inspect`, `gc` and `rm`: looking at and managing buses
//! without attaching to them as a peer.

use std::path::PathBuf;

use serde::Serialize;
use shmbus::{BusConfig, BusStatus, GcAction, PeerKind};

use crate::attach::{check_values, creation_config};
use crate::error::{CliError, CliResult};
use crate::output::{print, table};
use crate::units::{bytes_both, human_bytes};
use crate::SizingArgs;

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn kind_str(k: PeerKind) -> &'static str {
    match k {
        PeerKind::Publisher => "publisher",
        _ => "subscriber",
    }
}

/// `shmbus create NAME`.
pub fn create(name: &str, base: &BusConfig, sizing: &SizingArgs) -> CliResult {
    check_values(name, base, sizing, false)?;
    let cfg = creation_config(base, sizing)?;
    let info = shmbus::create_bus(name, &cfg)?;
    let path = shmbus::core::bus_path(&shmbus::core::resolve_dir(&cfg), name);
    let lifetime = if info.persistent {
        "persistent: kept until `shmbus rm`"
    } else {
        "not persistent: removed when its last peer detaches, or by `shmbus gc` while none is attached"
    };
    print(&format!(
        "created bus '{name}' at {}: capacity {}, max message {}, overflow {}, {} peer slots, {lifetime}\n",
        path.display(),
        human_bytes(info.capacity),
        bytes_both(u64::from(info.max_message)),
        info.overflow,
        info.peer_slots,
    ))?;
    Ok(0)
}

#[derive(Serialize)]
struct LsEntry {
    name: String,
    path: PathBuf,
    capacity: Option<u64>,
    max_message: Option<u32>,
    overflow: Option<String>,
    persistent: Option<bool>,
    live_publishers: Option<usize>,
    live_subscribers: Option<usize>,
    stale: Option<bool>,
    error: Option<String>,
}

/// `shmbus ls`.
pub fn ls(cfg: &BusConfig, json: bool) -> CliResult {
    let dir = shmbus::core::resolve_dir(cfg);
    let buses = shmbus::list(cfg)?;
    let entries: Vec<LsEntry> = buses
        .into_iter()
        .map(|(name, st)| {
            let path = shmbus::core::bus_path(&dir, &name);
            match st {
                Ok(st) => LsEntry {
                    name,
                    path,
                    capacity: Some(st.header.capacity),
                    max_message: Some(st.header.max_message),
                    overflow: Some(st.header.overflow.to_string()),
                    persistent: Some(st.header.persistent),
                    live_publishers: Some(st.live_publishers()),
                    live_subscribers: Some(st.live_subscribers()),
                    stale: Some(st.stale()),
                    error: None,
                },
                Err(e) => LsEntry {
                    name,
                    path,
                    capacity: None,
                    max_message: None,
                    overflow: None,
                    persistent: None,
                    live_publishers: None,
                    live_subscribers: None,
                    stale: None,
                    error: Some(e.to_string()),
                },
            }
        })
        .collect();
    if json {
        let text = serde_json::to_string_pretty(&entries).map_err(|e| CliError::new(e.to_string()))?;
        print(&format!("{text}\n"))?;
        return Ok(0);
    }
    if entries.is_empty() {
        print(&format!("no buses in {}\n", dir.display()))?;
        return Ok(0);
    }
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut rows = vec![["NAME", "CAPACITY", "MAX-MSG", "POLICY", "PERSISTENT", "PUBS", "SUBS", "STALE", ""]
        .map(String::from)
        .to_vec()];
    for e in entries {
        rows.push(vec![
            e.name,
            opt(e.capacity.map(human_bytes)),
            opt(e.max_message.map(|m| human_bytes(u64::from(m)))),
            opt(e.overflow),
            opt(e.persistent.map(yes_no)),
            opt(e.live_publishers.map(|n| n.to_string())),
            opt(e.live_subscribers.map(|n| n.to_string())),
            opt(e.stale.map(yes_no)),
            e.error.map(|e| format!("error: {e}")).unwrap_or_default(),
        ]);
    }
    print(&table(&rows))?;
    Ok(0)
}

#[derive(Serialize)]
struct InspectJson {
    name: String,
    path: PathBuf,
    version: u32,
    capacity: u64,
    max_message: u32,
    overflow: String,
    persistent: bool,
    tail: u64,
    published: u64,
    peer_slots: u32,
    creator_pid: u32,
    created_unix_ns: u64,
    live_publishers: usize,
    live_subscribers: usize,
    ready_subscribers: usize,
    stale: bool,
    peers: Vec<PeerJson>,
}

#[derive(Serialize)]
struct PeerJson {
    slot: u32,
    kind: &'static str,
    pid: u32,
    alive: bool,
    placed: bool,
    cursor: u64,
    lag_bytes: u64,
    lag_messages: u64,
    messages: u64,
    bytes: u64,
    lost: u64,
    attached_unix_ns: u64,
    abandoned: u64,
    holding_back_ns: u64,
    evicted: bool,
    parked: bool,
}

fn inspect_json(st: &BusStatus) -> InspectJson {
    InspectJson {
        name: st.name.clone(),
        path: st.path.clone(),
        version: st.header.version,
        capacity: st.header.capacity,
        max_message: st.header.max_message,
        overflow: st.header.overflow.to_string(),
        persistent: st.header.persistent,
        tail: st.tail,
        published: st.published,
        peer_slots: st.header.peer_slots,
        creator_pid: st.header.creator_pid,
        created_unix_ns: st.header.created_unix_ns,
        live_publishers: st.live_publishers(),
        live_subscribers: st.live_subscribers(),
        ready_subscribers: st.ready_subscribers(),
        stale: st.stale(),
        peers: st
            .peers
            .iter()
            .map(|p| PeerJson {
                slot: p.slot,
                kind: kind_str(p.kind),
                pid: p.pid,
                alive: p.alive,
                placed: p.placed,
                cursor: p.cursor,
                lag_bytes: p.lag_bytes,
                lag_messages: p.lag_messages,
                messages: p.messages,
                bytes: p.bytes,
                lost: p.lost,
                attached_unix_ns: p.attached_unix_ns,
                abandoned: p.abandoned,
                holding_back_ns: p.holding_back_ns,
                evicted: p.evicted,
                parked: p.parked,
            })
            .collect(),
    }
}

/// `shmbus inspect NAME`.
pub fn inspect(name: &str, cfg: &BusConfig, json: bool) -> CliResult {
    let st = shmbus::inspect(name, cfg)?;
    if json {
        let text = serde_json::to_string_pretty(&inspect_json(&st)).map_err(|e| CliError::new(e.to_string()))?;
        print(&format!("{text}\n"))?;
        return Ok(0);
    }
    let h = &st.header;
    let head = vec![
        vec!["bus".into(), st.name.clone()],
        vec!["file".into(), st.path.display().to_string()],
        vec!["version".into(), h.version.to_string()],
        vec!["capacity".into(), bytes_both(h.capacity)],
        vec!["max message".into(), bytes_both(u64::from(h.max_message))],
        vec!["overflow".into(), h.overflow.to_string()],
        vec!["persistent".into(), yes_no(h.persistent)],
        vec!["created by".into(), format!("pid {}", h.creator_pid)],
        vec!["peer slots".into(), format!("{} ({} in use)", h.peer_slots, st.peers.len())],
        vec![
            "live peers".into(),
            format!(
                "{}, {}{}",
                plural(st.live_publishers(), "publisher"),
                plural(st.live_subscribers(), "subscriber"),
                if st.stale() { " (stale: no live peer)" } else { "" }
            ),
        ],
        vec!["tail".into(), format!("byte {}", st.tail)],
        vec!["published".into(), format!("{} messages", st.published)],
    ];
    let mut text = table(&head);
    text.push('\n');
    if st.peers.is_empty() {
        text.push_str("no peers attached\n");
    } else {
        let mut rows = vec![[
            "SLOT",
            "KIND",
            "PID",
            "ALIVE",
            "CURSOR",
            "LAG-BYTES",
            "LAG-MSGS",
            "MESSAGES",
            "BYTES",
            "LOST",
            "ABANDONED",
            "HOLDING-BACK",
        ]
        .map(String::from)
        .to_vec()];
        for p in &st.peers {
            let sub = p.kind == PeerKind::Subscriber;
            let sub_only = |v: u64| if sub { v.to_string() } else { "-".into() };
            rows.push(vec![
                p.slot.to_string(),
                kind_str(p.kind).into(),
                p.pid.to_string(),
                yes_no(p.alive),
                sub_only(p.cursor),
                sub_only(p.lag_bytes),
                sub_only(p.lag_messages),
                p.messages.to_string(),
                p.bytes.to_string(),
                sub_only(p.lost),
                sub_only(p.abandoned),
                if !sub {
                    "-".into()
                } else if p.evicted {
                    "evicted".into()
                } else if p.holding_back_ns > 0 {
                    format!("{:.1} s", p.holding_back_ns as f64 / 1e9)
                } else {
                    "-".into()
                },
            ]);
        }
        text.push_str(&table(&rows));
    }
    print(&text)?;
    Ok(0)
}

/// `shmbus gc`.
pub fn gc(cfg: &BusConfig) -> CliResult {
    let actions = shmbus::gc(cfg)?;
    let mut text = String::new();
    for a in &actions {
        match a {
            GcAction::Removed { name, path } => {
                text.push_str(&format!("removed {name} ({})\n", path.display()));
            }
            GcAction::RemovedPartial { path } => {
                text.push_str(&format!("removed unfinished {}\n", path.display()));
            }
            GcAction::Skipped { path, reason } => {
                eprintln!("shmbus: gc left {} alone: {reason}", path.display());
            }
        }
    }
    if text.is_empty() {
        text = format!("nothing to remove in {}\n", shmbus::core::resolve_dir(cfg).display());
    }
    print(&text)?;
    Ok(0)
}

/// `shmbus rm NAME`.
pub fn rm(name: &str, cfg: &BusConfig, force: bool) -> CliResult {
    let path = shmbus::remove(name, cfg, force)?;
    print(&format!("removed {name} ({})\n", path.display()))?;
    Ok(0)
}
