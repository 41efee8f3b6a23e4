//! Writing to stdout without panicking (a closed pipe ends the command
//! quietly), and progress lines on stderr only when it is a terminal.

use std::io::{self, IsTerminal, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::error::CliError;
use crate::signals::{Stop, SLICE};

/// Writes `text` to stdout. A closed stdout (`shmbus ls | head -1`) is not an
/// error: `Ok(false)` tells the caller to stop writing.
pub fn print(text: &str) -> Result<bool, CliError> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(CliError::new(format!("cannot write to stdout: {e}"))),
    }
}

/// How a [`Sink::flush`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Everything was written.
    All,
    /// A stop was requested while stdout had no room.
    Stopped,
    /// Nobody reads stdout any more (`| head -1` exited).
    Closed,
}

/// What `poll` reports on stdout when nobody will read it again: the reading
/// end of its pipe was closed (`POLLERR`), the terminal hung up (`POLLHUP`),
/// or stdout itself was closed (`POLLNVAL`).
const GONE: PollFlags = PollFlags::POLLERR.union(PollFlags::POLLHUP).union(PollFlags::POLLNVAL);

/// Most bytes one `write` to a pipe may carry: a pipe with room for one more
/// buffer (what `poll` reports as writable) takes this much without blocking.
const PIPE_BUF: usize = 4096;

/// Messages for stdout, written without ever blocking for longer than a
/// [`SLICE`]: a reader that stopped reading (a full pipe) cannot keep the
/// command from noticing a signal, and a reader that went away is noticed
/// even while no message arrives ([`Sink::closed`]).
pub struct Sink {
    stdout: io::Stdout,
    buf: Vec<u8>,
    /// A pipe or socket: writes go in [`PIPE_BUF`] pieces after `poll` said there is room.
    fifo: bool,
    /// A terminal: every message is written at once.
    pub tty: bool,
}

impl Sink {
    /// A sink for this process's stdout.
    pub fn stdout() -> Sink {
        use nix::sys::stat::{fstat, SFlag};
        let stdout = io::stdout();
        let fifo = fstat(stdout.as_fd()).is_ok_and(|st| {
            let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
            kind == SFlag::S_IFIFO || kind == SFlag::S_IFSOCK
        });
        let tty = stdout.is_terminal();
        Sink { stdout, buf: Vec::with_capacity(1 << 16), fifo, tty }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.stdout.as_fd()
    }

    /// Adds bytes to what will be written.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes waiting to be written.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    fn wait_writable(&self, timeout: Duration) -> Result<PollFlags, CliError> {
        let mut fds = [PollFd::new(self.fd(), PollFlags::POLLOUT)];
        let ms = PollTimeout::from(timeout.as_millis().min(u128::from(u16::MAX)) as u16);
        match poll(&mut fds, ms) {
            Ok(_) => Ok(fds[0].revents().unwrap_or(PollFlags::empty())),
            Err(Errno::EINTR) => Ok(PollFlags::empty()),
            Err(e) => Err(CliError::new(format!("cannot wait for stdout: {e}"))),
        }
    }

    /// Whether nobody reads stdout any more (the reading end of its pipe was
    /// closed). Does not wait.
    pub fn closed(&self) -> Result<bool, CliError> {
        let r = self.wait_writable(Duration::ZERO)?;
        Ok(r.intersects(GONE))
    }

    /// Writes everything buffered, waiting for room in slices of at most
    /// [`SLICE`] and looking at `stop` between them.
    pub fn flush(&mut self, stop: &Stop) -> Result<Flushed, CliError> {
        while !self.buf.is_empty() {
            let r = self.wait_writable(SLICE)?;
            if r.intersects(GONE) {
                return Ok(Flushed::Closed);
            }
            if !r.contains(PollFlags::POLLOUT) {
                if stop.requested() {
                    return Ok(Flushed::Stopped);
                }
                continue;
            }
            let n = if self.fifo { self.buf.len().min(PIPE_BUF) } else { self.buf.len() };
            match nix::unistd::write(self.fd(), &self.buf[..n]) {
                Ok(w) => {
                    self.buf.drain(..w);
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(Errno::EPIPE) => return Ok(Flushed::Closed),
                Err(e) => return Err(CliError::new(format!("cannot write to stdout: {e}"))),
            }
        }
        Ok(Flushed::All)
    }
}

/// Whether progress lines are shown: only when stderr is a terminal.
pub fn progress_wanted() -> bool {
    io::stderr().is_terminal()
}

/// A progress line that is cleared when dropped, however the command ends.
pub struct Spinner(ProgressBar);

impl std::ops::Deref for Spinner {
    type Target = ProgressBar;
    fn deref(&self) -> &ProgressBar {
        &self.0
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// A one-line spinner on stderr with a message, or `None` when stderr is not
/// a terminal. Its clock counts from `since`.
pub fn spinner(prefix: &str, since: Instant) -> Option<Spinner> {
    if !progress_wanted() {
        return None;
    }
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10)).with_elapsed(since.elapsed());
    let style = ProgressStyle::with_template("{spinner} {prefix} {elapsed:>4} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    pb.set_style(style);
    pb.set_prefix(prefix.to_owned());
    pb.enable_steady_tick(Duration::from_millis(100));
    Some(Spinner(pb))
}

/// Aligns rows into columns separated by two spaces (the last column unpadded).
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', widths[i] - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_aligns() {
        let t = super::table(&[vec!["A".into(), "BB".into(), "C".into()], vec!["long".into(), "x".into(), "y".into()]]);
        assert_eq!(t, "A     BB  C\nlong  x   y\n");
    }
}
