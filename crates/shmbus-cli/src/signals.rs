//! SIGINT and SIGTERM end a command cleanly: the handler only sets a flag,
//! every blocking wait runs in short slices and looks at it, and the command
//! then drops its handles normally (freeing its peer slot; the last peer out
//! removes a non-persistent bus). A second signal while the first is being
//! handled ends the process at once (the kernel still releases its slot's
//! lock; `shmbus gc` removes what it leaves).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};

/// How long one blocking wait lasts at most before the flag is looked at again.
pub const SLICE: Duration = Duration::from_millis(50);

/// Set once SIGINT or SIGTERM arrived.
#[derive(Clone, Debug)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// Installs the handlers. If that fails (it cannot for these two signals
    /// on Linux), the default action stays: the process dies and `gc` cleans up.
    pub fn install() -> Stop {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM] {
            // The conditional shutdown goes first: it fires only when the flag
            // was already set by an earlier signal.
            let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&flag));
            let _ = signal_hook::flag::register(sig, Arc::clone(&flag));
        }
        Stop(flag)
    }

    /// Whether a signal asked us to stop.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Sleeps up to `d` in slices; returns false if a stop was requested.
    pub fn sleep(&self, d: Duration) -> bool {
        let end = std::time::Instant::now() + d;
        loop {
            if self.requested() {
                return false;
            }
            let now = std::time::Instant::now();
            if now >= end {
                return true;
            }
            std::thread::sleep((end - now).min(SLICE));
        }
    }
}
