//! `Publisher`, `Subscriber`, `Loan` and `MessageRef` for Python.
//!
//! Blocking calls never hold the GIL while they wait and never wait longer
//! than [`SLICE`] without coming back to look at Python's signal flags: a
//! wait of `timeout=None` is a loop of bounded waits, each followed by
//! `Python::check_signals`, so Ctrl-C raises `KeyboardInterrupt` within
//! about one slice. A slice that ends without a message consumes nothing,
//! so an interrupted `recv` loses no message and keeps the peer slot.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use shmbus::{Loan, MessageRef, Publisher, RecvError, SendError, StartAt, Subscriber, WaitStrategy};

use crate::admin::header_dict;
use crate::buffer::{Lent, ReadBuf, Window};
use crate::config::{open, parse, Opts};
use crate::errors::{bus_err, closed, recv_err, send_err};
use crate::home::Home;

/// The longest a blocking call waits without the GIL before it looks at
/// Python's signals (and its own deadline) again.
pub const SLICE: Duration = Duration::from_millis(50);

/// A `timeout` argument in seconds as a deadline (`None`: wait forever).
fn deadline(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() || t < 0.0 => {
            Err(PyValueError::new_err(format!("timeout must be None or a number of seconds >= 0, not {t}")))
        }
        // A deadline beyond what Instant can hold is as good as none.
        Some(t) => Ok(Duration::try_from_secs_f64(t).ok().and_then(|d| Instant::now().checked_add(d))),
    }
}

/// How long the next bounded wait may last; `None` once the deadline passed.
fn next_slice(deadline: Option<Instant>) -> Option<Duration> {
    match deadline {
        None => Some(SLICE),
        Some(d) => {
            let now = Instant::now();
            (now < d).then(|| (d - now).min(SLICE))
        }
    }
}

/// Moves a value that is not `Send` through `Python::detach`, which only
/// releases the GIL around a closure that runs on this same thread.
struct AssertSend<T>(T);
// SAFETY: the value never leaves the calling thread: `detach` runs the
// closure synchronously on the thread that called it.
unsafe impl<T> Send for AssertSend<T> {}

impl<T> AssertSend<T> {
    /// The value (a method, so that closures capture the whole wrapper).
    fn into_inner(self) -> T {
        self.0
    }
}

#[allow(clippy::too_many_arguments)]
fn settings(
    dir: Option<PathBuf>,
    capacity: Option<u64>,
    max_message: Option<u32>,
    overflow: Option<&str>,
    persistent: bool,
    mode: Option<u32>,
    max_peers: Option<u32>,
    wait: Option<&str>,
) -> Result<Opts, shmbus::Error> {
    Ok(Opts {
        dir,
        capacity,
        max_message,
        overflow: overflow.map(parse).transpose()?,
        persistent,
        mode,
        max_peers,
        wait: wait.map(parse).transpose()?,
    })
}

/// The Rust handle, given away while a loan or borrow is open.
fn handle<'a, T>(
    py: Python<'_>,
    inner: &'a mut Option<Box<T>>,
    home: &Home<T>,
    what: &str,
    bus: &str,
) -> PyResult<&'a mut T> {
    if inner.is_none() {
        *inner = home.take();
    }
    match inner {
        Some(h) => Ok(h),
        None if home.is_closed() => Err(closed(py, what, bus)),
        None => Err(PyBufferError::new_err(format!(
            "this {what} of bus '{bus}' has an open {}: finish it first",
            if what == "publisher" { "loan (commit() or abort())" } else { "MessageRef (release())" }
        ))),
    }
}

// ---------------------------------------------------------------- Publisher

/// Publisher(name, *, dir=None, capacity=None, max_message=None, overflow=None,
///           persistent=False, mode=None, max_peers=None, wait=None, create=True)
///
/// A publisher attached to bus `name`. With `create=True` (the default) the
/// bus is created with the given settings if it does not exist; for an
/// existing bus every setting given must match it (`shmbus.Incompatible`).
/// `overflow` is "block" or "overwrite", `wait` is "busy-spin",
/// "spin-then-park" or "park". Use it as a context manager, or call close().
#[pyclass(name = "Publisher", module = "shmbus._shmbus", subclass)]
pub struct PyPublisher {
    inner: Option<Box<Publisher>>,
    home: Arc<Home<Publisher>>,
    name: String,
    path: String,
    slot: u32,
    max_message: usize,
    info: shmbus::HeaderInfo,
}

