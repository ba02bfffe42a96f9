#!/usr/bin/env python3
"""Runs a rask benchmark and its Python Dask counterpart in one session on
this machine and prints a comparison table. Usage:

    python3 bench/run.py tasks      # tiny tasks + tree reduction
    python3 bench/run.py images     # gaussian_filter(sigma=2).mean(): rask vs dask-image vs scipy
    python3 bench/run.py distributed  # tiny tasks on 2 worker processes: rask vs dask.distributed
    python3 bench/run.py transfer     # 1 GiB handed between two worker processes: rask vs dask.distributed

Installs dask[distributed] from PyPI into a cached virtualenv on first use.
"""

import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = pathlib.Path(os.environ.get("RASK_CACHE", pathlib.Path.home() / ".cache" / "rask"))
VENV = CACHE / "bench-venv"
TARGET = os.environ.get("CARGO_TARGET_DIR", str(CACHE / "target"))


def python():
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "dask[distributed]==2025.*", "numpy", "pandas", "pyarrow"], check=True)
    return str(py)


def lines(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def rask(*args):
    env = dict(os.environ, CARGO_TARGET_DIR=TARGET)
    # rask-cli too: the distributed benchmarks start `rask scheduler` and `rask worker`.
    subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "rask-bench", "-p", "rask-cli"],
                   check=True, cwd=ROOT, env=env)
    return lines([f"{TARGET}/release/rask-bench", *args])


def best(rows, engine):
    mine = [r for r in rows if r["engine"] == engine]
    return max(mine, key=lambda r: r["tasks_per_second"]) if mine else None


def tasks():
    rows = rask("tasks", "--n", "100000", "--repeat", "3")
    rows += lines([python(), str(ROOT / "bench" / "dask_tasks.py")])
    base = best(rows, "rask-local")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"{'engine':<18} {'tasks':>8} {'build s':>8} {'compute s':>10} {'tasks/s':>10} {'us/task':>8} {'rask x':>7}")
    for engine in ["rask-local", "dask-threads", "dask-distributed"]:
        r = best(rows, engine)
        if r is None:
            continue
        ratio = base["tasks_per_second"] / r["tasks_per_second"]
        print(f"{engine:<18} {r['tasks']:>8} {r['build_seconds']:>8.3f} {r['compute_seconds']:>10.3f} "
              f"{r['tasks_per_second']:>10.0f} {r['microseconds_per_task']:>8.2f} {ratio:>7.1f}")


def arrays():
    rows = rask("array-sum") + rask("array-mean") + rask("array-dot") + rask("array-dot", "--n", "10000") + rask("array-hist")
    rows += lines([python(), str(ROOT / "bench" / "dask_arrays.py"), "--numpy-mean"])
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    for bench, metric in [("inmemory-sum", "gb_per_second"), ("randint-mean", "seconds"), ("dot", "seconds"), ("histogram", "seconds")]:
      for size in sorted({r.get("n") for r in rows if r["bench"] == bench}, key=lambda x: x or 0):
        mine = [r for r in rows if r["bench"] == bench and r.get("n") == size]
        base = next(r for r in mine if r["engine"] == "rask-local")
        print(f"\n{bench}" + (f" n={size}" if size else ""))
        for r in mine:
            if metric == "seconds":
                ratio = r["seconds"] / base["seconds"]
                print(f"  {r['engine']:<18} {r['seconds']:>8.3f} s   rask is {ratio:>5.2f}x faster")
            else:
                ratio = base[metric] / r[metric]
                print(f"  {r['engine']:<18} {r[metric]:>8.2f} GB/s  rask is {ratio:>5.2f}x faster")


IMAGE_PEERS = ["dask-image", "scipy", "tifffile"]


