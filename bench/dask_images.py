"""dask-image's and scipy's side of `rask-bench image-gauss`: the same
`gaussian_filter(sigma=2)` followed by `mean()`, over

  tiff:   the stack of uint16 TIFF volumes rask-bench wrote, one chunk per
          file as rask reads them (each file read by tifffile in a delayed
          task: dask_image.imread with nframes = pages per file fails on these
          3-D files in dask 2025.12, and its default, one chunk per page,
          would give every chunk a 16-page halo), and
  volume: an in-memory float32 volume (chunks as rask's).

Engines: scipy (one thread, the whole array in memory), dask-threads
(threaded scheduler) and dask-distributed (LocalCluster). Prints one JSON
line per measurement.
"""
import argparse
import glob
import json
import os
import time

import numpy as np


def emit(case, engine, seconds, voxels, value, threads):
    print(json.dumps({"bench": "image-gauss", "case": case, "engine": engine, "seconds": seconds,
                      "voxels": voxels, "mvox_per_second": voxels / seconds / 1e6, "value": float(value),
                      "threads": threads}), flush=True)


def timed(fn, repeat):
    best, value = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t)
    return best, value


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", default="volume")
    ap.add_argument("--dir", default="/tmp/rask-bench-tiffs")
    ap.add_argument("--shape", default="128,512,512")
    ap.add_argument("--chunks", default="64,512,512")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--engines", default="scipy,dask-threads,dask-distributed")
    args = ap.parse_args()

    import dask
    import dask.array as da
    import dask_image.ndfilters
    import scipy.ndimage as ndi
    import tifffile

    engines = args.engines.split(",")
    if args.case == "tiff":
        files = sorted(glob.glob(os.path.join(args.dir, "vol_*.tif")))
        label = "tiff-stack-uint16"

        first = tifffile.imread(files[0])

        def make():
            read = dask.delayed(tifffile.imread, pure=True)
            return da.concatenate([da.from_delayed(read(f), shape=first.shape, dtype=first.dtype) for f in files])

        def numpy_input():
            return np.concatenate([tifffile.imread(f) for f in files])
    else:
        shape = tuple(int(s) for s in args.shape.split(","))
        chunks = tuple(int(s) for s in args.chunks.split(","))
        data = np.random.default_rng(5).random(shape, dtype=np.float32)
        label = "volume-float32"

        def make():
            return da.from_array(data, chunks=chunks)

        def numpy_input():
            return data

    x = make()
    voxels = int(np.prod(x.shape))
    pipeline = dask_image.ndfilters.gaussian_filter(x, sigma=2).mean()

    if "scipy" in engines:
        def run_scipy():
            return ndi.gaussian_filter(numpy_input(), sigma=2).mean()
        secs, value = timed(run_scipy, 1)
        emit(label, "scipy", secs, voxels, value, 1)
    if "dask-threads" in engines:
        secs, value = timed(lambda: pipeline.compute(scheduler="threads", num_workers=args.threads), args.repeat)
        emit(label, "dask-threads", secs, voxels, value, args.threads)
    if "dask-distributed" in engines:
        from dask.distributed import Client, LocalCluster
        with LocalCluster(n_workers=args.threads, threads_per_worker=1, processes=True,
                          dashboard_address=None, memory_limit=0) as cluster, Client(cluster):
            secs, value = timed(lambda: pipeline.compute(), args.repeat)
        emit(label, "dask-distributed", secs, voxels, value, args.threads)


if __name__ == "__main__":
    main()