impl PyPublisher {
    fn get(&mut self, py: Python<'_>) -> PyResult<&mut Publisher> {
        handle(py, &mut self.inner, &self.home, "publisher", &self.name)
    }
}

#[pymethods]
impl PyPublisher {
    #[new]
    #[pyo3(signature = (name, *, dir=None, capacity=None, max_message=None, overflow=None,
                        persistent=false, mode=None, max_peers=None, wait=None, create=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: &str,
        dir: Option<PathBuf>,
        capacity: Option<u64>,
        max_message: Option<u32>,
        overflow: Option<&str>,
        persistent: bool,
        mode: Option<u32>,
        max_peers: Option<u32>,
        wait: Option<&str>,
        create: bool,
    ) -> PyResult<Self> {
        let o = settings(dir, capacity, max_message, overflow, persistent, mode, max_peers, wait)
            .map_err(|e| bus_err(py, e))?;
        let p: Publisher = py.detach(|| open(name, &o, StartAt::Latest, create)).map_err(|e| bus_err(py, e))?;
        Ok(PyPublisher {
            name: p.name().to_owned(),
            path: p.path().display().to_string(),
            slot: p.slot(),
            max_message: p.max_message(),
            info: p.info().clone(),
            inner: Some(Box::new(p)),
            home: Home::new(),
        })
    }

    /// send(data, timeout=None)
    ///
    /// Publishes the bytes of `data`, any object with the buffer protocol
    /// (bytes, bytearray, memoryview, array.array, a C-contiguous numpy
    /// array), copied once, straight into the ring. In block mode it waits
    /// for space: forever with `timeout=None` (Ctrl-C raises
    /// KeyboardInterrupt), else at most `timeout` seconds (`shmbus.Timeout`).
    #[pyo3(signature = (data, timeout=None))]
    fn send(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<()> {
        let deadline = deadline(timeout)?;
        let buf = ReadBuf::get(data)?;
        let bytes = buf.as_slice();
        let publ = self.get(py)?;
        // Fast path: space now, no GIL round trip.
        match publ.try_send(bytes) {
            Ok(()) => return Ok(()),
            Err(SendError::Full) => {}
            Err(e) => return Err(send_err(py, e)),
        }
        loop {
            let Some(slice) = next_slice(deadline) else { return Err(send_err(py, SendError::Timeout)) };
            match py.detach(|| publ.send_timeout(bytes, slice)) {
                Ok(()) => return Ok(()),
                Err(SendError::Timeout) => py.check_signals()?,
                Err(e) => return Err(send_err(py, e)),
            }
        }
    }

    /// send_batch(messages, timeout=None)
    ///
    /// Publishes every buffer of `messages` (a sequence of objects with the
    /// buffer protocol), in order, with consecutive sequence numbers, in as
    /// few batches as they fit in: each batch is one claim, one commit and at
    /// most one wake-up (frames of a batch together at most max_message + 32
    /// bytes). Waits for space like send(); on an error, the batches before
    /// the failing one were published.
    #[pyo3(signature = (messages, timeout=None))]
    fn send_batch(&mut self, py: Python<'_>, messages: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<()> {
        let deadline = deadline(timeout)?;
        let bufs = messages.try_iter()?.map(|m| ReadBuf::get(&m?)).collect::<PyResult<Vec<_>>>()?;
        let slices: Vec<&[u8]> = bufs.iter().map(|b| b.as_slice()).collect();
        let publ = self.get(py)?;
        let mut rest = &slices[..];
        while !rest.is_empty() {
            // Fast path: space now, no GIL round trip.
            let n = match publ.try_send_batch(rest) {
                Ok(n) => n,
                Err(SendError::Full) => loop {
                    let Some(slice) = next_slice(deadline) else { return Err(send_err(py, SendError::Timeout)) };
                    match py.detach(|| publ.send_batch_timeout(rest, slice)) {
                        Ok(n) => break n,
                        Err(SendError::Timeout) => py.check_signals()?,
                        Err(e) => return Err(send_err(py, e)),
                    }
                },
                Err(e) => return Err(send_err(py, e)),
            };
            rest = &rest[n..];
        }
        Ok(())
    }

    /// try_send(data)
    ///
    /// Publishes `data` if there is space now; raises `shmbus.Full` otherwise.
    fn try_send(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let buf = ReadBuf::get(data)?;
        let publ = self.get(py)?;
        publ.try_send(buf.as_slice()).map_err(|e| send_err(py, e))
    }

    /// loan(size, timeout=None) -> Loan
    ///
    /// Claims `size` bytes in the ring to write in place (zero-copy). Write
    /// through `loan.view` (a writable memoryview), then `commit()`; or use
    /// it as a context manager (`with publ.loan(n) as view:`), which commits
    /// when the block ends normally and aborts when it raises. Waits for
    /// space like send() (polling every few hundred microseconds, since a
    /// claim cannot park); the publisher cannot send while a loan is open.
    #[pyo3(signature = (size, timeout=None))]
    fn loan(&mut self, py: Python<'_>, size: usize, timeout: Option<f64>) -> PyResult<PyLoan> {
        let deadline = deadline(timeout)?;
        self.get(py)?;
        let Some(boxed) = self.inner.take() else { unreachable!("get() made sure it is there") };
        let raw: *mut Publisher = Box::into_raw(boxed);
        let mut pause = Duration::from_micros(20);
        let result = loop {
            // SAFETY: `raw` came from Box::into_raw above and nothing else
            // refers to the publisher until it is boxed again (on error below,
            // or by the LentLoan when the loan ends); each failed attempt's
            // borrow ends with the attempt.
            match unsafe { &mut *raw }.try_loan(size) {
                Ok(loan) => break Ok(loan),
                Err(SendError::Full) => {}
                Err(e) => break Err(send_err(py, e)),
            }
            let Some(slice) = next_slice(deadline) else { break Err(send_err(py, SendError::Timeout)) };
            let nap = pause.min(slice);
            py.detach(|| std::thread::sleep(nap));
            pause = (pause * 2).min(Duration::from_millis(1));
            if let Err(e) = py.check_signals() {
                break Err(e);
            }
        };
        let mut loan = match result {
            Ok(l) => l,
            Err(e) => {
                // SAFETY: no loan was made, so `raw` is ours again, once.
                self.inner = Some(unsafe { Box::from_raw(raw) });
                return Err(e);
            }
        };
        let (ptr, len) = (loan.as_mut_ptr(), loan.len());
        let lent = Box::new(LentLoan { loan: Some(loan), publ: raw, home: self.home.clone(), commit: false });
        // SAFETY: the loan's bytes belong to this publisher alone until the
        // loan is committed or aborted, which only the window does (`lent`),
        // after its last export is gone. If the window cannot be made, `lent`
        // is dropped, which aborts the loan and gives the publisher back.
        let win = unsafe { Window::new(py, ptr, len, false, lent) }?;
        Ok(PyLoan { win, view: None, len })
    }

    /// try_loan(size) -> Loan
    ///
    /// Like loan() but raises `shmbus.Full` instead of waiting.
    fn try_loan(&mut self, py: Python<'_>, size: usize) -> PyResult<PyLoan> {
        self.loan(py, size, Some(0.0)).map_err(|e| {
            if e.is_instance_of::<pyo3::exceptions::PyTimeoutError>(py) {
                send_err(py, SendError::Full)
            } else {
                e
            }
        })
    }

    /// flush()
    ///
    /// msync: what was published is durable when the bus directory is on disk.
    fn flush(&mut self, py: Python<'_>) -> PyResult<()> {
        let publ = self.get(py)?;
        publ.flush().map_err(|e| bus_err(py, e))
    }

    /// set_wait_strategy(wait)
    ///
    /// How this publisher waits for space: "busy-spin", "spin-then-park" or "park".
    fn set_wait_strategy(&mut self, py: Python<'_>, wait: &str) -> PyResult<()> {
        let w: WaitStrategy = parse(wait).map_err(|e| bus_err(py, e))?;
        self.get(py)?.set_wait_strategy(w);
        Ok(())
    }

    /// close()
    ///
    /// Detaches from the bus (frees the peer slot; the last peer out removes
    /// a non-persistent bus). Idempotent. An open loan is aborted when it is
    /// finished or garbage-collected.
    fn close(&mut self) {
        self.home.close();
        self.inner = None;
    }

    /// True once close() was called.
    #[getter]
    fn closed(&self) -> bool {
        self.home.is_closed()
    }

    /// The bus name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }
    /// The bus file.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }
    /// This publisher's peer slot.
    #[getter]
    fn slot(&self) -> u32 {
        self.slot
    }
    /// The largest payload, in bytes.
    #[getter]
    fn max_message(&self) -> usize {
        self.max_message
    }
    /// The bus's settings as found in its header (a dict).
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        header_dict(py, &self.info)
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&mut self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmbus.Publisher bus='{}' slot={} {}{}>",
            self.name,
            self.slot,
            self.info.overflow,
            if self.home.is_closed() { " closed" } else { "" }
        )
    }
}

