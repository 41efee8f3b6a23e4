//! The buffer protocol, both ways, under the stable ABI of Python 3.9.
//!
//! PyO3 exposes `PyObject_GetBuffer` and `__getbuffer__` only when it builds
//! for the limited API of 3.11 or later, because these functions entered the
//! *limited* API in 3.11. They have been part of CPython's ABI, with this
//! exact `Py_buffer` layout, since 3.3, and `PyType_FromSpec` accepts the
//! `bf_getbuffer`/`bf_releasebuffer` slots since 3.9. So this module declares
//! the few functions it needs itself; the symbols are resolved against the
//! interpreter that imports the extension, as every other `Py*` symbol is.
//!
//! Two directions:
//! - [`ReadBuf`]: borrow the bytes of any object with the buffer protocol
//!   (bytes, bytearray, memoryview, array.array, numpy arrays) without a copy.
//! - [`Window`]: an object (`shmbus.BufferWindow`) that exports a piece of
//!   the ring (a loan, writable; a borrowed message, read-only) and *counts*
//!   its exports. Closing a window is refused while any export is alive, and
//!   a closed window refuses new exports, so no Python object can ever reach
//!   ring bytes after the loan was committed or the message released.

use std::ffi::{c_int, c_uint, c_void};
use std::ptr;

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// `Py_buffer` (Include/pybuffer.h, unchanged since Python 3.3).
#[repr(C)]
pub struct RawBuffer {
    buf: *mut c_void,
    obj: *mut ffi::PyObject,
    len: ffi::Py_ssize_t,
    itemsize: ffi::Py_ssize_t,
    readonly: c_int,
    ndim: c_int,
    format: *mut std::ffi::c_char,
    shape: *mut ffi::Py_ssize_t,
    strides: *mut ffi::Py_ssize_t,
    suboffsets: *mut ffi::Py_ssize_t,
    internal: *mut c_void,
}

const PYBUF_SIMPLE: c_int = 0;

extern "C" {
    fn PyObject_GetBuffer(obj: *mut ffi::PyObject, view: *mut RawBuffer, flags: c_int) -> c_int;
    fn PyBuffer_Release(view: *mut RawBuffer);
    fn PyBuffer_FillInfo(
        view: *mut RawBuffer,
        obj: *mut ffi::PyObject,
        buf: *mut c_void,
        len: ffi::Py_ssize_t,
        readonly: c_int,
        flags: c_int,
    ) -> c_int;
}

/// The bytes of a Python object with the buffer protocol, borrowed (no copy)
/// until this is dropped. It carries the `Python` token, so it cannot be
/// moved into code that runs without the GIL; its slice can.
pub struct ReadBuf<'py> {
    view: RawBuffer,
    _py: Python<'py>,
}

impl<'py> ReadBuf<'py> {
    /// Asks `obj` for a simple (C-contiguous, byte-addressed) buffer. A
    /// non-contiguous array or an object without the protocol raises
    /// `BufferError`/`TypeError` from Python itself.
    pub fn get(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        let mut view = std::mem::MaybeUninit::<RawBuffer>::zeroed();
        // SAFETY: we hold the GIL (`obj` is bound); `view` is writable memory of
        // the right layout; on failure nothing needs releasing.
        let rc = unsafe { PyObject_GetBuffer(obj.as_ptr(), view.as_mut_ptr(), PYBUF_SIMPLE) };
        if rc != 0 {
            return Err(PyErr::fetch(obj.py()));
        }
        // SAFETY: PyObject_GetBuffer succeeded, so it filled `view`.
        Ok(ReadBuf { view: unsafe { view.assume_init() }, _py: obj.py() })
    }

    /// The exported bytes.
    pub fn as_slice(&self) -> &[u8] {
        let len = usize::try_from(self.view.len).unwrap_or(0);
        if len == 0 || self.view.buf.is_null() {
            return &[];
        }
        // SAFETY: a simple buffer is `len` contiguous bytes at `buf`, kept alive
        // and unmoved by the exporter until PyBuffer_Release (in Drop). Python
        // code in another thread could write to a mutable buffer meanwhile,
        // as it can during any C function that reads it; that changes which
        // bytes are sent, never their bounds.
        unsafe { std::slice::from_raw_parts(self.view.buf as *const u8, len) }
    }
}

