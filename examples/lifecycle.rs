//! How long a bus lives, and how to keep its messages until they are read.
//!
//! - A bus is created by the first `open_or_create` and removed when the
//!   last handle is dropped (unless persistent), with its unread messages.
//! - `Publisher::wait_for_subscribers` / `Subscriber::wait_for_publishers`
//!   wait for the other side; `Publisher::linger` keeps the bus until the
//!   subscribers present (or one that comes) have read everything.
//! - A persistent bus stays until `shmbus::remove` (or `shmbus rm`).
use std::time::Duration;

use shmbus::{BusConfig, Publisher, StartAt, Subscriber};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = BusConfig::default();
    let name = format!("jobs-{}", std::process::id());

    // 1. A publisher finishes before its subscriber starts; linger keeps the bus.
    let mut publ = Publisher::open_or_create(&name, &cfg)?;
    let path = publ.path().to_owned();
    for i in 0..3u32 {
        publ.send_pod(&i)?;
    }
    let late = {
        let (cfg, name) = (cfg.clone(), name.clone());
        std::thread::spawn(move || -> Result<_, shmbus::RecvError> {
            std::thread::sleep(Duration::from_millis(200)); // starts late
            let mut sub = Subscriber::attach(&name, &cfg, StartAt::Oldest)?;
            let jobs: Vec<u32> =
                (0..3).map(|_| sub.recv_pod_timeout(Duration::from_secs(5))).collect::<Result<_, _>>()?;
            Ok((jobs, sub))
        })
    };
    publ.linger(Duration::from_secs(10))?;
    println!("a late subscriber read {:?}", late.join().unwrap()?.0);
    drop(publ);
    println!("last one out removed the bus: {}", !path.exists());

    // 2. Wait for a subscriber before publishing.
    let publ = Publisher::open_or_create(&name, &cfg)?;
    let sub = {
        let (cfg, name) = (cfg.clone(), name.clone());
        std::thread::spawn(move || Subscriber::open_or_create(&name, &cfg, StartAt::Latest))
    };
    println!("subscribers attached: {}", publ.wait_for_subscribers(1, Duration::from_secs(10))?);
    let sub = sub.join().unwrap()?;
    println!("publishers attached: {}", sub.wait_for_publishers(1, Duration::from_secs(10))?);
    drop((publ, sub));

    // 3. A persistent bus outlives its handles until removed.
    let kept = cfg.clone().persistent(true);
    drop(Publisher::open_or_create(&name, &kept)?);
    println!("persistent bus still there: {}", path.exists());
    shmbus::remove(&name, &cfg, false)?;
    println!("removed: {}", !path.exists());
    Ok(())
}
