"""Dask and numpy sides of the array benchmarks: randint(...).mean() and the
sum of an in-memory float64 array. One JSON object per measurement."""
import argparse
import json
import time

import dask
import dask.array as da
import numpy as np


def emit(**kw):
    print(json.dumps(kw), flush=True)


def randint_mean(shape, threads, client=None, engine="dask-threads"):
    x = da.random.randint(0, 100, shape)
    t = time.perf_counter()
    if client is None:
        v = float(x.mean().compute(scheduler="threads", num_workers=threads))
    else:
        v = float(client.compute(x.mean()).result())
    emit(bench="randint-mean", engine=engine, seconds=time.perf_counter() - t, bytes=int(np.prod(shape)) * 8,
         chunks=x.npartitions, value=v, threads=threads)


def inmemory_sum(n, threads):
    data = (np.arange(n) % 1000) * 0.001
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        np.sum(data)
        best = min(best, time.perf_counter() - t)
    emit(bench="inmemory-sum", engine="numpy", seconds=best, bytes=n * 8, gb_per_second=n * 8 / best / 1e9, threads=1)
    x = da.from_array(data)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        x.sum().compute(scheduler="threads", num_workers=threads)
        best = min(best, time.perf_counter() - t)
    emit(bench="inmemory-sum", engine="dask-threads", seconds=best, bytes=n * 8, gb_per_second=n * 8 / best / 1e9, threads=threads)


def dot(n, threads):
    a = np.random.random((n, n))
    t = time.perf_counter()
    np.dot(a, a + a.T).sum()
    emit(bench="dot", engine="numpy", seconds=time.perf_counter() - t, n=n, chunks=1, threads=threads)
    x = da.random.random((n, n))
    t = time.perf_counter()
    da.dot(x, x + x.T).sum().compute(scheduler="threads", num_workers=threads)
    emit(bench="dot", engine="dask-threads", seconds=time.perf_counter() - t, n=n, chunks=x.npartitions, threads=threads)


def histogram(n, threads):
    t = time.perf_counter()
    added = da.random.normal(9, 1, (n, n)) + da.ones((n, n))
    masked = added[added < 10]
    counts, _ = da.histogram(masked, bins=100, range=[-9, 11])
    counts.compute(scheduler="threads", num_workers=threads)
    emit(bench="histogram", engine="dask-threads", seconds=time.perf_counter() - t, n=n, threads=threads)
    t = time.perf_counter()
    added = np.random.normal(9, 1, (n, n)) + np.ones((n, n))
    np.histogram(added[added < 10], bins=100, range=[-9, 11])
    emit(bench="histogram", engine="numpy", seconds=time.perf_counter() - t, n=n, threads=1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shape", default="10000,1000,100")
    p.add_argument("--n", type=int, default=1 << 27)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dot-n", type=int, default=5000)
    p.add_argument("--dot-big", type=int, default=10000)
    p.add_argument("--numpy-mean", action="store_true", help="also time numpy on the whole array in memory")
    a = p.parse_args()
    shape = tuple(int(s) for s in a.shape.split(","))
    inmemory_sum(a.n, a.threads)
    dot(a.dot_n, a.threads)
    if a.dot_big:
        dot(a.dot_big, a.threads)
    histogram(5000, a.threads)
    randint_mean(shape, a.threads)
    from dask.distributed import Client, LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=a.threads, dashboard_address=None) as c, Client(c) as client:
        randint_mean(shape, a.threads, client, "dask-distributed")
    if a.numpy_mean:
        t = time.perf_counter()
        v = float(np.random.randint(0, 100, shape).mean())
        emit(bench="randint-mean", engine="numpy", seconds=time.perf_counter() - t, bytes=int(np.prod(shape)) * 8,
             chunks=1, value=v, threads=1)


if __name__ == "__main__":
    main()