/// A loan: owns the publisher (boxed) while it is open.
struct LentLoan {
    loan: Option<Loan<'static>>,
    publ: *mut Publisher,
    home: Arc<Home<Publisher>>,
    commit: bool,
}

// SAFETY: the loan points into the mapping owned by the boxed publisher,
// which moves with this value; both are only touched with the GIL held.
unsafe impl Send for LentLoan {}

impl Lent for LentLoan {
    fn finish(mut self: Box<Self>, commit: bool) {
        self.commit = commit;
    }
}

impl Drop for LentLoan {
    fn drop(&mut self) {
        if let Some(loan) = self.loan.take() {
            if self.commit {
                // An abandoned loan (held past a peer's unblock timeout) is
                // not reported to Python yet: the message is simply not
                // published, and subscribers count it as abandoned.
                let _ = loan.commit();
            } else {
                drop(loan);
            }
        }
        // SAFETY: `publ` came from Box::into_raw in `loan` and the loan that
        // borrowed it is gone; it is boxed again exactly once, here.
        let publ = unsafe { Box::from_raw(self.publ) };
        self.home.put_back(publ);
    }
}

/// Loan: bytes claimed in the ring, written in place.
///
/// `view` is a writable memoryview of exactly the claimed size. `commit()`
/// publishes, `abort()` publishes nothing (the space becomes padding). Both
/// release `view`, after which using it raises ValueError; they raise
/// BufferError (and leave the loan open) while other buffers made from the
/// view are alive (slices, numpy arrays): release those first. A Loan
/// garbage-collected while open is aborted.
#[pyclass(name = "Loan", module = "shmbus._shmbus")]
pub struct PyLoan {
    win: Window,
    view: Option<Py<PyAny>>,
    len: usize,
}

