"""Reference results from pandas and scikit-learn for rask's dataframe tests.

    pandas_ref.py gen PATH ROWS SEED   writes a generated CSV
    pandas_ref.py eval PATH            prints every case's result as JSON
    pandas_ref.py compress SRC OUT     compresses SRC's bytes into OUT with the
                                       codec its suffix names, as pandas would

The generated data mixes what real files hold: integers with and without
gaps, floats with NaN, strings with missing values, quoted fields with
commas, quotes and newlines, dates and booleans.
"""
import json
import math
import sys

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression


def gen(path, rows, seed):
    rng = np.random.default_rng(seed)
    n = rows
    words = np.array(["apple", "Banana", "cherry", "date", "elder", "fig", "grape"])
    s = rng.choice(words, n).astype(object)
    s[rng.random(n) < 0.1] = None
    a = rng.integers(-50, 50, n).astype(float)
    a[rng.random(n) < 0.15] = np.nan
    f = np.round(rng.normal(10, 5, n), 4)
    f[rng.random(n) < 0.1] = np.nan
    q = np.array([f'say "hi", {i}' if i % 17 == 0 else (f"two\nlines {i}" if i % 23 == 0 else f"plain{i % 5}") for i in range(n)], dtype=object)
    d = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 800, n), unit="D")
    df = pd.DataFrame({
        "id": np.arange(n),
        "i": rng.integers(0, 1000, n),
        "a": a,
        "f": f,
        "s": s,
        "k": rng.choice(["north", "south", "east", "west"], n),
        "g": rng.integers(0, 12, n),
        "d": d.strftime("%Y-%m-%d"),
        "b": rng.random(n) < 0.3,
        "q": q,
        "x1": np.round(rng.normal(0, 1, n), 6),
        "x2": np.round(rng.normal(100, 20, n), 6),
    })
    df["y"] = np.round(3.0 * df.x1 - 0.25 * df.x2 + 7 + rng.normal(0, 0.5, n), 6)
    df.to_csv(path, index=False)


def col_values(s):
    out = []
    for v in s.tolist():
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT:
            out.append(None)
        elif isinstance(v, (bool, np.bool_)):
            out.append(bool(v))
        elif isinstance(v, (int, np.integer)):
            out.append(int(v))
        elif isinstance(v, (float, np.floating)):
            out.append(float(v))
        elif isinstance(v, pd.Timestamp):
            out.append(v.strftime("%Y-%m-%d %H:%M:%S"))
        else:
            out.append(str(v))
    return out


def table(df, index=True):
    """A frame (or series) as {columns, dtypes, data}; a named index becomes leading columns."""
    if isinstance(df, pd.Series):
        df = df.to_frame()
    if index and df.index.names != [None]:
        df = df.reset_index()
    else:
        df = df.reset_index(drop=True)
    return {
        "columns": [str(c) for c in df.columns],
        "dtypes": [str(t) for t in df.dtypes],
        "data": {str(c): col_values(df[c]) for c in df.columns},
    }


