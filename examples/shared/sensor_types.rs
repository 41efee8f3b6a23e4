//! What the sensor and the logger examples share: the message types and
//! their command line. Both programs include this file, so they agree on the
//! types (the bus checks that they do: see `MessageType`).
#![allow(dead_code)]

use std::time::Duration;

/// One reading, sent as its bytes (`send_pod` / `recv_pod`): 24 bytes, no padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Reading {
    /// Counts from 0, so the logger can tell whether it missed any.
    pub seq: u64,
    /// Microseconds since the sensor started.
    pub micros: u64,
    pub celsius: f32,
    pub sensor: u32,
}

/// The same reading as a serde type (`send_serde` / `recv_serde`, bincode 2).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    pub seq: u64,
    pub micros: u64,
    pub celsius: f32,
    pub sensor: String,
}

/// `--bus NAME` (default `readings`), `--serde`, `--count N` (default 10000),
/// `--rate HZ` (default 10000), `--wait SECS` (default 30).
pub struct Args {
    pub bus: String,
    pub serde: bool,
    pub count: u64,
    pub rate: f64,
    pub wait: Duration,
}

impl Args {
    pub fn parse() -> Args {
        let mut a =
            Args { bus: "readings".into(), serde: false, count: 10_000, rate: 10_000.0, wait: Duration::from_secs(30) };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || it.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
            match flag.as_str() {
                "--bus" => a.bus = value(),
                "--serde" => a.serde = true,
                "--count" => a.count = value().parse().unwrap_or_else(|_| usage("--count takes a number")),
                "--rate" => a.rate = value().parse().unwrap_or_else(|_| usage("--rate takes a number")),
                "--wait" => {
                    a.wait = Duration::from_secs_f64(value().parse().unwrap_or_else(|_| usage("--wait takes seconds")))
                }
                other => usage(&format!("unknown argument {other}")),
            }
        }
        a
    }
}

fn usage(why: &str) -> ! {
    eprintln!("{why}\nusage: [--bus NAME] [--serde] [--count N] [--rate HZ] [--wait SECS]");
    std::process::exit(2)
}
