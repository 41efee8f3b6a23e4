//! Publishes a numbered line every 100 ms on the bus `hello`.
//!
//! Run it beside `examples/subscriber.rs`, in two terminals:
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
    Ok(())
}
