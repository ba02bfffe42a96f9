"""compute() of a 1 GiB float64 rask array into numpy, against numpy.copy.

The array (8 blocks of 128 MiB) is first persisted on the embedded local
cluster, so the timed part is only what the issue asks about: fetching the
blocks, stitching them into one array and handing it to numpy. rask copies
each block once into the result and numpy views that result (no further
copy); numpy.copy of 1 GiB is the one-copy bound. Prints JSON lines. Not a
test: nothing here asserts speed.

    python bench/python_array.py --repeat 5
"""

import argparse
import json
import time

import numpy as np


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--gib", type=float, default=1.0)
    args = p.parse_args()
    import rask.array as da
    from rask.distributed import Client, LocalCluster

    n = int(args.gib * 2**30 // 8)
    with LocalCluster(n_workers=1, threads_per_worker=2) as cluster, Client(cluster):
        x = da.random.random((n,), chunks=n // 8).persist()
        nbytes = n * 8
        for r in range(args.repeat):
            t0 = time.perf_counter()
            out = x.compute()
            s = time.perf_counter() - t0
            assert out.shape == (n,) and out.flags.owndata is False and out.flags.writeable
            del out
            print(json.dumps({"bench": "python-array-compute", "engine": "rask", "run": r, "bytes": nbytes,
                              "seconds": round(s, 4), "gb_per_s": round(nbytes / s / 1e9, 2)}), flush=True)
        ref = np.random.default_rng(0).random(n)
        for r in range(args.repeat):
            t0 = time.perf_counter()
            c = np.copy(ref)
            s = time.perf_counter() - t0
            del c
            print(json.dumps({"bench": "python-array-compute", "engine": "numpy.copy", "run": r, "bytes": nbytes,
                              "seconds": round(s, 4), "gb_per_s": round(nbytes / s / 1e9, 2)}), flush=True)


if __name__ == "__main__":
    main()