/// Releases the memoryview handed out (if any), so using it raises.
fn release_view(py: Python<'_>, view: &mut Option<Py<PyAny>>) -> PyResult<()> {
    if let Some(v) = view.take() {
        if let Err(e) = v.bind(py).call_method0("release") {
            *view = Some(v);
            return Err(e);
        }
    }
    Ok(())
}

fn get_view<'py>(py: Python<'py>, win: &Window, view: &mut Option<Py<PyAny>>) -> PyResult<Bound<'py, PyAny>> {
    if let Some(v) = view {
        let v = v.bind(py);
        // The caller may have released it (memoryview.release()): then make another.
        if v.getattr("nbytes").is_ok() {
            return Ok(v.clone());
        }
    }
    let v = win.memoryview(py)?;
    *view = Some(v.clone().unbind());
    Ok(v)
}

#[pymethods]
impl PyLoan {
    /// The claimed bytes as a writable memoryview (format "B").
    #[getter]
    fn view<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        get_view(py, &self.win, &mut self.view)
    }

    /// commit()
    ///
    /// Publishes the written bytes and releases the view.
    fn commit(&mut self, py: Python<'_>) -> PyResult<()> {
        if !self.win.is_open(py) {
            return Err(PyBufferError::new_err("this loan was already committed or aborted"));
        }
        release_view(py, &mut self.view)?;
        self.win.close(py, true)
    }

    /// abort()
    ///
    /// Publishes nothing and releases the view. Idempotent.
    fn abort(&mut self, py: Python<'_>) -> PyResult<()> {
        if !self.win.is_open(py) {
            return Ok(());
        }
        release_view(py, &mut self.view)?;
        self.win.close(py, false)
    }

    /// True while the loan can still be written and committed.
    #[getter]
    fn open(&self, py: Python<'_>) -> bool {
        self.win.is_open(py)
    }

    fn __len__(&self) -> usize {
        self.len
    }

    fn __enter__<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        get_view(py, &self.win, &mut self.view)
    }

    fn __exit__(
        &mut self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        if !self.win.is_open(py) {
            return Ok(false);
        }
        if exc_type.is_none() {
            self.commit(py)?;
        } else if self.abort(py).is_err() {
            // Buffers made from the view are still alive: the loan is
            // aborted when they and this object are gone. The original
            // exception goes on.
        }
        Ok(false)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!("<shmbus.Loan len={}{}>", self.len, if self.win.is_open(py) { "" } else { " finished" })
    }
}

