//! `shmbus-bench`: the cross-process benchmark harness as a program of its own
//! (`cargo run --release -p shmbus-bench -- --help`).

fn main() {
    shmbus_bench::child_main_if_requested();
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(shmbus_bench::cli_main(args));
}
