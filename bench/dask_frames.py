"""The dataframe benchmarks on Python: dask.dataframe (threads and
distributed) and pandas, printing one JSON line per run.

    dask_frames.py birthdays PATH REPEAT
    dask_frames.py wiki GLOB REPEAT
"""
import json
import sys
import time

import dask
import dask.dataframe as dd
import pandas as pd


def birthdays_dask(path):
    df = dd.read_csv(path)
    n = len(df)
    ak = len(df[df.state == "AK"])
    means = df.groupby("state").mean(numeric_only=True)
    means.compute()
    top = means.births.nlargest(10).compute()
    unique = df.state.unique().compute()
    counts = df.state.value_counts().compute()
    return {"rows": n, "ak": ak, "top": len(top), "states": len(unique), "counts": len(counts)}


def birthdays_pandas(path):
    df = pd.read_csv(path)
    n = len(df)
    ak = len(df[df.state == "AK"])
    means = df.groupby("state").mean(numeric_only=True)
    top = means.births.nlargest(10)
    unique = df.state.unique()
    counts = df.state.value_counts()
    return {"rows": n, "ak": ak, "top": len(top), "states": len(unique), "counts": len(counts)}


def wiki_dask(pattern):
    df = dd.read_csv(pattern)
    counts = df.str.value_counts().compute()
    return {"distinct": len(counts), "top": int(counts.iloc[0])}


def wiki_pandas(pattern):
    import glob
    df = pd.concat([pd.read_csv(p) for p in sorted(glob.glob(pattern))])
    counts = df.str.value_counts()
    return {"distinct": len(counts), "top": int(counts.iloc[0])}


def run(engine, workload, fn, arg, repeat):
    for _ in range(repeat):
        start = time.perf_counter()
        extra = fn(arg)
        secs = time.perf_counter() - start
        print(json.dumps({"engine": engine, "workload": workload, "seconds": secs, **extra}), flush=True)


def main():
    workload, arg, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
    dask_fn, pandas_fn = {"birthdays": (birthdays_dask, birthdays_pandas), "wiki": (wiki_dask, wiki_pandas)}[workload]
    with dask.config.set(scheduler="threads", num_workers=2):
        run("dask-threads", workload, dask_fn, arg, repeat)
    from dask.distributed import Client, LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=None) as cluster, Client(cluster):
        run("dask-distributed", workload, dask_fn, arg, repeat)
    run("pandas", workload, pandas_fn, arg, repeat)


if __name__ == "__main__":
    main()
