//! Cross-process benchmark harness (filled in by the benchmarks issue).

/// If this process was started as a benchmark child (by the harness
/// re-executing its own binary), runs the child's role and exits; otherwise
/// returns at once. Call it first thing in `main`.
pub fn child_main_if_requested() {}

/// Runs `shmbus bench` with its arguments (without the program name and the
/// `bench` word). Returns the process exit code.
pub fn cli_main(args: Vec<String>) -> i32 {
    let _ = args;
    eprintln!("shmbus bench: not implemented yet");
    1
}
