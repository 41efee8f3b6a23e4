//! The queue between Zenoh's receive path and the thread that publishes to
//! the bus: bounded in bytes, so a bus that stays full pushes back on Zenoh
//! (its receive task waits in [`Inbox::push`]) instead of growing memory.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use zenoh::bytes::ZBytes;

use crate::marker::Marker;

/// A sample waiting for space on the bus.
#[derive(Debug)]
pub struct Item {
    /// Its payload.
    pub payload: ZBytes,
    /// The sending bridge's marker, if it came from a bridge.
    pub marker: Option<Marker>,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Item>,
    bytes: usize,
}

/// A byte-bounded FIFO between one producer (Zenoh's callback) and one consumer.
#[derive(Debug)]
pub struct Inbox {
    q: Mutex<Queue>,
    changed: Condvar,
    budget: usize,
}

/// How long one wait lasts before the stop flag is looked at again.
const SLICE: Duration = Duration::from_millis(50);

impl Inbox {
    /// The payload bytes queued now.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// An inbox holding at most `budget` payload bytes (one item always fits).
    pub fn new(budget: usize) -> Inbox {
        Inbox { q: Mutex::new(Queue::default()), changed: Condvar::new(), budget }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.q.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `item`, waiting while the inbox is over budget (back-pressure)
    /// unless `stop` is set. Returns the bytes queued after the push.
    pub fn push(&self, item: Item, stop: &AtomicBool) -> usize {
        let len = item.payload.len();
        let mut q = self.lock();
        while !q.items.is_empty() && q.bytes.saturating_add(len) > self.budget && !stop.load(Ordering::Relaxed) {
            q = self.changed.wait_timeout(q, SLICE).unwrap_or_else(|p| p.into_inner()).0;
        }
        q.bytes = q.bytes.saturating_add(len);
        q.items.push_back(item);
        self.changed.notify_all();
        q.bytes
    }

    /// Takes the oldest item, waiting at most `timeout`.
    pub fn pop(&self, timeout: Duration) -> Option<(Item, usize)> {
        let deadline = Instant::now() + timeout;
        let mut q = self.lock();
        loop {
            if let Some(item) = q.items.pop_front() {
                q.bytes = q.bytes.saturating_sub(item.payload.len());
                self.changed.notify_all();
                let left = q.bytes;
                return Some((item, left));
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            q = self.changed.wait_timeout(q, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn item(n: usize) -> Item {
        Item { payload: ZBytes::from(vec![0u8; n]), marker: None }
    }

    #[test]
    fn fifo_order_and_byte_accounting() {
        let stop = AtomicBool::new(false);
        let inbox = Inbox::new(100);
        assert_eq!(inbox.push(item(10), &stop), 10);
        assert_eq!(inbox.push(item(20), &stop), 30);
        let (a, left) = inbox.pop(Duration::ZERO).unwrap();
        assert_eq!((a.payload.len(), left), (10, 20));
        assert_eq!(inbox.pop(Duration::ZERO).unwrap().0.payload.len(), 20);
        assert!(inbox.pop(Duration::from_millis(1)).is_none());
        // An item larger than the budget still fits in an empty inbox.
        assert_eq!(inbox.push(item(1000), &stop), 1000);
    }

    #[test]
    fn a_full_inbox_holds_the_pusher_until_the_consumer_takes() {
        let stop = Arc::new(AtomicBool::new(false));
        let inbox = Arc::new(Inbox::new(10));
        inbox.push(item(10), &stop);
        let pushed = Arc::new(AtomicBool::new(false));
        let t = {
            let (inbox, stop, pushed) = (Arc::clone(&inbox), Arc::clone(&stop), Arc::clone(&pushed));
            std::thread::spawn(move || {
                inbox.push(item(5), &stop);
                pushed.store(true, Ordering::SeqCst);
            })
        };
        // The pusher cannot complete before the first item is taken (this
        // holds whenever it is checked), and then it does.
        assert!(!pushed.load(Ordering::SeqCst));
        let (first, _) = inbox.pop(Duration::from_secs(30)).expect("first item");
        assert_eq!(first.payload.len(), 10);
        let (second, _) = inbox.pop(Duration::from_secs(30)).expect("the blocked push completed");
        assert_eq!(second.payload.len(), 5);
        t.join().unwrap();
        assert!(pushed.load(Ordering::SeqCst));
    }
}