// --------------------------------------------------------------- Subscriber

/// Subscriber(name, *, start="latest", dir=None, capacity=None, max_message=None,
///            overflow=None, persistent=False, mode=None, max_peers=None,
///            wait=None, create=True)
///
/// A subscriber attached to bus `name`. `start` is "latest" (messages
/// published from now on) or "oldest" (everything the ring still holds).
/// The other settings are those of Publisher. Iterating (`for msg in sub`)
/// calls recv() forever. Use it as a context manager, or call close().
#[pyclass(name = "Subscriber", module = "shmbus._shmbus", subclass)]
pub struct PySubscriber {
    inner: Option<Box<Subscriber>>,
    home: Arc<Home<Subscriber>>,
    buf: Vec<u8>,
    last_seq: Option<u64>,
    name: String,
    path: String,
    slot: u32,
    info: shmbus::HeaderInfo,
}

impl PySubscriber {
    /// Receives the next message as a new `bytes`, waiting until `deadline`
    /// in bounded slices (`Some(now)`: no wait at all).
    ///
    /// Block mode borrows the message in place and copies it once, straight
    /// into the `bytes` object (the borrow ends before this returns).
    /// Overwrite mode copies into a reused buffer first, because the ring
    /// must be re-validated after the copy (the Rust `recv_ref` does the
    /// same, with a fresh buffer each time).
    /// `Ok(None)` when the deadline passed.
    fn recv_bytes<'py>(&mut self, py: Python<'py>, deadline: Option<Instant>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let sub = handle(py, &mut self.inner, &self.home, "subscriber", &self.name)?;
        if self.info.overflow == shmbus::Overflow::Block {
            let mut slice = Duration::ZERO; // first: no wait, no GIL round trip
            loop {
                let got = if slice.is_zero() {
                    sub.recv_ref(Some(slice))
                } else {
                    let s = &mut *sub;
                    py.detach(move || AssertSend(s.recv_ref(Some(slice)))).into_inner()
                };
                match got {
                    Ok(m) => {
                        self.last_seq = Some(m.seq());
                        return Ok(Some(PyBytes::new(py, &m)));
                    }
                    Err(RecvError::Timeout) if !slice.is_zero() => py.check_signals()?,
                    Err(RecvError::Timeout) => {}
                    Err(e) => return Err(recv_err(py, e)),
                }
                let Some(next) = next_slice(deadline) else { return Ok(None) };
                slice = next;
            }
        }
        let buf = &mut self.buf;
        let mut slice = Duration::ZERO;
        loop {
            let got = if slice.is_zero() {
                sub.recv_into(buf, Some(slice))
            } else {
                py.detach(|| sub.recv_into(buf, Some(slice)))
            };
            match got {
                Ok(seq) => {
                    self.last_seq = Some(seq);
                    return Ok(Some(PyBytes::new(py, buf)));
                }
                Err(RecvError::Timeout) if !slice.is_zero() => py.check_signals()?,
                Err(RecvError::Timeout) => {}
                Err(e) => return Err(recv_err(py, e)),
            }
            let Some(next) = next_slice(deadline) else { return Ok(None) };
            slice = next;
        }
    }
}

