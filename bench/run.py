#!/usr/bin/env python3
"""Runs a rask benchmark and its Python Dask counterpart in one session on
this machine and prints a comparison table. Usage:

    python3 bench/run.py tasks      # tiny tasks + tree reduction

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
        subprocess.run([str(py), "-m", "pip", "install", "-q", "dask[distributed]==2025.*", "numpy", "pandas"], check=True)
    return str(py)


def lines(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def rask(*args):
    env = dict(os.environ, CARGO_TARGET_DIR=TARGET)
    subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "rask-bench"], check=True, cwd=ROOT, env=env)
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


def simulate():
    for workers, tasks_n in [(1000, 1_000_000)]:
        for r in rask("simulate", "--tasks", str(tasks_n), "--workers", str(workers)):
            print(json.dumps(r))


if __name__ == "__main__":
    {"tasks": tasks, "arrays": arrays, "simulate": simulate}[sys.argv[1] if len(sys.argv) > 1 else "tasks"]()
