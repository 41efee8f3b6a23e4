//! How a command fails: a one-line message on stderr and an exit code.

use std::fmt;
use std::process::ExitCode;

/// Exit code of a runtime error.
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code of a usage error (a bad value on the command line).
pub const EXIT_USAGE: u8 = 2;
/// Exit code of `sub --timeout` when nothing arrived in time.
pub const EXIT_TIMEOUT: u8 = 3;
/// Exit code of `sub --verify` (and `demo`) when a message was corrupt, reordered or duplicated.
pub const EXIT_VERIFY: u8 = 4;

/// A failed command. Its message names the bus, the file and the cause.
#[derive(Debug)]
pub struct CliError {
    message: String,
    usage: bool,
}

impl CliError {
    /// A runtime error with this message (exit code 1).
    pub fn new(message: impl Into<String>) -> Self {
        CliError { message: message.into(), usage: false }
    }

    /// A usage error: a value on the command line that can never work
    /// (exit code 2, one line `error: <message>`, as the argument parser's).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError { message: message.into(), usage: true }
    }

    /// Prints the one-line message on stderr and returns the exit code:
    /// `shmbus: <message>` and 1, or `error: <message>` and 2 for a usage error.
    pub fn report(self) -> ExitCode {
        if self.usage {
            eprintln!("error: {}", self.message);
            ExitCode::from(EXIT_USAGE)
        } else {
            eprintln!("shmbus: {}", self.message);
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<shmbus::Error> for CliError {
    fn from(e: shmbus::Error) -> Self {
        CliError::new(e.to_string())
    }
}

/// Result of a command: its exit code.
pub type CliResult = Result<u8, CliError>;
