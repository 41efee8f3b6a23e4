#!/usr/bin/env bash
# The reliability suite of issue #6 at its full counts (docs/reliability.md).
#
#   scripts/reliability-full.sh [FIGURES_FILE]
#
# Runs every reliability test of crates/shmbus-core with
# SHMBUS_RELIABILITY_FULL=1, one test at a time (the multi-process tests
# measure latencies), in the dev profile (overflow checks on, so the
# positions-near-2^64 test would catch an overflow panic). Every test prints a
# FIGURE line; they are collected into FIGURES_FILE (default
# $TMPDIR/shmbus-reliability-figures.txt) and printed at the end.
# The cargo-fuzz target and Miri have their own commands:
#   (cd fuzz && cargo +nightly fuzz run bus_file -- -max_total_time=300)
#   scripts/miri.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${TMPDIR:-/tmp}/shmbus-reliability-figures.txt}"
: > "$out"
export SHMBUS_RELIABILITY_FULL=1
SHMBUS_RELIABILITY_FIGURES="$(realpath "$out")"
export SHMBUS_RELIABILITY_FIGURES
start=$(date +%s)
cargo test -p shmbus-core \
    --test reliability_kill --test reliability_hostile --test reliability_limits --test reliability_loom \
    -- --test-threads=1
# The chaos test (issue 9): three variants of 120 s each at full scale, in the
# release profile (its processes should spend their time in the bus, not in
# unoptimised checks). SHMBUS_CHAOS_SEED=N replays the controller's choices.
cargo test -p shmbus-core --release --test chaos -- --test-threads=1
cargo test -p shmbus-workspace --test reliability -- --test-threads=1
echo "reliability suite (full counts) took $(( $(date +%s) - start )) s; figures:"
cat "$out"
