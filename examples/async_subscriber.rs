//! An async subscriber on tokio: `select!` between the bus, a timer and
//! Ctrl-C. `recv_async` is cancellation-safe, so the branch that loses a
//! `select!` loses no message (needs the `tokio` feature of `shmbus`).
//!
//! A publisher task stands in for another process here.
//! ```text
//! cargo run --example async_subscriber
//! ```
use std::time::Duration;

use shmbus::{BusConfig, Publisher, StartAt, Subscriber};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = BusConfig::default();
    let name = format!("prices-{}", std::process::id());
    let mut sub = Subscriber::open_or_create(&name, &cfg, StartAt::Latest)?;

    let mut publ = Publisher::open_or_create(&name, &cfg)?;
    let writer = tokio::spawn(async move {
        for i in 0..10u32 {
            tokio::time::sleep(Duration::from_millis(25)).await;
            publ.send_async(format!("price {}", 100 + i).as_bytes()).await?;
        }
        publ.send_async(b"end").await
    });

    let mut timer = tokio::time::interval(Duration::from_millis(100));
    let mut got = 0;
    loop {
        tokio::select! {
            msg = sub.recv_async() => {
                let msg = msg?;
                if &msg[..] == b"end" {
                    break;
                }
                got += 1;
                println!("got {}", String::from_utf8_lossy(&msg));
            }
            _ = timer.tick() => println!("timer: {got} so far"),
            _ = tokio::signal::ctrl_c() => {
                println!("Ctrl-C");
                break;
            }
        }
    }
    writer.await??;
    println!("received {got} prices");
    Ok(())
}
