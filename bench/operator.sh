#!/usr/bin/env bash
# The operator benchmark: time from `kubectl apply` until all children exist
# for 1 and 100 DaskClusters, and the `rask operator` process's memory while
# it manages them, on a real kube-apiserver and etcd (scripts/envtest.sh).
# Prints one JSON line per figure, each timing with its breakdown (the
# kubectl apply's own seconds, the API requests by verb and resource, the
# reconciles), and the same kubectl apply without an operator as the floor.
# Goals (issue 8): under 1 s, under 50 MB.
#   bench/operator.sh            # release build of the operator
#   PROFILE=dev bench/operator.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rask/target}"
scripts/envtest.sh
profile=(--release)
[ "${PROFILE:-release}" = "dev" ] && profile=()
cargo test -p rask-operator "${profile[@]}" --test bench_operator -- --ignored --nocapture --test-threads 1 2>&1 \
    | grep -o '{.*"bench".*}'
