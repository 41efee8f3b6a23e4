#!/usr/bin/env bash
# Miri over the heap-backed ring tests (docs/reliability.md, item 9).
#
# Runs crates/shmbus-core/tests/ring_model.rs under Miri, except the tests
# over a real file mapping (threads_over_one_mapping_*): Miri cannot run
# mmap of a file, futex waits across processes or OFD locks. The property
# tests shrink to a few cases under cfg(miri).
#
# Needs: rustup toolchain nightly with the miri component
#   (rustup component add miri --toolchain nightly).
# Isolation is disabled because attaching reads the wall clock (the slot's
# attach time) and the process id.
set -euo pipefail
cd "$(dirname "$0")/.."
# Weak-memory emulation is off: with it, Miri (nightly 2026-05-19) stops
# with an internal error ("cannot have empty store buffer when previous
# write was atomic") when a payload memcpy overwrites bytes that an earlier
# lap accessed as an atomic frame header. The tests here are single-threaded
# over a heap region, so it explores nothing they need; the loom model covers
# the memory orderings.
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation -Zmiri-disable-weak-memory-emulation}"
# The tail is a 128-bit atomic: with cmpxchg16b enabled at compile time,
# portable-atomic uses the core 128-bit atomic intrinsics, which Miri runs
# (its run-time CPU detection is inline assembly, which Miri cannot run, and
# the core refuses portable-atomic's lock-based fallback).
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+cmpxchg16b"
exec cargo +nightly miri test -p shmbus-core --test ring_model -- --skip threads_over_one_mapping "$@"
