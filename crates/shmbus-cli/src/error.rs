//! How a command fails: a one-line message on stderr and an exit code.

use std::fmt;
use std::process::ExitCode;

/// Exit code of a runtime error.
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code of `sub --timeout` when nothing arrived in time.
pub const EXIT_TIMEOUT: u8 = 3;
/// Exit code of `sub --verify` (and `demo`) when a message was corrupt, reordered or duplicated.
pub const EXIT_VERIFY: u8 = 4;

/// A failed command. Its message names the bus, the file and the cause.
#[derive(Debug)]
pub struct CliError {
    message: String,
}

impl CliError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        CliError { message: message.into() }
    }

    /// Prints `shmbus: <message>` on stderr and returns exit code 1.
    pub fn report(self) -> ExitCode {
        eprintln!("shmbus: {}", self.message);
        ExitCode::from(EXIT_RUNTIME)
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
