//! Rust errors as Python exceptions of the same names and messages.
//!
//! The exception classes live in `shmbus/_errors.py` (pure Python, so that
//! they can also derive from the matching built-in exceptions such as
//! `FileNotFoundError` or `TimeoutError`). A variant this crate does not
//! match explicitly (the facade's enums are `#[non_exhaustive]`) becomes the
//! base class `shmbus.Error` with the Rust message.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;

use shmbus::{Error, RecvError, SendError};

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// An instance of `shmbus._errors.<class>(*args)` as a `PyErr`.
fn raise<'py, A: pyo3::call::PyCallArgs<'py>>(py: Python<'py>, class: &str, args: A) -> PyErr {
    let make = || -> PyResult<PyErr> {
        let m = ERRORS.get_or_try_init(py, || py.import("shmbus._errors").map(|m| m.unbind()))?;
        let exc = m.bind(py).getattr(class)?.call1(args)?;
        Ok(PyErr::from_value(exc))
    };
    make().unwrap_or_else(|e| e)
}

/// The exception class for a core error.
fn class_of(e: &Error) -> &'static str {
    match e {
        Error::InvalidName { .. } => "InvalidName",
        Error::InvalidConfig { .. } => "InvalidConfig",
        Error::UnsafeDir { .. } => "UnsafeDir",
        Error::NotFound { .. } => "NotFound",
        Error::PermissionDenied { .. } => "PermissionDenied",
        Error::NotABusFile { .. } => "NotABusFile",
        Error::NoSpace { .. } => "NoSpace",
        Error::Io { .. } => "Io",
        Error::Foreign { .. } => "Foreign",
        Error::Version { .. } => "Version",
        Error::Corrupt { .. } => "Corrupt",
        Error::Incompatible { .. } => "Incompatible",
        Error::PeersFull { .. } => "PeersFull",
        Error::Busy { .. } => "Busy",
        Error::AlreadyExists { .. } => "AlreadyExists",
        Error::InUse { .. } => "InUse",
        _ => "Error",
    }
}

/// A core error (attach, create, admin calls) as a Python exception.
pub fn bus_err(py: Python<'_>, e: Error) -> PyErr {
    raise(py, class_of(&e), (e.to_string(),))
}

/// A send error as a Python exception.
pub fn send_err(py: Python<'_>, e: SendError) -> PyErr {
    let class = match &e {
        SendError::Full => "Full",
        SendError::Timeout => "Timeout",
        SendError::TooLarge { .. } => "TooLarge",
        SendError::Encode(_) => "Encode",
        SendError::Bus(b) => class_of(b),
        _ => "Error",
    };
    raise(py, class, (e.to_string(),))
}

/// A receive error as a Python exception; `Lagged` carries `lost`.
pub fn recv_err(py: Python<'_>, e: RecvError) -> PyErr {
    let class = match &e {
        RecvError::Lagged { lost } => return raise(py, "Lagged", (e.to_string(), *lost)),
        RecvError::Timeout => "Timeout",
        RecvError::WrongSize { .. } => "WrongSize",
        RecvError::Decode(_) => "Decode",
        RecvError::Bus(b) => class_of(b),
        _ => "Error",
    };
    raise(py, class, (e.to_string(),))
}

/// A handle used after `close()` (or after its context manager exited).
pub fn closed(py: Python<'_>, what: &str, bus: &str) -> PyErr {
    raise(py, "Closed", (format!("this {what} of bus '{bus}' is closed"),))
}
