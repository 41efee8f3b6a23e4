//! `shmbus._shmbus`: the native half of the Python package `shmbus`.
//!
//! It wraps the Rust facade (`shmbus`): `Publisher`, `Subscriber`, their
//! zero-copy `Loan` and `MessageRef`, and the admin calls. The pure-Python
//! half (`python/shmbus/`) adds the exception classes, the numpy convention
//! and the type stubs. docs/python.md is the user's guide; the rules it
//! states about blocking, Ctrl-C and buffers are implemented here.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod admin;
mod buffer;
mod config;
mod errors;
mod handles;
mod home;

use pyo3::prelude::*;

/// shmbus: a shared-memory message bus between processes on one machine.
#[pymodule]
fn _shmbus(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<handles::PyPublisher>()?;
    m.add_class::<handles::PySubscriber>()?;
    m.add_class::<handles::PyLoan>()?;
    m.add_class::<handles::PyMessageRef>()?;
    m.add_function(wrap_pyfunction!(admin::inspect, m)?)?;
    m.add_function(wrap_pyfunction!(admin::list, m)?)?;
    m.add_function(wrap_pyfunction!(admin::gc, m)?)?;
    m.add_function(wrap_pyfunction!(admin::remove, m)?)?;
    m.add("BufferWindow", buffer::window_type(m.py())?)?;
    m.add("WAIT_SLICE_SECONDS", handles::SLICE.as_secs_f64())?;
    Ok(())
}
