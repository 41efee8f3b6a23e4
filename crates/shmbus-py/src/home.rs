//! Where a handle lives while Python has lent part of it out.
//!
//! A `Loan` (publisher) or `MessageRef` (subscriber) borrows its handle
//! mutably for as long as it lives. Python objects have no lifetimes, so the
//! Python handle gives its `Box<Publisher>`/`Box<Subscriber>` away to the
//! window for that time (calls on it raise meanwhile) and the window puts it
//! back here when the loan or borrow ends, or drops it if the Python handle
//! was closed meanwhile. The lock is only ever held for a swap, never across
//! a wait or a call into Python.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The return address of a lent handle.
pub struct Home<T> {
    slot: Mutex<Option<Box<T>>>,
    closed: AtomicBool,
}

impl<T> Home<T> {
    pub fn new() -> Arc<Self> {
        Arc::new(Home { slot: Mutex::new(None), closed: AtomicBool::new(false) })
    }

    /// Gives a lent handle back (or drops it: detach, when closed).
    pub fn put_back(&self, handle: Box<T>) {
        // Relaxed: the flag and the slot are only used under the GIL.
        if self.closed.load(Ordering::Relaxed) {
            drop(handle);
            return;
        }
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
    }

    /// Takes a handle given back, if any.
    pub fn take(&self) -> Option<Box<T>> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// From now on, handles given back are dropped.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        drop(self.take());
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}