def image_python():
    py = python()
    probe = subprocess.run([py, "-c", "import dask_image, scipy, tifffile"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run([py, "-m", "pip", "install", "-q", *IMAGE_PEERS], check=True)
    return py


def images():
    """A stack of 20 uint16 TIFF volumes 40x1344x1024 read with imread, and a
    128x512x512 float32 volume in memory: gaussian_filter(sigma=2), mean."""
    tiff_dir = str(CACHE / "bench-tiffs")
    rows = rask("image-gauss", "--case", "volume", "--repeat", "3")
    rows += rask("image-gauss", "--case", "tiff", "--dir", tiff_dir, "--repeat", "2")
    py = image_python()
    rows += lines([py, str(ROOT / "bench" / "dask_images.py"), "--case", "volume"])
    rows += lines([py, str(ROOT / "bench" / "dask_images.py"), "--case", "tiff", "--dir", tiff_dir, "--repeat", "1"])
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    for case in ["volume-float32", "tiff-stack-uint16"]:
        mine = [r for r in rows if r.get("case") == case]
        bests = {}
        for r in mine:
            if r["engine"] not in bests or r["seconds"] < bests[r["engine"]]["seconds"]:
                bests[r["engine"]] = r
        base = bests["rask-local"]
        print(f"\n{case}: {base['voxels'] / 1e6:.0f} Mvox")
        for engine, r in bests.items():
            print(f"  {engine:<18} {r['seconds']:>8.3f} s {r['mvox_per_second']:>8.1f} Mvox/s  "
                  f"rask is {r['seconds'] / base['seconds']:>5.2f}x faster  (mean {r['value']:.6g})")


def birthdays_csv():
    """The repository's data/Birthdays.csv.xz, decompressed once into a
    cache: both engines then read the plain CSV in blocks, as the tutorial does."""
    import lzma
    out = pathlib.Path.home() / ".cache" / "rask" / "bench" / "Birthdays.csv"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_suffix(".partial")
        partial.write_bytes(lzma.decompress((ROOT / "data" / "Birthdays.csv.xz").read_bytes()))
        partial.rename(out)
    return str(out)


def frames():
    """The Birthdays workflow and str.value_counts() over 4 generated
    Wikipedia-edits-shaped CSV files (about 1 GB), against dask.dataframe
    (threads, distributed) and pandas."""
    birthdays = os.environ.get("RASK_BIRTHDAYS") or birthdays_csv()
    wiki_dir = "/tmp/rask-bench-wiki"
    rows = rask("df-birthdays", "--path", birthdays, "--repeat", "3")
    rows += rask("df-wiki", "--dir", wiki_dir, "--repeat", "2")
    rows += lines([python(), str(ROOT / "bench" / "dask_frames.py"), "birthdays", birthdays, "3"])
    rows += lines([python(), str(ROOT / "bench" / "dask_frames.py"), "wiki", f"{wiki_dir}/*.csv", "2"])
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    for workload in ["birthdays", "wiki"]:
        mine = [r for r in rows if r["workload"] == workload]
        base = min(r["seconds"] for r in mine if r["engine"] == "rask-local")
        print(f"\n{workload}")
        print(f"{'engine':<18} {'best s':>8} {'median s':>9} {'rask x':>7}")
        for engine in ["rask-local", "dask-threads", "dask-distributed", "pandas"]:
            secs = [r["seconds"] for r in mine if r["engine"] == engine]
            if secs:
                print(f"{engine:<18} {min(secs):>8.3f} {statistics.median(secs):>9.3f} {min(secs) / base:>7.1f}")


def simulate():
    for workers, tasks_n in [(1000, 1_000_000)]:
        for r in rask("simulate", "--tasks", str(tasks_n), "--workers", str(workers)):
            print(json.dumps(r))


DASK_DISTRIBUTED = """
import sys
sys.path.insert(0, sys.argv[1])
import dask_tasks
from dask.distributed import Client, LocalCluster
if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        dask_tasks.run("dask-distributed", int(sys.argv[2]), 2, 2, 1, client)
"""


def distributed():
    """Tiny tasks on a real cluster: a scheduler and 2 worker processes with
    one thread each, rask (100,000 leaves) against dask.distributed (10,000
    leaves: at its rate, 100,000 would take minutes); the rate is what counts."""
    rows = rask("distributed-tasks", "--n", "100000", "--workers", "2", "--threads", "1", "--repeat", "3")
    script = CACHE / "dask_distributed_tasks.py"
    script.write_text(DASK_DISTRIBUTED)
    rows += lines([python(), str(script), str(ROOT / "bench"), "10000"])
    base = best(rows, "rask-distributed")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"{'engine':<18} {'tasks':>8} {'compute s':>10} {'tasks/s':>10} {'us/task':>8} {'rask x':>7}")
    for engine in ["rask-distributed", "dask-distributed"]:
        r = best(rows, engine)
        if r is None:
            continue
        ratio = base["tasks_per_second"] / r["tasks_per_second"]
        print(f"{engine:<18} {r['tasks']:>8} {r['compute_seconds']:>10.3f} {r['tasks_per_second']:>10.0f} "
              f"{r['microseconds_per_task']:>8.2f} {ratio:>7.1f}")


def transfer():
    """A 1 GiB array handed from a retiring worker process to a fresh one,
    rask against dask.distributed (no nanny), in GB/s per round."""
    rows = rask("transfer-workers", "--mib", "1024", "--repeat", "4")
    rows += lines([python(), str(ROOT / "bench" / "dask_transfer.py"), "1024", "3"])
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"{'engine':<18} {'round':>5} {'seconds':>8} {'GB/s':>6}")
    for r in rows:
        print(f"{r['engine']:<18} {r['round']:>5} {r['seconds']:>8.3f} {r['gb_per_second']:>6.2f}")


if __name__ == "__main__":
    {"tasks": tasks, "arrays": arrays, "frames": frames, "simulate": simulate, "images": images,
     "distributed": distributed, "transfer": transfer}[sys.argv[1] if len(sys.argv) > 1 else "tasks"]()
