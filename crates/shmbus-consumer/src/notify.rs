//! Waiting without blocking a thread: an eventfd for poll/epoll/mio loops
//! (always available) and, with the `async` feature, futures and a
//! `Stream`. Both go through the process's one waiter thread
//! (docs/async.md).

use std::os::fd::RawFd;

use crate::{RecvError, Subscriber};

impl Subscriber {
    /// A file descriptor (an eventfd, created on first use and closed with
    /// the subscriber) that becomes readable when a message may be ready,
    /// for `poll`/`epoll`/mio loops and `tokio::io::unix::AsyncFd`.
    ///
    /// The re-arm rule: drain with [`Subscriber::try_recv`] until it returns
    /// `Ok(None)`, then call [`Subscriber::arm_event_fd`]; when that returns
    /// `true`, drain again (a message came in between), else wait for the fd
    /// to be readable, and start over. No wake-up is lost: arming clears the
    /// fd, announces the subscriber to publishers and re-checks the ring, in
    /// that order. The fd may also become readable with nothing to read
    /// (every 20 ms while a publisher's message is half-written, so that the
    /// next arm can look after a dead or stopped publisher); draining finds
    /// nothing and you arm again.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmbus::{BusConfig, Publisher, StartAt, Subscriber};
    /// # let dir = tempfile::tempdir()?;
    /// # let cfg = BusConfig::default().dir(dir.path());
    /// let mut sub = Subscriber::open_or_create("ticks", &cfg, StartAt::Latest)?;
    /// let fd = sub.event_fd()?;
    /// let mut publ = Publisher::open_or_create("ticks", &cfg)?;
    /// let mut got = 0;
    /// publ.send(b"tick")?;
    /// while got < 1 {
    ///     while let Some(_msg) = sub.try_recv()? {
    ///         got += 1;
    ///     }
    ///     if sub.arm_event_fd()? {
    ///         continue; // something came in while arming: drain again
    ///     }
    ///     let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    ///     // SAFETY: one valid pollfd.
    ///     unsafe { libc::poll(&mut pfd, 1, 1000) };
    /// }
    /// # Ok(()) }
    /// ```
    pub fn event_fd(&mut self) -> Result<RawFd, RecvError> {
        Ok(self.raw.event_fd()?)
    }

    /// Arms the eventfd of [`Subscriber::event_fd`] (creating it if needed):
    /// clears it, and makes it readable when a message may be ready. Returns
    /// `true` when one may be ready already: drain again instead of waiting.
    /// See [`Subscriber::event_fd`] for the whole rule.
    pub fn arm_event_fd(&mut self) -> Result<bool, RecvError> {
        self.event_fd()?;
        Ok(self.raw.arm(None))
    }

    /// Withdraws any arm (eventfd or future): the subscriber stops being
    /// announced to publishers and the waiter thread forgets it. Dropping the
    /// subscriber does the same.
    pub fn disarm(&mut self) {
        self.raw.disarm();
    }
}

#[cfg(feature = "async")]
mod futures {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use crate::{Message, RecvError, Subscriber};

