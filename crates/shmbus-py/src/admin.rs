//! `inspect`, `list`, `gc` and `remove`, returning plain Python objects
//! (dicts, lists, str) with the same fields as `shmbus inspect --json`.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use shmbus::{BusConfig, BusStatus, GcAction, HeaderInfo};

use crate::errors::bus_err;

fn cfg(dir: Option<PathBuf>) -> BusConfig {
    match dir {
        Some(d) => BusConfig::default().dir(d),
        None => BusConfig::default(),
    }
}

/// The header fields of a bus as a dict.
pub fn header_dict<'py>(py: Python<'py>, h: &HeaderInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("version", h.version)?;
    d.set_item("capacity", h.capacity)?;
    d.set_item("max_message", h.max_message)?;
    d.set_item("overflow", h.overflow.to_string())?;
    d.set_item("persistent", h.persistent)?;
    d.set_item("peer_slots", h.peer_slots)?;
    d.set_item("creator_pid", h.creator_pid)?;
    d.set_item("created_unix_ns", h.created_unix_ns)?;
    Ok(d)
}

fn status_dict<'py>(py: Python<'py>, st: &BusStatus) -> PyResult<Bound<'py, PyDict>> {
    let d = header_dict(py, &st.header)?;
    d.set_item("name", &st.name)?;
    d.set_item("path", st.path.display().to_string())?;
    d.set_item("tail", st.tail)?;
    d.set_item("published", st.published)?;
    d.set_item("live_publishers", st.live_publishers())?;
    d.set_item("live_subscribers", st.live_subscribers())?;
    d.set_item("ready_subscribers", st.ready_subscribers())?;
    d.set_item("stale", st.stale())?;
    d.set_item("data_waiters", st.data_waiters)?;
    d.set_item("space_waiters", st.space_waiters)?;
    d.set_item("attach_epoch", st.attach_epoch)?;
    let peers = PyList::empty(py);
    for p in &st.peers {
        let pd = PyDict::new(py);
        pd.set_item("slot", p.slot)?;
        pd.set_item("kind", p.kind.to_string())?;
        pd.set_item("pid", p.pid)?;
        pd.set_item("alive", p.alive)?;
        pd.set_item("placed", p.placed)?;
        pd.set_item("cursor", p.cursor)?;
        pd.set_item("lag_bytes", p.lag_bytes)?;
        pd.set_item("lag_messages", p.lag_messages)?;
        pd.set_item("messages", p.messages)?;
        pd.set_item("bytes", p.bytes)?;
        pd.set_item("lost", p.lost)?;
        pd.set_item("attached_unix_ns", p.attached_unix_ns)?;
        peers.append(pd)?;
    }
    d.set_item("peers", peers)?;
    Ok(d)
}

/// inspect(name, dir=None) -> dict
///
/// The header, counters and occupied peer slots of bus `name`, without
/// attaching to it (the fields of `shmbus inspect --json`).
#[pyfunction]
#[pyo3(signature = (name, dir=None))]
pub fn inspect<'py>(py: Python<'py>, name: &str, dir: Option<PathBuf>) -> PyResult<Bound<'py, PyDict>> {
    let cfg = cfg(dir);
    let st = py.detach(|| shmbus::inspect(name, &cfg)).map_err(|e| bus_err(py, e))?;
    status_dict(py, &st)
}

/// list(dir=None) -> list[dict]
///
/// Every bus file in the directory, sorted by name: the dict of `inspect`
/// plus `"error": None`, or only `name`, `path` and `"error": message` for a
/// file that could not be read.
#[pyfunction]
#[pyo3(signature = (dir=None))]
pub fn list<'py>(py: Python<'py>, dir: Option<PathBuf>) -> PyResult<Bound<'py, PyList>> {
    let cfg = cfg(dir);
    let all = py.detach(|| shmbus::list(&cfg)).map_err(|e| bus_err(py, e))?;
    let dir = shmbus::core::resolve_dir(&cfg);
    let out = PyList::empty(py);
    for (name, st) in all {
        let d = match st {
            Ok(st) => {
                let d = status_dict(py, &st)?;
                d.set_item("error", py.None())?;
                d
            }
            Err(e) => {
                let d = PyDict::new(py);
                d.set_item("name", &name)?;
                d.set_item("path", shmbus::core::bus_path(&dir, &name).display().to_string())?;
                d.set_item("error", e.to_string())?;
                d
            }
        };
        out.append(d)?;
    }
    Ok(out)
}

/// gc(dir=None) -> list[dict]
///
/// Removes every non-persistent bus with no live peer (and temporary files
/// of creators that died half-way). One dict per file looked at:
/// `{"action": "removed" | "removed_partial" | "skipped", "name", "path", "reason"}`.
#[pyfunction]
#[pyo3(signature = (dir=None))]
pub fn gc<'py>(py: Python<'py>, dir: Option<PathBuf>) -> PyResult<Bound<'py, PyList>> {
    let cfg = cfg(dir);
    let actions = py.detach(|| shmbus::gc(&cfg)).map_err(|e| bus_err(py, e))?;
    let out = PyList::empty(py);
    for a in actions {
        let d = PyDict::new(py);
        let (action, name, path, reason) = match a {
            GcAction::Removed { name, path } => ("removed", Some(name), path, None),
            GcAction::RemovedPartial { path } => ("removed_partial", None, path, None),
            GcAction::Skipped { path, reason } => ("skipped", None, path, Some(reason)),
        };
        d.set_item("action", action)?;
        d.set_item("name", name)?;
        d.set_item("path", path.display().to_string())?;
        d.set_item("reason", reason)?;
        out.append(d)?;
    }
    Ok(out)
}

/// remove(name, dir=None, force=False) -> str
///
/// Removes bus `name` and returns the path of the file removed. Refuses
/// (`shmbus.InUse`) while live peers are attached, unless `force`.
#[pyfunction]
#[pyo3(signature = (name, dir=None, force=false))]
pub fn remove(py: Python<'_>, name: &str, dir: Option<PathBuf>, force: bool) -> PyResult<String> {
    let cfg = cfg(dir);
    let p = py.detach(|| shmbus::remove(name, &cfg, force)).map_err(|e| bus_err(py, e))?;
    Ok(p.display().to_string())
}
