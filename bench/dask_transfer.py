"""Dask's side of the worker-to-worker transfer benchmark, the same steps as
`rask-bench transfer-workers`: a dask.distributed scheduler and worker
processes on loopback (one thread each). One worker computes and keeps a
float64 array of the given size; a second worker joins; the first is retired
(`client.retire_workers`), which returns once the array has been copied to
the second worker and the first has left. Each round retires the worker
that received the array in the previous round. Prints one JSON object per
round, in the same shape as rask's.

usage: dask_transfer.py MIB ROUNDS
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from distributed import Client

BIN = os.path.dirname(sys.executable)


def start(*args):
    return subprocess.Popen([os.path.join(BIN, "dask"), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_worker(address, i):
    # No nanny: a plain worker process, as `rask worker` is.
    return start("worker", address, "--nthreads", "1", "--no-nanny", "--memory-limit", "0",
                 "--name", f"bench-{i}", "--host", "127.0.0.1", "--no-dashboard")


def digest(a):
    return a.shape, hashlib.sha256(a.data).hexdigest()


def main():
    mib, rounds = int(sys.argv[1]), int(sys.argv[2])
    n = mib * (1 << 20) // 8
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        sched_file = os.path.join(tmp, "scheduler.json")
        procs.append(start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                           "--scheduler-file", sched_file))
        try:
            while not os.path.exists(sched_file):
                time.sleep(0.05)
            time.sleep(0.2)
            with Client(scheduler_file=sched_file) as client:
                address = client.scheduler.address
                holder_proc = start_worker(address, 0)
                client.wait_for_workers(1)
                [holder] = list(client.scheduler_info()["workers"])
                x = client.submit(lambda n: np.random.default_rng(7).random(n), n, key="big", workers=[holder])
                x.result()
                expected = client.submit(digest, x, workers=[holder], pure=False).result()
                for r in range(1, rounds + 1):
                    receiver_proc = start_worker(address, r)
                    client.wait_for_workers(2)
                    start_t = time.perf_counter()
                    retired = client.retire_workers(workers=[holder], close_workers=True)
                    secs = time.perf_counter() - start_t
                    assert len(retired) == 1, retired
                    holder_proc.wait(timeout=60)
                    while len(client.scheduler_info()["workers"]) != 1:
                        time.sleep(0.05)
                    [holder] = list(client.scheduler_info()["workers"])
                    holder_proc = receiver_proc
                    print(json.dumps({"bench": "transfer-workers", "engine": "dask-distributed", "round": r,
                                      "bytes": n * 8, "seconds": secs, "gb_per_second": n * 8 / secs / 1e9}),
                          flush=True)
                got = client.submit(digest, x, workers=[holder], pure=False).result()
                assert got == expected, (got, expected)
                procs.append(holder_proc)
        finally:
            for p in procs:
                p.kill()
                p.wait()


if __name__ == "__main__":
    main()
