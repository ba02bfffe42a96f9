#!/usr/bin/env bash
# Autoscaling on the test kubelet, with the worker count over time.
#
# Runs the end-to-end test operator/tests/autoscaling.rs: a real
# kube-apiserver, etcd and kube-controller-manager (built once by
# scripts/envtest.sh), the operator, and the test kubelet running the
# DaskCluster's scheduler and worker pods as local processes. A client
# submits 160 tasks of 100 ms; the workers go from 1 to 4, the result is
# checked, and when the cluster is idle it goes back to 1 worker, each
# leaving worker retired through the scheduler.
#
# Usage: examples/autoscaling/watch.sh [ROUNDS]    (default 1)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-1}"
echo "autoscaling example: $rounds round(s); t = seconds since the round's work was submitted" >&2
RASK_AUTOSCALING_TRACE=1 RASK_AUTOSCALING_ROUNDS="$rounds" \
    cargo test -q -p rask-operator --test autoscaling scales_up_under_load -- --nocapture 2>&1 |
    sed -u -E 's/\x1b\[[0-9;]*m//g' |
    grep --line-buffered -E '^(t=|round |test result)|autoscaler .*kind="Scaled|panicked' |
    sed -u -E 's/.*kind="(Scaled[A-Za-z]*)".*reason=(.*)/  \1: \2/'
