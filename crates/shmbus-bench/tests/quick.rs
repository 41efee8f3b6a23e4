//! Runs the real harness binary in `--quick` mode on two transports and
//! checks that what it wrote is a sane set of records and charts.

use std::process::Command;

use serde_json::Value;

fn num(r: &Value, key: &str) -> f64 {
    r[key].as_f64().unwrap_or_else(|| panic!("{key} missing or null in {r}"))
}

#[test]
fn quick_run_writes_sane_records_and_charts() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let svg = dir.path().join("svg");
    let out = Command::new(env!("CARGO_BIN_EXE_shmbus-bench"))
        .args(["--quick", "--transports", "shmbus-spin-park,uds-stream", "--sizes", "64,1024"])
        .args(["--patterns", "pingpong,stream", "--json"])
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "harness failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    assert!(stdout.contains("| shmbus | spin-then-park | 64 B |"), "no table row in:\n{stdout}");

    let records: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // 2 transports x 2 sizes x 2 patterns.
    assert_eq!(records.len(), 8, "{records:#?}");
    for r in &records {
        for key in ["transport", "mode", "size", "pattern", "p50_ns", "p99_ns", "p999_ns", "max_ns"] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
        for key in ["msgs_per_s", "bytes_per_s", "runs"] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
        assert_eq!(r["runs"], 1);
        let size = num(r, "size");
        match r["pattern"].as_str().unwrap() {
            "pingpong" => {
                let (p50, p99, p999, max) = (num(r, "p50_ns"), num(r, "p99_ns"), num(r, "p999_ns"), num(r, "max_ns"));
                assert!(p50 > 0.0 && p50 <= p99 && p99 <= p999 && p999 <= max, "{r}");
                // One-way latency between two processes on one machine: above a
                // nanosecond, below a second.
                assert!(p50 > 1.0 && p50 < 1e9, "{r}");
                assert!(r["msgs_per_s"].is_null() && r["bytes_per_s"].is_null(), "{r}");
            }
            "stream" => {
                let (mps, bps) = (num(r, "msgs_per_s"), num(r, "bytes_per_s"));
                assert!(mps > 1000.0, "{r}");
                assert!((bps - mps * size).abs() <= 1e-6 * bps, "{r}");
                assert!(r["p50_ns"].is_null(), "{r}");
            }
            other => panic!("unexpected pattern {other}"),
        }
    }
    let transports: Vec<&str> = records.iter().map(|r| r["transport"].as_str().unwrap()).collect();
    assert!(transports.contains(&"shmbus") && transports.contains(&"uds-stream"));

    for name in ["latency-64B.svg", "latency-1KiB.svg", "throughput-gbps.svg", "throughput-msgs.svg"] {
        let text = std::fs::read_to_string(svg.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains("<svg") && text.contains("uds-stream"), "{name} lacks content");
    }
}

#[test]
fn bad_options_are_a_usage_error() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_shmbus-bench")).args(["--transports", "carrier-pigeon"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown transport"));
}