def evaluate(path):
    df = pd.read_csv(path, parse_dates=["d"])
    r = {}
    r["read"] = table(df)
    r["filter"] = table(df[(df.i > 500) & df.s.isin(["apple", "fig"])])
    r["arith"] = table(pd.DataFrame({"p": df.i * 2 + df.f, "q": df.i / 3, "m": df.i % 7, "n": -df.a}))
    r["strings"] = table(pd.DataFrame({
        "lower": df.s.str.lower(), "len": df.s.str.len(),
        "contains": df.s.str.contains("an"), "starts": df.s.str.startswith("B"),
    }).dropna())
    r["dates"] = table(pd.DataFrame({
        "year": df.d.dt.year, "month": df.d.dt.month, "day": df.d.dt.day, "dow": df.d.dt.dayofweek,
    }).astype("int64"))
    r["between_isnull"] = table(pd.DataFrame({"bt": df.i.between(100, 200), "na": df.a.isnull(), "nn": df.s.notnull()}))
    r["astype_rename"] = table(df[["i", "g", "a"]].astype({"i": "float64", "a": "float64"}).rename(columns={"g": "group"}))
    r["head_tail"] = {"head": col_values(df.head(4).id), "tail": col_values(df.tail(3).id)}
    r["more_strings"] = table(pd.DataFrame({"upper": df.s.str.upper(), "ends": df.s.str.endswith("e")}).dropna())
    r["dropna"] = table(df[["id", "a", "s"]].dropna())
    r["fillna"] = table(df[["id", "a", "s"]].fillna({"a": 0.0, "s": "none"}))
    aggs = {"i": ["count", "sum", "mean", "min", "max", "std", "var"], "f": ["count", "sum", "mean", "min", "max", "std"]}
    g = df.groupby("k").agg(aggs)
    g.columns = [f"{c}_{f}" for c, f in g.columns]
    r["groupby_agg"] = table(g)
    r["groupby_two_keys"] = table(df.groupby(["k", "g"])[["i", "f"]].mean())
    r["groupby_size"] = table(df.groupby("k").size().rename("size"))
    r["groupby_nunique"] = table(df.groupby("k").s.nunique())
    r["groupby_minmax_str"] = table(df.dropna(subset=["s"]).groupby("k")[["s"]].min())
    vc = df.s.value_counts().reset_index()
    vc = vc.sort_values(["count", "s"], ascending=[False, True], kind="stable")
    r["value_counts"] = table(vc, index=False)
    r["nlargest"] = table(df.nlargest(7, "f")[["id", "f"]], index=False)
    r["nsmallest"] = table(df.nsmallest(7, "i", keep="first")[["id", "i"]], index=False)
    r["unique"] = {"values": col_values(pd.Series(df.s.unique()))}
    r["sort_values"] = table(df.sort_values("f", kind="stable")[["id", "f"]], index=False)
    r["drop_duplicates"] = table(df[["k", "g"]].drop_duplicates(), index=False)
    r["describe"] = table(df[["i", "a", "f"]].describe().rename_axis("statistic"))
    r["reductions"] = {
        "sum": float(df.f.sum()), "mean": float(df.f.mean()), "std": float(df.f.std()), "var": float(df.f.var()),
        "min": float(df.f.min()), "max": float(df.f.max()), "count": int(df.f.count()), "isum": int(df.i.sum()),
        "nunique": int(df.s.nunique()), "len": len(df),
    }
    left = df[["id", "k", "i"]]
    right = df[["k", "g"]].drop_duplicates("k").rename(columns={"g": "gk"})
    right = pd.concat([right, pd.DataFrame({"k": ["nowhere"], "gk": [99]})])
    small = df[df.i < 30][["g", "f"]].rename(columns={"f": "i"})
    for how in ["inner", "left", "right", "outer"]:
        r[f"merge_{how}"] = table(left.merge(right, on="k", how=how), index=False)
        r[f"merge_g_{how}"] = table(df[["id", "g", "i"]].merge(small, on="g", how=how), index=False)
    clean = df[["x1", "x2", "y"]].dropna()
    lr = LinearRegression().fit(clean[["x1", "x2"]], clean.y)
    r["linreg"] = {"coef": [float(c) for c in lr.coef_], "intercept": float(lr.intercept_),
                   "score": float(lr.score(clean[["x1", "x2"]], clean.y))}
    json.dump(r, sys.stdout)


def parquet_write(csv_path, out_path):
    """pandas (pyarrow) writes the generated data as Parquet, in row groups."""
    df = pd.read_csv(csv_path, parse_dates=["d"])
    df.to_parquet(out_path, index=False, row_group_size=700)


def parquet_read(pattern):
    """pandas reads Parquet files rask wrote, in file order."""
    import glob
    files = sorted(glob.glob(pattern), key=lambda p: int(p.rsplit(".", 2)[-2]))
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    json.dump(table(df, index=False), sys.stdout)


def compress(src, out):
    """Writes SRC's bytes to OUT through the codec pandas infers from OUT's
    suffix (gzip, bz2, xz from the standard library, zstd from zstandard),
    in two concatenated members or frames where the codec allows it."""
    import bz2, gzip, lzma
    import zstandard
    data = open(src, "rb").read()
    half = len(data) // 2
    if out.endswith(".gz"):
        blob = gzip.compress(data[:half]) + gzip.compress(data[half:])
    elif out.endswith(".bz2"):
        blob = bz2.compress(data[:half]) + bz2.compress(data[half:])
    elif out.endswith(".xz"):
        blob = lzma.compress(data)
    elif out.endswith(".zst"):
        c = zstandard.ZstdCompressor()
        blob = c.compress(data[:half]) + c.compress(data[half:])
    else:
        raise SystemExit(f"no codec for {out}")
    open(out, "wb").write(blob)


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1] == "parquet_write":
        parquet_write(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "parquet_read":
        parquet_read(sys.argv[2])
    elif sys.argv[1] == "compress":
        compress(sys.argv[2], sys.argv[3])
    else:
        evaluate(sys.argv[2])