impl Drop for ReadBuf<'_> {
    fn drop(&mut self) {
        // SAFETY: the view was filled by PyObject_GetBuffer and is released once;
        // the `Python<'py>` field proves the GIL is held here.
        unsafe { PyBuffer_Release(&mut self.view) }
    }
}

/// What a window lends out: finishing it commits or aborts a loan, or
/// releases a borrowed message, and gives the handle back to its owner.
pub trait Lent: Send {
    /// Ends the loan (commit when `commit`, else abort) or the borrow.
    fn finish(self: Box<Self>, commit: bool);
}

/// The instance layout of `shmbus.BufferWindow`.
#[repr(C)]
struct WindowObject {
    ob_base: ffi::PyObject,
    ptr: *mut u8,
    len: ffi::Py_ssize_t,
    readonly: c_int,
    /// Non-zero while new exports are allowed.
    open: c_int,
    /// Live exports (memoryviews and the objects made from them).
    exports: ffi::Py_ssize_t,
    lent: Option<Box<dyn Lent>>,
}

unsafe extern "C" fn window_getbuffer(obj: *mut ffi::PyObject, view: *mut RawBuffer, flags: c_int) -> c_int {
    let w = obj.cast::<WindowObject>();
    // SAFETY: CPython calls this slot with the GIL held and `obj` an instance
    // of the window type, so `w` points to a live WindowObject we may access.
    unsafe {
        if (*w).open == 0 {
            (*view).obj = ptr::null_mut();
            ffi::PyErr_SetString(
                ffi::PyExc_BufferError,
                c"this shmbus buffer was released (the loan was committed or aborted, or the message released)"
                    .as_ptr(),
            );
            return -1;
        }
        let rc = PyBuffer_FillInfo(view, obj, (*w).ptr.cast(), (*w).len, (*w).readonly, flags);
        if rc == 0 {
            (*w).exports += 1;
        }
        rc
    }
}

unsafe extern "C" fn window_releasebuffer(obj: *mut ffi::PyObject, _view: *mut RawBuffer) {
    // SAFETY: as in window_getbuffer; called once per successful export.
    unsafe { (*obj.cast::<WindowObject>()).exports -= 1 }
}

unsafe extern "C" fn window_dealloc(obj: *mut ffi::PyObject) {
    let w = obj.cast::<WindowObject>();
    // SAFETY: CPython calls tp_dealloc once, with the GIL held, when the last
    // reference is gone (so no export is alive: each holds a reference). We
    // finish what was lent (abort a loan, release a borrow), drop the Rust
    // field in place, free the memory with the type's tp_free and drop the
    // reference every heap-type instance holds on its type.
    unsafe {
        (*w).open = 0;
        if let Some(lent) = ptr::replace(&raw mut (*w).lent, None) {
            lent.finish(false);
        }
        let tp = ffi::Py_TYPE(obj);
        let free = ffi::PyType_GetSlot(tp, ffi::Py_tp_free);
        if !free.is_null() {
            let free: ffi::freefunc = std::mem::transmute::<*mut c_void, ffi::freefunc>(free);
            free(obj.cast());
        }
        ffi::Py_DECREF(tp.cast());
    }
}

