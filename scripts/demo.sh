#!/usr/bin/env bash
# The main job: the tutorial's workloads on the embedded local cluster.
# Extra arguments go to `rask demo` (e.g. `scripts/demo.sh delayed --threads 4`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rask/target}"
scripts/setup.sh demo # protoc only: the demo needs nothing else
cargo run --release --locked -q -p rask-cli -- demo "$@"