    impl Subscriber {
        /// Polls for the next message: `Ready` with it (or an error), or
        /// `Pending` with `cx`'s waker registered with the process's waiter
        /// thread. A message is only taken out of the ring when `Ready` is
        /// returned, so dropping the caller between polls loses nothing;
        /// call [`Subscriber::disarm`] (or poll again, or drop the
        /// subscriber) to withdraw the registration.
        pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Message, RecvError>> {
            // Bounded: each round either returns or armed found data that a
            // read then takes; a stream of padding frames ends in a read.
            for _ in 0..64 {
                match self.try_recv() {
                    Ok(Some(m)) => return Poll::Ready(Ok(m)),
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
                if !self.raw.arm(Some(cx.waker())) {
                    return Poll::Pending;
                }
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }

        /// Receives the next message without blocking a thread.
        ///
        /// Cancellation-safe: dropping the future before it completes (in a
        /// `select!` branch that lost, or on a timeout) loses no message (a
        /// message leaves the ring only in the poll that returns it) and
        /// leaves nothing registered (the drop withdraws the subscriber from
        /// the bus's waiter accounting and from the waiter thread).
        ///
        /// ```
        /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
        /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        /// # rt.block_on(async {
        /// use shmbus::{BusConfig, Publisher, StartAt, Subscriber};
        /// # let dir = tempfile::tempdir()?;
        /// # let cfg = BusConfig::default().dir(dir.path());
        /// let mut sub = Subscriber::open_or_create("orders", &cfg, StartAt::Latest)?;
        /// let mut publ = Publisher::open_or_create("orders", &cfg)?;
        /// publ.send(b"buy 1")?;
        /// let msg = sub.recv_async().await?;
        /// assert_eq!(&msg[..], b"buy 1");
        /// # Ok::<(), Box<dyn std::error::Error>>(()) })?;
        /// # Ok(()) }
        /// ```
        pub fn recv_async(&mut self) -> Recv<'_> {
            Recv { sub: self }
        }

        /// Receives a plain-old-data value without blocking a thread
        /// (cancellation-safe as [`Subscriber::recv_async`]).
        pub async fn recv_pod_async<T: bytemuck::Pod>(&mut self) -> Result<T, RecvError> {
            let msg = self.recv_async().await?;
            crate::pod_from(&msg)
        }

        /// Receives a serde value without blocking a thread
        /// (cancellation-safe as [`Subscriber::recv_async`]).
        #[cfg(feature = "serde")]
        pub async fn recv_serde_async<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, RecvError> {
            let msg = self.recv_async().await?;
            crate::serde_from(&msg)
        }

        /// The messages as a `futures_core::Stream` (never ends by itself;
        /// errors are items). Dropping it between items loses nothing and
        /// withdraws its registration.
        ///
        /// ```
        /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
        /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        /// # rt.block_on(async {
        /// use futures_core::Stream;
        /// use shmbus::{BusConfig, Publisher, StartAt, Subscriber};
        /// # let dir = tempfile::tempdir()?;
        /// # let cfg = BusConfig::default().dir(dir.path());
        /// let mut sub = Subscriber::open_or_create("orders", &cfg, StartAt::Latest)?;
        /// let mut publ = Publisher::open_or_create("orders", &cfg)?;
        /// publ.send(b"a")?;
        /// publ.send(b"b")?;
        /// let mut stream = sub.stream();
        /// let mut stream = std::pin::Pin::new(&mut stream);
        /// for want in [b"a", b"b"] {
        ///     let msg = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await.unwrap()?;
        ///     assert_eq!(&msg[..], want);
        /// }
        /// # Ok::<(), Box<dyn std::error::Error>>(()) })?;
        /// # Ok(()) }
        /// ```
        pub fn stream(&mut self) -> MessageStream<'_> {
            MessageStream { sub: self }
        }
    }

    /// The future of [`Subscriber::recv_async`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct Recv<'a> {
        sub: &'a mut Subscriber,
    }

    impl Future for Recv<'_> {
        type Output = Result<Message, RecvError>;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let r = self.sub.poll_recv(cx);
            if r.is_ready() {
                self.sub.disarm();
            }
            r
        }
    }

    impl Drop for Recv<'_> {
        fn drop(&mut self) {
            self.sub.disarm();
        }
    }

    /// The stream of [`Subscriber::stream`].
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct MessageStream<'a> {
        sub: &'a mut Subscriber,
    }

    impl futures_core::Stream for MessageStream<'_> {
        type Item = Result<Message, RecvError>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            // Stays announced between items: a busy stream does not pay an
            // announce and withdraw per message.
            self.sub.poll_recv(cx).map(Some)
        }
    }

    impl Drop for MessageStream<'_> {
        fn drop(&mut self) {
            self.sub.disarm();
        }
    }
}

#[cfg(feature = "async")]
pub use futures::{MessageStream, Recv};
