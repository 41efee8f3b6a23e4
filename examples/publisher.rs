//! Publishes a numbered line every 100 ms on the bus `hello`, then stays
//! until the subscribers present (or one that comes) have read them all.
//!
//! Run it beside `examples/subscriber.rs`, in two terminals, in either order:
//! ```text
//! cargo run --example subscriber
//! cargo run --example publisher
//! ```
use std::time::Duration;

use shmbus::{BusConfig, Publisher};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = BusConfig::default(); // $SHMBUS_DIR, else /dev/shm/shmbus-<uid>
    let mut publ = Publisher::open_or_create("hello", &cfg)?;
    println!("publishing on {}", publ.path().display());
    let count: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    for i in 0..count {
        let line = format!("hello #{i}");
        publ.send(line.as_bytes())?;
        println!("sent {line}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Dropping the last handle removes the bus with its unread messages:
    // linger until they are read (at most 10 s).
    match publ.linger(Duration::from_secs(10)) {
        Ok(()) => println!("all read"),
        Err(_) => println!("nobody read them within 10 s"),
    }
    Ok(())
}
