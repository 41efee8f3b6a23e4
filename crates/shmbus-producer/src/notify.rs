//! Sending without blocking a thread (the `async` feature): a future that
//! waits for space through the process's one waiter thread (docs/async.md).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::{MessageType, Publisher, SendError, TypeKind};

/// How often a waiting send looks after the peer holding it back (the slice
/// of the blocking wait, which looks around as often).
const LOOK_EVERY: Duration = Duration::from_millis(20);

impl Publisher {
    /// Publishes `bytes`, waiting for space (block mode) without blocking a
    /// thread: the task is woken when a subscriber frees space (the bus's
    /// space futex, through the process's waiter thread) and at least every
    /// 20 ms, when it re-tries and looks after the peer holding it back
    /// exactly as the blocking [`Publisher::send`] does: it reaps a dead
    /// peer, abandons another publisher's claim left unfinished longer than
    /// the unblock timeout ([`BusConfig::unblock_timeout`], default 1 s),
    /// evicts a subscriber that holds it back longer than the bus's
    /// [`BusConfig::evict_after`] (when the bus has that policy), records in
    /// that subscriber's slot since when it holds publishers back (`inspect`),
    /// and names a peer that held it back for a second or more in
    /// [`Publisher::blocked_by`]. Those times count from when the peer first
    /// held this publisher back, across polls and across dropped futures,
    /// until a send succeeds. See docs/async.md.
    ///
    /// [`BusConfig::unblock_timeout`]: crate::BusConfig::unblock_timeout
    /// [`BusConfig::evict_after`]: crate::BusConfig::evict_after
    ///
    /// Cancellation-safe: the message is published in the poll that returns
    /// `Ready(Ok)`, or not at all; dropping the future before withdraws its
    /// registration (no bit or count left in the bus's waiter accounting).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// # rt.block_on(async {
    /// use shmbus::{BusConfig, Publisher};
    /// # let dir = tempfile::tempdir()?;
    /// # let cfg = BusConfig::default().dir(dir.path());
    /// let mut publ = Publisher::open_or_create("orders", &cfg)?;
    /// publ.send_async(b"buy 1").await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(()) })?;
    /// # Ok(()) }
    /// ```
    pub fn send_async<'a>(&'a mut self, bytes: &'a [u8]) -> SendAsync<'a> {
        SendAsync { publ: self, bytes, last_look: None }
    }

    /// Publishes a plain-old-data value without blocking a thread
    /// (cancellation-safe as [`Publisher::send_async`]).
    pub async fn send_pod_async<T: bytemuck::Pod>(&mut self, value: &T) -> Result<(), SendError> {
        if let Some(d) = &self.declared {
            let same = d.kind() == TypeKind::Pod
                && d.size() as usize == std::mem::size_of::<T>()
                && d.align() as usize == std::mem::align_of::<T>();
            if !same {
                return Err(SendError::WrongType {
                    declared: d.to_string(),
                    sent: MessageType::pod::<T>().to_string(),
                });
            }
        }
        self.send_async(bytemuck::bytes_of(value)).await
    }

    /// Publishes a serde value (bincode 2, standard configuration) without
    /// blocking a thread (cancellation-safe as [`Publisher::send_async`]).
    #[cfg(feature = "serde")]
    pub async fn send_serde_async<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SendError> {
        let bytes = bincode::serde::encode_to_vec(value, bincode::config::standard())
            .map_err(|e| SendError::Encode(e.to_string()))?;
        self.send_async(&bytes).await
    }
}

/// The future of [`Publisher::send_async`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct SendAsync<'a> {
    publ: &'a mut Publisher,
    bytes: &'a [u8],
    last_look: Option<Instant>,
}

impl Future for SendAsync<'_> {
    type Output = Result<(), SendError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut armed = false;
        loop {
            match this.publ.try_send(this.bytes) {
                Err(SendError::Full) => {}
                r => {
                    this.publ.raw.disarm_space();
                    return Poll::Ready(r);
                }
            }
            if armed {
                return Poll::Pending;
            }
            let now = Instant::now();
            match this.last_look {
                None => this.last_look = Some(now),
                Some(t) if now.duration_since(t) >= LOOK_EVERY => {
                    this.publ.raw.look_around();
                    this.last_look = Some(now);
                }
                Some(_) => {}
            }
            // Announce, then re-try above (the re-check of the handshake).
            this.publ.raw.arm_space(cx.waker());
            armed = true;
        }
    }
}

impl Drop for SendAsync<'_> {
    fn drop(&mut self) {
        self.publ.raw.disarm_space();
    }
}
