//! Overwrite mode: publishers never wait; a subscriber that falls a whole
//! ring behind is told exactly how many messages it lost (`Lagged`) and goes
//! on with the oldest one still intact. Runs both sides in one process.
use shmbus::{BusConfig, Overflow, Publisher, RecvError, StartAt, Subscriber};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = BusConfig::default().capacity(64 << 10).overflow(Overflow::Overwrite);
    let name = format!("ticks-{}", std::process::id());
    let mut sub = Subscriber::open_or_create(&name, &cfg, StartAt::Latest)?;
    let mut publ = Publisher::open_or_create(&name, &cfg)?;

    for i in 0..10_000u64 {
        publ.send_pod(&i)?; // never blocks, however far behind `sub` is
    }
    let (mut received, mut lost) = (0u64, 0u64);
    loop {
        match sub.try_recv_pod::<u64>() {
            Ok(Some(_)) => received += 1,
            Ok(None) => break,
            Err(RecvError::Lagged { lost: n }) => lost += n,
            Err(e) => return Err(e.into()),
        }
    }
    println!("received {received}, lost {lost}, total {}", received + lost);
    assert_eq!(received + lost, 10_000);
    Ok(())
}
