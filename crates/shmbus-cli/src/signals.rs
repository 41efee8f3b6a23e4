//! SIGINT and SIGTERM end a command cleanly: the handler only sets a flag,
//! every blocking wait runs in short slices and looks at it, and the command
//! then drops its handles normally (freeing its peer slot; the last peer out
//! removes a non-persistent bus). A second signal while the first is being
//! handled ends the process at once (the kernel still releases its slot's
//! lock; `shmbus gc` removes what it leaves).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR2};

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

/// Ends a wait of the main thread on a bus without polling: the library's
/// parks always carry a timeout, so a signal with a handler interrupts them
/// (EINTR, never restarted) and an interruptible handle returns. SIGINT and
/// SIGTERM do that by themselves; `wake` sends SIGUSR2 (handled, ignored) to
/// the thread that made this value.
#[derive(Clone, Copy, Debug)]
pub struct MainWaker(nix::sys::pthread::Pthread);

impl MainWaker {
    /// Call on the thread to be woken.
    pub fn here() -> MainWaker {
        let _ = signal_hook::flag::register(SIGUSR2, Arc::new(AtomicBool::new(false)));
        MainWaker(nix::sys::pthread::pthread_self())
    }

    /// Interrupts that thread's current wait.
    pub fn wake(&self) {
        let _ = nix::sys::pthread::pthread_kill(self.0, nix::sys::signal::Signal::SIGUSR2);
    }
}

/// Blocks SIGINT, SIGTERM and SIGUSR2 in the calling (helper) thread, so the
/// kernel delivers them to the main thread, whose wait they must interrupt.
pub fn leave_signals_to_main_thread() {
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGUSR2] {
        set.add(s);
    }
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
}

/// Watches stdout from a helper thread, parked in `poll` (no periodic
/// wake-ups): when its reader goes away (the pipe's reading end is closed,
/// the terminal hung up), wakes the main thread so an idle `sub | head -1`
/// exits at once instead of at the next message.
pub fn watch_stdout_gone(main: MainWaker) {
    let _ = std::thread::Builder::new().name("stdout-watch".into()).spawn(move || {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        leave_signals_to_main_thread();
        let stdout = std::io::stdout();
        loop {
            let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::empty())];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(n) if n > 0 => {
                    main.wake();
                    return;
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            }
        }
    });
}
