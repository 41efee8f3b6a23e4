//! The child side: a re-executed harness binary with [`CHILD_ENV`] set runs
//! one role of one case and reports on stdout, one line each:
//! `@@shmbus-bench READY <info>`, then `@@shmbus-bench RESULT <json>` (or
//! `@@shmbus-bench ERROR <message>`).

use std::ffi::OsString;
use std::io::Write;

use crate::spec::{ChildSpec, CHILD_ENV};
use crate::sys;

/// Prefix of every protocol line a child prints.
pub const PREFIX: &str = "@@shmbus-bench ";

fn say(what: &str, rest: &str) {
    let mut out = std::io::stdout().lock();
    // A parent that went away cannot be told anything: ignore write errors.
    let _ = writeln!(out, "{PREFIX}{what} {rest}");
    let _ = out.flush();
}

/// Runs the child described by `json` and returns its exit code.
pub fn main(json: OsString) -> i32 {
    sys::die_with_parent();
    let spec: ChildSpec = match json.to_str().map(serde_json::from_str) {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            say("ERROR", &format!("bad {CHILD_ENV}: {e}"));
            return 2;
        }
        None => {
            say("ERROR", &format!("{CHILD_ENV} is not UTF-8"));
            return 2;
        }
    };
    let who = format!("{} {} {:?}#{}", spec.transport, spec.pattern, spec.role, spec.index);
    if let Some(cpu) = spec.cpu {
        if let Err(e) = sys::pin_to_cpu(cpu) {
            say("ERROR", &format!("{who}: cannot pin to CPU {cpu}: {e}"));
            return 1;
        }
    }
    let mut ready = |info: &str| say("READY", info);
    match crate::transport::run(&spec, &mut ready) {
        Ok(result) => match serde_json::to_string(&result) {
            Ok(line) => {
                say("RESULT", &line);
                0
            }
            Err(e) => {
                say("ERROR", &format!("{who}: {e}"));
                1
            }
        },
        Err(e) => {
            say("ERROR", &format!("{who}: {e}"));
            1
        }
    }
}
