//! Iterating over messages: `try_iter` drains what is there and ends;
//! `iter` waits for each message (stop it yourself, e.g. on a marker).
use shmbus::{BusConfig, Publisher, StartAt, Subscriber};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = BusConfig::default();
    let name = format!("lines-{}", std::process::id());
    let mut sub = Subscriber::open_or_create(&name, &cfg, StartAt::Latest)?;
    let mut publ = Publisher::open_or_create(&name, &cfg)?;

    for word in ["alpha", "beta", "gamma"] {
        publ.send(word.as_bytes())?;
    }
    let drained: Vec<String> =
        sub.try_iter().map(|m| m.map(|m| String::from_utf8_lossy(&m).into_owned())).collect::<Result<_, _>>()?;
    println!("try_iter: {drained:?}");

    let writer = std::thread::spawn(move || -> Result<(), shmbus::SendError> {
        for word in ["delta", "epsilon", "end"] {
            publ.send(word.as_bytes())?;
        }
        Ok(())
    });
    for msg in sub.iter() {
        let msg = msg?;
        if &msg[..] == b"end" {
            break;
        }
        println!("iter: {}", String::from_utf8_lossy(&msg));
    }
    writer.join().unwrap()?;
    Ok(())
}
