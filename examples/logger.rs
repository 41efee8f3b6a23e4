//! A logger: receives the `Reading`s of `examples/sensor.rs` with a receive
//! timeout, checks that none is missing, and stops once the sensor is gone.
//! Start it before or after the sensor (it reads from the oldest reading the
//! bus still holds):
//! ```text
//! cargo run --release --example logger
//! cargo run --release --example logger -- --serde   # for `sensor --serde`
//! ```
use std::time::Duration;

use shmbus::{BusConfig, MessageType, RecvError, StartAt, Subscriber};

#[path = "shared/sensor_types.rs"]
mod sensor_types;
use sensor_types::{Args, Reading, Sample};

fn main() {
    if let Err(e) = run() {
        eprintln!("logger: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let kind = if args.serde { MessageType::serde::<Sample>() } else { MessageType::pod::<Reading>() };
    let cfg = BusConfig::default().message_type(kind.clone());
    // Refused (Error::TypeMismatch) if the bus carries another type.
    let mut sub = Subscriber::open_or_create(&args.bus, &cfg, StartAt::Oldest)?;
    println!("logger: reading {kind} from {}", sub.path().display());
    sub.wait_for_publishers(1, args.wait)?;

    let (mut received, mut missing, mut next, mut last) = (0u64, 0u64, 0u64, None);
    loop {
        let got = if args.serde {
            sub.recv_serde_timeout::<Sample>(Duration::from_millis(500)).map(|s| (s.seq, s.celsius))
        } else {
            sub.recv_pod_timeout::<Reading>(Duration::from_millis(500)).map(|r| (r.seq, r.celsius))
        };
        match got {
            Ok((seq, celsius)) => {
                missing += seq.saturating_sub(next);
                next = seq + 1;
                received += 1;
                last = Some(celsius);
            }
            // Nothing for 500 ms: done once no sensor is attached any more.
            Err(RecvError::Timeout) if sub.publishers() == 0 => break,
            Err(RecvError::Timeout) => {}
            Err(e) => return Err(e.into()),
        }
    }
    println!("logger: received {received} readings, {missing} missing, last {last:?} °C");
    Ok(())
}
