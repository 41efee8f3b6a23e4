//! A sensor: publishes `Reading`s (a `#[derive(Pod)]` struct) at 10 kHz on
//! the bus `readings`, declaring their type, then stays until the logger has
//! read them all. Start it before or after `examples/logger.rs`:
//! ```text
//! cargo run --release --example logger      # terminal 1 (or second)
//! cargo run --release --example sensor      # terminal 2 (or first)
//! cargo run --example sensor -- --serde     # the serde variant (the logger needs --serde too)
//! ```
//! A logger that declares the other type (one with `--serde`, one without)
//! is refused when it attaches, naming both types.
use std::time::{Duration, Instant};

use shmbus::{BusConfig, MessageType, Publisher};

#[path = "shared/sensor_types.rs"]
mod sensor_types;
use sensor_types::{Args, Reading, Sample};

fn main() {
    if let Err(e) = run() {
        eprintln!("sensor: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let kind = if args.serde { MessageType::serde::<Sample>() } else { MessageType::pod::<Reading>() };
    // $SHMBUS_DIR, else /dev/shm/shmbus-<uid>; the default sizes hold 16384
    // readings, so a logger started after a 10000-reading run gets them all.
    let cfg = BusConfig::default().message_type(kind.clone());
    let mut publ = Publisher::open_or_create(&args.bus, &cfg)?;
    println!("sensor: publishing {} as {kind} on {}", args.count, publ.path().display());

    let start = Instant::now();
    let period = Duration::from_secs_f64(1.0 / args.rate);
    for seq in 0..args.count {
        // Paced against the start, so a late wake-up is made up for.
        let due = start + period * seq as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let micros = start.elapsed().as_micros() as u64;
        let celsius = 20.0 + (seq % 100) as f32 / 10.0;
        if args.serde {
            publ.send_serde(&Sample { seq, micros, celsius, sensor: "north".into() })?;
        } else {
            publ.send_pod(&Reading { seq, micros, celsius, sensor: 1 })?;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("sensor: published {} readings in {secs:.2} s ({:.0} Hz)", args.count, args.count as f64 / secs);

    // The last handle out removes the bus and its messages: stay until the
    // loggers present (or one that comes) have read everything.
    match publ.linger(args.wait) {
        Ok(()) => println!("sensor: delivered"),
        Err(_) => println!("sensor: no logger read them within {:?}", args.wait),
    }
    Ok(())
}
