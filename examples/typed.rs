//! Typed messages: a `bytemuck::Pod` struct sent as its bytes, and a serde
//! type encoded with bincode 2. Runs both sides in one process.
use std::time::Duration;

use shmbus::{BusConfig, Publisher, StartAt, Subscriber};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
struct Tick {
    instrument: u32,
    _pad: u32,
    price: f64,
    size: u64,
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum Event {
    Login { user: String },
    Order { id: u64, symbol: String, qty: i64 },
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("shmbus-typed-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cfg = BusConfig::default().dir(&dir);

    let mut ticks_in = Subscriber::open_or_create("ticks", &cfg, StartAt::Latest)?;
    let mut ticks_out = Publisher::open_or_create("ticks", &cfg)?;
    let tick = Tick { instrument: 7, _pad: 0, price: 101.25, size: 300 };
    ticks_out.send_pod(&tick)?;
    let got: Tick = ticks_in.recv_pod()?;
    println!("pod:   {got:?}");
    assert_eq!(got, tick);

    let mut events_in = Subscriber::open_or_create("events", &cfg, StartAt::Latest)?;
    let mut events_out = Publisher::open_or_create("events", &cfg)?;
    events_out.send_serde(&Event::Login { user: "ada".into() })?;
    events_out.send_serde(&Event::Order { id: 1, symbol: "XYZ".into(), qty: -5 })?;
    for _ in 0..2 {
        let e: Event = events_in.recv_serde()?;
        println!("serde: {e:?}");
    }
    // A message that is not an Event is an error, not a panic.
    events_out.send(&[0xff; 3])?;
    let bad = events_in.recv_serde::<Event>();
    println!("bad:   {:?}", bad.as_ref().map(|_| ()).map_err(|e| e.to_string()));
    assert!(bad.is_err());
    let _ = ticks_in.recv_timeout(Duration::from_millis(1));

    drop((ticks_in, ticks_out, events_in, events_out));
    std::fs::remove_dir(&dir)?;
    Ok(())
}
