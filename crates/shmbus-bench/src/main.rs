//! `shmbus-bench`: the cross-process benchmark harness as a program of its own
//! (`cargo run --release -p shmbus-bench --features iceoryx2 -- --help`).

use clap::Parser;

/// Cross-process benchmarks of shmbus (the same as `shmbus bench`).
#[derive(Parser)]
#[command(name = "shmbus-bench", version)]
struct Cli {
    #[command(flatten)]
    args: shmbus_bench::BenchArgs,
}

fn main() {
    shmbus_bench::child_main_if_requested();
    let cli = Cli::parse();
    std::process::exit(shmbus_bench::run(cli.args));
}
