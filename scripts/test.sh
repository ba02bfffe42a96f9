#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test, with the real
# components they need installed first.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rask/target}"
scripts/setup.sh all
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
scripts/python.sh install # the wheel, for the operator's Python DaskJob test
cargo test --workspace --locked
scripts/python.sh # the Python package: wheel (maturin) + pytest against Dask