#[pymethods]
impl PySubscriber {
    #[new]
    #[pyo3(signature = (name, *, start="latest", dir=None, capacity=None, max_message=None, overflow=None,
                        persistent=false, mode=None, max_peers=None, wait=None, create=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: &str,
        start: &str,
        dir: Option<PathBuf>,
        capacity: Option<u64>,
        max_message: Option<u32>,
        overflow: Option<&str>,
        persistent: bool,
        mode: Option<u32>,
        max_peers: Option<u32>,
        wait: Option<&str>,
        create: bool,
    ) -> PyResult<Self> {
        let o = settings(dir, capacity, max_message, overflow, persistent, mode, max_peers, wait)
            .map_err(|e| bus_err(py, e))?;
        let start: StartAt = parse(start).map_err(|e| bus_err(py, e))?;
        let s: Subscriber = py.detach(|| open(name, &o, start, create)).map_err(|e| bus_err(py, e))?;
        Ok(PySubscriber {
            name: s.name().to_owned(),
            path: s.path().display().to_string(),
            slot: s.slot(),
            info: s.info().clone(),
            inner: Some(Box::new(s)),
            home: Home::new(),
            buf: Vec::new(),
            last_seq: None,
        })
    }

    /// recv(timeout=None) -> bytes
    ///
    /// The next message. Waits without holding the GIL: forever with
    /// `timeout=None` (Ctrl-C raises KeyboardInterrupt within ~50 ms and
    /// loses nothing: the next recv() returns the next message), else at
    /// most `timeout` seconds (`shmbus.Timeout`). In overwrite mode an
    /// overrun subscriber gets `shmbus.Lagged` (with `.lost`) once, then the
    /// oldest intact message.
    #[pyo3(signature = (timeout=None))]
    fn recv<'py>(&mut self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyBytes>> {
        self.recv_bytes(py, deadline(timeout)?)?.ok_or_else(|| recv_err(py, RecvError::Timeout))
    }

    /// recv_batch(max=1024, timeout=None) -> list[bytes]
    ///
    /// Every message that is ready, up to `max`, as a list (oldest first),
    /// waiting like recv() for the first one (`shmbus.Timeout` after
    /// `timeout` seconds).
    /// The subscriber's progress is published once per call. In overwrite
    /// mode messages lost on the way are added to lost() instead of raising
    /// `shmbus.Lagged`.
    #[pyo3(signature = (max=1024, timeout=None))]
    fn recv_batch<'py>(
        &mut self,
        py: Python<'py>,
        max: usize,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, pyo3::types::PyList>> {
        let deadline = deadline(timeout)?;
        let sub = handle(py, &mut self.inner, &self.home, "subscriber", &self.name)?;
        let out = pyo3::types::PyList::empty(py);
        let mut last = None;
        // Fast path: what is there now, straight into bytes objects.
        let mut err = None;
        let d = sub
            .try_recv_batch(max, |seq, b| {
                last = Some(seq);
                if let Err(e) = out.append(PyBytes::new(py, b)) {
                    err.get_or_insert(e);
                }
            })
            .map_err(|e| recv_err(py, e))?;
        if let Some(e) = err {
            return Err(e);
        }
        if d.messages == 0 && max > 0 {
            loop {
                let Some(slice) = next_slice(deadline) else { return Err(recv_err(py, RecvError::Timeout)) };
                let s = &mut *sub;
                let got = py
                    .detach(move || {
                        let mut v: Vec<(u64, Vec<u8>)> = Vec::new();
                        AssertSend(s.recv_batch(max, Some(slice), |seq, b| v.push((seq, b.to_vec()))).map(|_| v))
                    })
                    .into_inner();
                match got {
                    Ok(v) if !v.is_empty() => {
                        for (seq, b) in v {
                            last = Some(seq);
                            out.append(PyBytes::new(py, &b))?;
                        }
                        break;
                    }
                    Ok(_) => {}
                    Err(RecvError::Timeout) => py.check_signals()?,
                    Err(e) => return Err(recv_err(py, e)),
                }
            }
        }
        if last.is_some() {
            self.last_seq = last;
        }
        Ok(out)
    }

    /// try_recv() -> bytes | None
    ///
    /// The next message if one is there, else None.
    fn try_recv<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        self.recv_bytes(py, Some(Instant::now()))
    }

    /// recv_ref(timeout=None) -> MessageRef
    ///
    /// The next message in place (zero-copy in block mode; a private copy in
    /// overwrite mode, where bytes in the ring may be overwritten at any
    /// time). `ref.view` is a read-only memoryview valid until `release()`
    /// (or the end of a `with` block); publishers cannot reuse the space
    /// meanwhile, so keep it short. Waits like recv().
    #[pyo3(signature = (timeout=None))]
    fn recv_ref(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<PyMessageRef> {
        let deadline = deadline(timeout)?;
        handle(py, &mut self.inner, &self.home, "subscriber", &self.name)?;
        let Some(boxed) = self.inner.take() else { unreachable!("handle() made sure it is there") };
        let raw: *mut Subscriber = Box::into_raw(boxed);
        let mut first = true;
        let result = loop {
            let slice = if first {
                first = false;
                Duration::ZERO
            } else {
                match next_slice(deadline) {
                    Some(s) => s,
                    None => break Err(recv_err(py, RecvError::Timeout)),
                }
            };
            let sub = AssertSend(raw);
            let attempt = move || {
                // SAFETY: `raw` came from Box::into_raw above; nothing else refers
                // to the subscriber until it is boxed again (on error below, or by
                // LentRef when the borrow ends). A Timeout holds no borrow.
                AssertSend(unsafe { &mut *sub.into_inner() }.recv_ref(Some(slice)))
            };
            let r = if slice.is_zero() { attempt() } else { py.detach(attempt) };
            match r.into_inner() {
                Ok(m) => break Ok(m),
                Err(RecvError::Timeout) => {
                    if slice.is_zero() {
                        continue;
                    }
                    if let Err(e) = py.check_signals() {
                        break Err(e);
                    }
                }
                Err(e) => break Err(recv_err(py, e)),
            }
        };
        let mref = match result {
            Ok(m) => m,
            Err(e) => {
                // SAFETY: no borrow was made, so `raw` is ours again, once.
                self.inner = Some(unsafe { Box::from_raw(raw) });
                return Err(e);
            }
        };
        let (seq, ptr, len) = (mref.seq(), mref.as_ptr().cast_mut(), mref.len());
        self.last_seq = Some(seq);
        let lent = Box::new(LentRef { mref: Some(mref), sub: raw, home: self.home.clone() });
        // SAFETY: the bytes stay valid and unwritten (block mode: publishers
        // cannot pass the subscriber's hold; overwrite mode: a private copy)
        // until the MessageRef is dropped, which only the window does, after
        // its last export is gone. Exported read-only.
        let win = unsafe { Window::new(py, ptr, len, true, lent) }?;
        Ok(PyMessageRef { win, view: None, seq, len })
    }

    /// Total messages this subscriber was told it lost (overwrite mode).
    #[getter]
    fn lost(&mut self, py: Python<'_>) -> PyResult<u64> {
        Ok(handle(py, &mut self.inner, &self.home, "subscriber", &self.name)?.lost())
    }

    /// The sequence number (place in the bus's total order) of the last
    /// message received, or None.
    #[getter]
    fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// set_wait_strategy(wait)
    ///
    /// How this subscriber waits: "busy-spin", "spin-then-park" or "park".
    fn set_wait_strategy(&mut self, py: Python<'_>, wait: &str) -> PyResult<()> {
        let w: WaitStrategy = parse(wait).map_err(|e| bus_err(py, e))?;
        handle(py, &mut self.inner, &self.home, "subscriber", &self.name)?.set_wait_strategy(w);
        Ok(())
    }

    /// close()
    ///
    /// Detaches from the bus (frees the peer slot). Idempotent. An open
    /// MessageRef keeps the mapping until it is released or collected.
    fn close(&mut self) {
        self.home.close();
        self.inner = None;
    }

    /// True once close() was called.
    #[getter]
    fn closed(&self) -> bool {
        self.home.is_closed()
    }
    /// The bus name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }
    /// The bus file.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }
    /// This subscriber's peer slot.
    #[getter]
    fn slot(&self) -> u32 {
        self.slot
    }
    /// The largest payload, in bytes.
    #[getter]
    fn max_message(&self) -> u32 {
        self.info.max_message
    }
    /// The bus's settings as found in its header (a dict).
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        header_dict(py, &self.info)
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.recv(py, None)
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&mut self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmbus.Subscriber bus='{}' slot={} {}{}>",
            self.name,
            self.slot,
            self.info.overflow,
            if self.home.is_closed() { " closed" } else { "" }
        )
    }
}