static WINDOW_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// The `shmbus.BufferWindow` type, created on first use.
pub fn window_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    WINDOW_TYPE
        .get_or_try_init(py, || {
            let mut slots = [
                ffi::PyType_Slot { slot: ffi::Py_bf_getbuffer, pfunc: window_getbuffer as *mut c_void },
                ffi::PyType_Slot { slot: ffi::Py_bf_releasebuffer, pfunc: window_releasebuffer as *mut c_void },
                ffi::PyType_Slot { slot: ffi::Py_tp_dealloc, pfunc: window_dealloc as *mut c_void },
                ffi::PyType_Slot {
                    slot: ffi::Py_tp_doc,
                    pfunc: c"A piece of a shmbus ring lent to Python (see Loan and MessageRef).".as_ptr()
                        as *mut c_void,
                },
                ffi::PyType_Slot { slot: 0, pfunc: ptr::null_mut() },
            ];
            let mut spec = ffi::PyType_Spec {
                name: c"shmbus._shmbus.BufferWindow".as_ptr(),
                basicsize: c_int::try_from(std::mem::size_of::<WindowObject>()).expect("small struct"),
                itemsize: 0,
                flags: ffi::Py_TPFLAGS_DEFAULT as c_uint,
                slots: slots.as_mut_ptr(),
            };
            // SAFETY: the spec and slots are valid for the call (CPython copies
            // the slots; `name` is a static string, as the type keeps it).
            let tp = unsafe { ffi::PyType_FromSpec(&mut spec) };
            // SAFETY: a new reference or NULL with an exception set.
            let tp = unsafe { Bound::from_owned_ptr_or_err(py, tp) }?;
            Ok::<_, PyErr>(tp.cast_into::<PyType>()?.unbind())
        })
        .map(|t| t.bind(py))
}

/// A strong reference to a `BufferWindow` that Rust created and controls.
pub struct Window(Py<PyAny>);

impl Window {
    /// Lends `len` bytes at `ptr` to Python until [`close`](Self::close).
    ///
    /// # Safety
    /// The bytes must stay valid (and, unless `readonly`, writable by this
    /// process alone) until `lent` is finished, which happens only through
    /// `close` or the window's deallocation, after every export is gone.
    pub unsafe fn new(py: Python<'_>, ptr: *mut u8, len: usize, readonly: bool, lent: Box<dyn Lent>) -> PyResult<Self> {
        let tp = window_type(py)?;
        let len = ffi::Py_ssize_t::try_from(len).map_err(|_| PyBufferError::new_err("buffer too large"))?;
        // SAFETY: `tp` is a live type object; GenericAlloc returns a zeroed
        // instance (refcount 1, a reference to its type) or NULL with an error.
        let obj = unsafe { ffi::PyType_GenericAlloc(tp.as_ptr().cast(), 0) };
        // SAFETY: as just said.
        let obj = unsafe { Bound::from_owned_ptr_or_err(py, obj) }?;
        let w = obj.as_ptr().cast::<WindowObject>();
        // SAFETY: `w` is a fresh, zeroed WindowObject only we know; `lent` is
        // written without dropping the zeroed (None) value in place.
        unsafe {
            (*w).ptr = ptr;
            (*w).len = len;
            (*w).readonly = c_int::from(readonly);
            (*w).exports = 0;
            ptr::write(&raw mut (*w).lent, Some(lent));
            (*w).open = 1;
        }
        Ok(Window(obj.unbind()))
    }

    fn raw(&self) -> *mut WindowObject {
        self.0.as_ptr().cast()
    }

    /// Live exports of the window.
    pub fn exports(&self, _py: Python<'_>) -> isize {
        // SAFETY: the GIL is held (token) and we hold a reference.
        unsafe { (*self.raw()).exports }
    }

    /// Whether the loan or borrow is still open.
    pub fn is_open(&self, _py: Python<'_>) -> bool {
        // SAFETY: as in `exports`.
        unsafe { (*self.raw()).open != 0 }
    }

    /// A new memoryview over the window (an export until it is released).
    pub fn memoryview<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        // SAFETY: GIL held; returns a new reference or NULL with an error.
        unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyMemoryView_FromObject(self.0.as_ptr())) }
    }

    /// Ends the loan or borrow. Refused with `BufferError` while exports live.
    pub fn close(&self, py: Python<'_>, commit: bool) -> PyResult<()> {
        let n = self.exports(py);
        if n > 0 {
            return Err(PyBufferError::new_err(format!(
                "{n} buffer(s) made from this shmbus view are still alive (a memoryview slice, a numpy array, ...): \
                 release them (del, or memoryview.release()) first; copy with bytes(view) to keep the data"
            )));
        }
        let w = self.raw();
        // SAFETY: GIL held; no export is alive, so after `open = 0` nothing can
        // reach the bytes any more and the lent handle may be finished.
        let lent = unsafe {
            (*w).open = 0;
            ptr::replace(&raw mut (*w).lent, None)
        };
        if let Some(lent) = lent {
            lent.finish(commit);
        }
        Ok(())
    }
}
