//! Writing to stdout without panicking (a closed pipe ends the command
//! quietly), and progress lines on stderr only when it is a terminal.

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::CliError;

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