/// A borrowed message: owns the subscriber (boxed) while it is open.
struct LentRef {
    mref: Option<MessageRef<'static>>,
    sub: *mut Subscriber,
    home: Arc<Home<Subscriber>>,
}

// SAFETY: as for LentLoan: the borrow points into the mapping (or a copy)
// owned by the boxed subscriber, which moves with it; GIL-only access.
unsafe impl Send for LentRef {}

impl Lent for LentRef {
    fn finish(self: Box<Self>, _commit: bool) {}
}

impl Drop for LentRef {
    fn drop(&mut self) {
        drop(self.mref.take());
        // SAFETY: `sub` came from Box::into_raw in `recv_ref` and the borrow is
        // gone; it is boxed again exactly once, here.
        let sub = unsafe { Box::from_raw(self.sub) };
        self.home.put_back(sub);
    }
}

/// MessageRef: a received message borrowed in place.
///
/// `view` is a read-only memoryview of the payload, valid until release()
/// (or the end of a `with` block), after which using it raises ValueError.
/// release() raises BufferError (and keeps the message held) while other
/// buffers made from the view are alive: release those first, or copy with
/// bytes(). A MessageRef garbage-collected while open is released once its
/// last buffer is gone. The subscriber cannot receive while it is open.
#[pyclass(name = "MessageRef", module = "shmbus._shmbus")]
pub struct PyMessageRef {
    win: Window,
    view: Option<Py<PyAny>>,
    seq: u64,
    len: usize,
}

