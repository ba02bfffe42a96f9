"""Dask's side of the tiny-tasks benchmark: n tiny independent tasks plus a
binary tree reduction, built with dask.delayed, run on the threaded scheduler
and on dask.distributed's LocalCluster. Prints one JSON object per run, in the
same shape as `rask-bench tasks`."""

import argparse
import json
import time

import dask
from dask import delayed


def inc(x):
    return x + 1


def add(x, y):
    return x + y


def build(n):
    level = [delayed(inc, pure=False)(i) for i in range(n)]
    while len(level) > 1:
        nxt = [delayed(add, pure=False)(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def run(engine, n, repeat, workers, threads, client=None):
    expected = n * (n + 1) // 2
    for r in range(repeat):
        t0 = time.perf_counter()
        graph = build(n)
        build_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        if client is not None:
            value = client.compute(graph).result()
        else:
            value = graph.compute(scheduler="threads", num_workers=workers * threads)
        compute_s = time.perf_counter() - t1
        assert value == expected, (value, expected)
        tasks = 2 * n - 1
        print(json.dumps({
            "bench": "tiny-tasks", "engine": engine, "run": r, "n": n, "tasks": tasks,
            "workers": workers, "threads": threads, "build_seconds": build_s,
            "compute_seconds": compute_s, "tasks_per_second": tasks / compute_s,
            "microseconds_per_task": compute_s * 1e6 / tasks,
        }), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--n-distributed", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    run("dask-threads", args.n, args.repeat, args.workers, args.threads)
    from dask.distributed import Client, LocalCluster
    with LocalCluster(n_workers=args.workers, threads_per_worker=args.threads, dashboard_address=None) as cluster, Client(cluster) as client:
        run("dask-distributed", args.n_distributed, args.repeat, args.workers, args.threads, client)


if __name__ == "__main__":
    dask.config.set({"optimization.fuse.active": True})
    main()
