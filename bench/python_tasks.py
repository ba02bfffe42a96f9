"""Python-function tasks, rask's Python package against Dask, from Python.

`delayed(inc)` over n items plus a binary tree of `delayed(add)`, the same
program as bench/dask_tasks.py, computed on:
  - rask's embedded local cluster (`rask.distributed.Client()` in process),
  - dask's threaded scheduler,
  - with --distributed ADDRESS also a running `rask scheduler` with
    `python -m rask worker`s (the caller starts them).
Prints one JSON object per run. Not a test: nothing here asserts speed.

    python bench/python_tasks.py --n 100000 --repeat 3
"""

import argparse
import json
import time


def inc(x):
    return x + 1


def add(x, y):
    return x + y


def build(delayed, n):
    level = [delayed(inc, pure=False)(i) for i in range(n)]
    while len(level) > 1:
        nxt = [delayed(add, pure=False)(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def run(engine, delayed, compute, n, repeat, threads):
    expected = n * (n + 1) // 2
    for r in range(repeat):
        t0 = time.perf_counter()
        graph = build(delayed, n)
        build_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        value = compute(graph)
        compute_s = time.perf_counter() - t1
        assert value == expected, (value, expected)
        tasks = 2 * n - 1
        print(json.dumps({
            "bench": "python-tasks", "engine": engine, "run": r, "n": n, "tasks": tasks, "threads": threads,
            "build_seconds": round(build_s, 4), "compute_seconds": round(compute_s, 4),
            "tasks_per_second": round(tasks / compute_s), "microseconds_per_task": round(compute_s * 1e6 / tasks, 2),
        }), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--engines", default="rask,dask")
    p.add_argument("--distributed", default=None, help="address of a rask scheduler with Python workers")
    p.add_argument("--start-cluster", action="store_true",
                   help="start `rask scheduler` ($RASK_BIN) and 2 `python -m rask worker`s on 127.0.0.1")
    args = p.parse_args()
    procs = []
    if args.start_cluster:
        procs, args.distributed = start_cluster(args.threads)
    try:
        run_engines(args)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def start_cluster(threads):
    import os
    import socket
    import subprocess
    import sys

    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    rask_bin = os.environ.get("RASK_BIN", os.path.expanduser("~/.cache/rask/target/release/rask"))
    port, http = free_port(), free_port()
    address = f"tcp://127.0.0.1:{port}"
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [subprocess.Popen([rask_bin, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--http-port", str(http)], **quiet)]
    time.sleep(1.0)
    for _ in range(2):
        procs.append(subprocess.Popen([sys.executable, "-m", "rask", "worker", address, "--nthreads", str(threads),
                                       "--memory-limit", "0", "--listen-host", "127.0.0.1",
                                       "--contact-host", "127.0.0.1"], **quiet))
    time.sleep(3.0)
    return procs, address


def run_engines(args):
    engines = args.engines.split(",")
    if "rask" in engines:
        import rask
        from rask.distributed import Client

        with Client(n_workers=1, threads_per_worker=args.threads) as client:
            run("rask-local", rask.delayed, lambda g: client.compute(g).result(), args.n, args.repeat, args.threads)
    if args.distributed:
        import rask
        from rask.distributed import Client

        with Client(args.distributed) as client:
            run("rask-distributed", rask.delayed, lambda g: client.compute(g).result(), args.n, args.repeat,
                2 * args.threads)
    if "dask" in engines:
        import dask

        run("dask-threads", dask.delayed, lambda g: g.compute(scheduler="threads", num_workers=args.threads),
            args.n, args.repeat, args.threads)


if __name__ == "__main__":
    main()