#[pymethods]
impl PyMessageRef {
    /// The payload as a read-only memoryview (format "B").
    #[getter]
    fn view<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        get_view(py, &self.win, &mut self.view)
    }

    /// The message's sequence number in the bus's total order.
    #[getter]
    fn seq(&self) -> u64 {
        self.seq
    }

    /// release()
    ///
    /// Gives the space back to publishers and releases the view. Idempotent.
    fn release(&mut self, py: Python<'_>) -> PyResult<()> {
        if !self.win.is_open(py) {
            return Ok(());
        }
        release_view(py, &mut self.view)?;
        self.win.close(py, false)
    }

    /// True until release().
    #[getter]
    fn open(&self, py: Python<'_>) -> bool {
        self.win.is_open(py)
    }

    fn __len__(&self) -> usize {
        self.len
    }

    /// A copy of the payload.
    fn __bytes__<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let v = get_view(py, &self.win, &mut self.view)?;
        let b = v.call_method0("tobytes")?;
        Ok(b.cast_into::<PyBytes>()?)
    }

    fn __enter__<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        get_view(py, &self.win, &mut self.view)
    }

    fn __exit__(
        &mut self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        match self.release(py) {
            Ok(()) => Ok(false),
            // An exception is already on its way: let it go on; the message is
            // released once the buffers made from it are gone.
            Err(_) if exc_type.is_some() => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<shmbus.MessageRef seq={} len={}{}>",
            self.seq,
            self.len,
            if self.win.is_open(py) { "" } else { " released" }
        )
    }
}
