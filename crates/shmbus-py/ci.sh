#!/usr/bin/env bash
# The Python package's CI step (appended to .ci/run; runs on its own too):
# lint the crate (it is outside the cargo workspace), build the `shmbus`
# CLI the tests talk to, make a fresh venv, install everything from the
# registries (pytest, numpy; maturin through pip's build isolation), install
# the package the way the README says, and run the pytest suite. pytest's
# exit code 5 (no tests collected) is a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

cargo fmt --manifest-path crates/shmbus-py/Cargo.toml --check
cargo clippy --manifest-path crates/shmbus-py/Cargo.toml --all-targets -- -D warnings
cargo build -p shmbus-cli

venv=target/py-ci
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check pytest numpy
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check ./crates/shmbus-py

set +e
SHMBUS_BIN="$root/target/debug/shmbus" "$venv/bin/python" -m pytest crates/shmbus-py/tests -q -p no:cacheprovider
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "shmbus-py: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
