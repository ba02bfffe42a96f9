"""The tutorial's collection workloads from Python: the same code on
`rask.array` / `rask.dataframe` / `rask.image` and on Dask (threads), and
the same workload through rask's Rust API (`rask-bench`) to show what the
Python layer adds. One JSON object per measurement, then a table.
Not a test: nothing here asserts speed.

    RASK_PY_PROFILE=release scripts/python.sh install   # a release wheel
    cargo build --release -p rask-bench
    python bench/python_collections.py [--only hist,dot,...] [--repeat 3]
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import numpy as np

from run import birthdays_csv  # the decompressed Birthdays.csv cache bench/run.py keeps

ROOT = pathlib.Path(__file__).resolve().parent.parent
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", pathlib.Path.home() / ".cache" / "rask" / "target"))


def emit(**row):
    print(json.dumps(row), flush=True)
    return row


def timed(f, repeat):
    best = []
    value = None
    for _ in range(repeat):
        t = time.perf_counter()
        value = f()
        best.append(time.perf_counter() - t)
    return best, value


# The workloads: each takes the modules (array, dataframe, ndfilters) and a
# compute function, and is the same code for both engines.

def hist(da, dd, ndf, compute, n=5000):
    added = da.random.normal(9, 1, (n, n)) + da.ones((n, n))
    masked = added[added < 10]
    counts, _ = da.histogram(masked, bins=100, range=[-9, 11])
    return int(compute(counts).sum())


def dot(da, dd, ndf, compute, n=2000):
    x = da.random.random((n, n))
    return float(compute(da.dot(x, x + x.T).sum()))


def randint_mean(da, dd, ndf, compute, shape=(2000, 1000, 100)):
    return float(compute(da.random.randint(0, 100, shape).mean()))


def birthdays(da, dd, ndf, compute):
    df = dd.read_csv(birthdays_csv(), blocksize=4_000_000)
    ak = df[df.state == "AK"]
    mean = df.groupby("state").births.mean()
    top = mean.nlargest(5)
    states = df.state.unique()
    out = compute(ak.births.count(), mean, top, states)
    return int(out[0])


def gaussian_volume(da, dd, ndf, compute, shape=(128, 512, 512), chunks=(64, 512, 512)):
    rng = np.random.default_rng(0)
    vol = rng.random(shape, dtype=np.float32)
    x = da.from_array(vol, chunks=chunks)
    return float(compute(ndf.gaussian_filter(x, sigma=2).mean()))


def to_numpy_1gib(da, dd, ndf, compute, n=1 << 27):
    x = da.ones((n,), chunks=(1 << 24,))
    return int(compute(x).nbytes)


WORKLOADS = {
    "hist": (hist, ["array-hist", "--n", "5000"]),
    "dot": (dot, ["array-dot", "--n", "2000"]),
    "randint-mean": (randint_mean, ["array-mean", "--shape", "2000,1000,100"]),
    "birthdays": (birthdays, None),
    "gaussian-volume": (gaussian_volume, ["image-gauss", "--case", "volume"]),
    "compute-1gib-to-numpy": (to_numpy_1gib, None),
}


def rask_engine(threads):
    import rask
    import rask.array as ra
    import rask.dataframe as rd
    from rask.distributed import Client, LocalCluster
    from rask.image import ndfilters

    cluster = LocalCluster(n_workers=1, threads_per_worker=threads)
    client = Client(cluster)

    def compute(*xs):
        out = rask.compute(*xs)
        return out[0] if len(xs) == 1 else out

    return (ra, rd, ndfilters, compute), client


def dask_engine(threads):
    import dask
    import dask.array
    import dask.dataframe
    import dask_image.ndfilters

    def compute(*xs):
        out = dask.compute(*xs, scheduler="threads", num_workers=threads)
        return out[0] if len(xs) == 1 else out

    return dask.array, dask.dataframe, dask_image.ndfilters, compute


def rust_seconds(args, threads):
    exe = TARGET / "release" / "rask-bench"
    if args is None or not exe.exists():
        return None
    out = subprocess.run([str(exe), *args, "--threads", str(threads)], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    secs = [json.loads(line).get("seconds") for line in out.stdout.splitlines() if line.startswith("{")]
    secs = [s for s in secs if isinstance(s, (int, float))]
    return min(secs) if secs else None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--only", default=",".join(WORKLOADS))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = p.parse_args()
    rask_mods, client = rask_engine(args.threads)
    dask_mods = dask_engine(args.threads)
    rows = []
    for name in args.only.split(","):
        f, rust_args = WORKLOADS[name]
        r_secs, r_val = timed(lambda: f(*rask_mods), args.repeat)
        d_secs, d_val = timed(lambda: f(*dask_mods), args.repeat)
        rust = rust_seconds(rust_args, args.threads)
        rows.append(emit(bench=name, rask_python=min(r_secs), dask=min(d_secs), rask_rust=rust,
                         rask_median=statistics.median(r_secs), dask_median=statistics.median(d_secs),
                         same_value=bool(np.isclose(r_val, d_val, rtol=1e-3)), threads=args.threads))
    print(f"\nmachine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    print(f"{'workload':<24} {'rask py s':>10} {'dask s':>8} {'rask x':>7} {'rust s':>8} {'py layer':>9}")
    for r in rows:
        layer = f"{(r['rask_python'] / r['rask_rust'] - 1) * 100:+.0f} %" if r["rask_rust"] else "-"
        rust = f"{r['rask_rust']:.3f}" if r["rask_rust"] else "-"
        print(f"{r['bench']:<24} {r['rask_python']:>10.3f} {r['dask']:>8.3f} {r['dask'] / r['rask_python']:>7.2f} "
              f"{rust:>8} {layer:>9}")
    client.close()


if __name__ == "__main__":
    main()
