//! A subscriber in a plain `poll(2)` loop, without any async runtime: the
//! subscriber's eventfd becomes readable when a message may be ready. The
//! same fd works with epoll, mio or `tokio::io::unix::AsyncFd`.
//!
//! The re-arm rule: drain with `try_recv` until `None`, then
//! `arm_event_fd()`; if that says `true` drain again, else wait for the fd.
//!
//! A publisher thread stands in for another process here.
//! ```text
//! cargo run --example epoll
//! ```
use std::time::Duration;

use shmbus::{BusConfig, Publisher, StartAt, Subscriber};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = BusConfig::default();
    let name = format!("ticks-{}", std::process::id());
    let mut sub = Subscriber::open_or_create(&name, &cfg, StartAt::Latest)?;
    let fd = sub.event_fd()?;

    let mut publ = Publisher::open_or_create(&name, &cfg)?;
    let writer = std::thread::spawn(move || -> Result<(), shmbus::SendError> {
        for i in 0..5 {
            std::thread::sleep(Duration::from_millis(30));
            publ.send(format!("tick {i}").as_bytes())?;
        }
        publ.send(b"end")
    });

    let mut polls = 0;
    'outer: loop {
        // 1. Drain everything there is.
        while let Some(msg) = sub.try_recv()? {
            if &msg[..] == b"end" {
                break 'outer;
            }
            println!("got {}", String::from_utf8_lossy(&msg));
        }
        // 2. Re-arm; `true` means something arrived meanwhile: drain again.
        if sub.arm_event_fd()? {
            continue;
        }
        // 3. Wait for the fd (with other fds of your loop, in real programs).
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, alive for the call.
        let n = unsafe { libc::poll(&mut pfd, 1, 1000) };
        if n == 0 {
            println!("nothing for 1 s");
        }
        polls += 1;
    }
    writer.join().expect("publisher thread")?;
    println!("end after {polls} polls");
    Ok(())
}
