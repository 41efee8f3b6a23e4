//! Prints every message published on the bus `hello` (from the oldest one the
//! bus holds) until none arrives for 5 s.
//!
//! Run it beside `examples/publisher.rs`, in two terminals, in either order:
//! ```text
//! cargo run --example subscriber
//! cargo run --example publisher
//! ```
use std::time::Duration;

use shmbus::{BusConfig, RecvError, StartAt, Subscriber};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = BusConfig::default();
    let mut sub = Subscriber::open_or_create("hello", &cfg, StartAt::Oldest)?;
    println!("listening on {}", sub.path().display());
    sub.wait_for_publishers(1, Duration::from_secs(30))?;
    loop {
        match sub.recv_timeout(Duration::from_secs(5)) {
            Ok(msg) => println!("got {} (seq {})", String::from_utf8_lossy(&msg), msg.seq()),
            Err(RecvError::Timeout) => break,
            Err(RecvError::Lagged { lost }) => println!("(lost {lost} messages)"),
            Err(e) => return Err(e.into()),
        }
    }
    println!("no message for 5 s; bye");
    Ok(())
}
