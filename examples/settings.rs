//! Settings and errors: set one size and the other follows; an existing bus
//! is accepted as it is unless a setting you set explicitly contradicts it;
//! every error names the bus and its file.
use shmbus::{BusConfig, Error, Overflow, Publisher, StartAt, Subscriber};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = format!("cfg-{}", std::process::id());

    // capacity alone: max_message is the largest the ring allows (at most 64 KiB).
    let small = BusConfig::default().capacity(64 << 10);
    println!("capacity 64 KiB -> max_message {}", small.get_max_message());
    // max_message alone: the smallest capacity (at least 1 MiB) that holds it.
    let big = BusConfig::default().max_message(1 << 20);
    println!("max_message 1 MiB -> capacity {}", big.get_capacity());

    let publ = Publisher::open_or_create(&name, &small.clone().overflow(Overflow::Overwrite))?;
    // Defaults are not requests: this attaches to the 64 KiB overwrite bus.
    let sub = Subscriber::open_or_create(&name, &BusConfig::default(), StartAt::Latest)?;
    println!("attached with defaults to a bus of {} bytes, {}", sub.info().capacity, sub.info().overflow);
    // An explicit setting that differs is refused, naming both values.
    match Publisher::open_or_create(&name, &BusConfig::default().capacity(1 << 20)) {
        Err(e @ Error::Incompatible { .. }) => println!("refused: {e}"),
        other => panic!("expected Incompatible, got {other:?}"),
    }
    drop((publ, sub));

    match Subscriber::attach(&name, &BusConfig::default(), StartAt::Latest) {
        Err(e @ Error::NotFound { .. }) => println!("after the last one left: {e}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let nowhere = std::env::temp_dir().join(format!("no-such-dir-{}", std::process::id())).join("buses");
    match Publisher::open_or_create(&name, &BusConfig::default().dir(&nowhere)) {
        Err(e @ Error::NoParentDir { .. }) => println!("missing directory: {e}"),
        other => panic!("expected NoParentDir, got {other:?}"),
    }
    Ok(())
}
