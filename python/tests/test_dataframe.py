"""rask.dataframe against dask.dataframe and pandas on the same data.

Every case runs the same code on rask and on Dask (or pandas) and compares
the pandas results with ``assert_frame_equal``/``assert_series_equal``,
with dtypes checked, for several partitionings including empty partitions.
Frames with the default index are compared after ``reset_index(drop=True)``:
rask numbers each partition's rows from 0 and does not keep the original
row labels through filters (docs/ARCHITECTURE.md, "Python dataframes").
"""

import glob
import os

import numpy as np
import pandas as pd
import pandas.testing as tm
import pytest

import rask
import rask.dataframe as rd

dd = pytest.importorskip("dask.dataframe")

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data", "Birthdays.csv.xz")
PARTS = [1, 3, 7]


@pytest.fixture(autouse=True, scope="module")
def _no_env_scheduler():
    for var in ("RASK_SCHEDULER_ADDRESS", "DASK_SCHEDULER_ADDRESS"):
        assert not os.environ.get(var), f"{var} is set: these tests want the embedded cluster"


def make_pdf(n=200, seed=0):
    rng = np.random.default_rng(seed)
    f = rng.normal(10, 3, n)
    f[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({
        "i": rng.integers(-50, 50, n).astype("int64"),
        "f": f,
        "k": pd.Series(rng.choice(["a", "b", "c", "d"], n), dtype=pd.StringDtype("pyarrow")),
        "b": rng.random(n) < 0.5,
        "t": pd.to_datetime("2020-01-01") + pd.to_timedelta(rng.integers(0, 1000, n), unit="D"),
    })


def flat(x):
    return x.reset_index(drop=True)


def both(pdf, n):
    """The same data as a rask frame and a dask frame with n partitions."""
    return rd.from_pandas(pdf, npartitions=n), dd.from_pandas(pdf, npartitions=n)


def check_frame(r, d, index=True, **kw):
    if not index:
        r, d = flat(r), flat(d)
    tm.assert_frame_equal(r, d, check_dtype=True, **kw)


def check_series(r, d, index=True, **kw):
    if not index:
        r, d = flat(r), flat(d)
    tm.assert_series_equal(r, d, check_dtype=True, **kw)


# ------------------------------------------------------------ structure


@pytest.mark.parametrize("n", PARTS)
def test_from_pandas_round_trip(n):
    pdf = make_pdf()
    r, d = both(pdf, n)
    assert r.npartitions == d.npartitions
    assert list(r.columns) == list(d.columns)
    tm.assert_series_equal(r.dtypes, d.dtypes)
    check_frame(r.compute(), d.compute(), index=False)
    assert len(r) == len(pdf)


def test_empty_partitions_and_empty_frame():
    pdf = make_pdf(5)
    r = rd.from_pandas(pdf, npartitions=5)
    # More partitions than rows: Dask splits by chunksize, and so does rask.
    r2 = rd.from_pandas(pdf, chunksize=2)
    assert r2.npartitions == 3
    check_frame(r2.compute(), pdf, index=False)
    empty = rd.from_pandas(pdf.iloc[:0], npartitions=1)
    assert len(empty) == 0
    check_frame(empty.compute(), pdf.iloc[:0], index=False)
    # Filters that leave some partitions empty.
    f = r[r.i > 1000]
    assert len(f) == 0
    check_frame(f.compute(), pdf[pdf.i > 1000], index=False)
    check_series(f.i.value_counts().compute(), pdf[pdf.i > 1000].i.value_counts(), check_index_type=False)


@pytest.mark.parametrize("n", [2, 5])
def test_operations_over_empty_partitions(n):
    # Sorted by time, so the filter leaves the later partitions empty.
    pdf = make_pdf(100).sort_values("t").reset_index(drop=True)
    r, d = both(pdf, n)
    cut = pdf.t.iloc[15]
    rf, df_ = r[r.t < cut], d[d.t < cut]
    check_frame(rf.compute(), df_.compute(), index=False)
    check_frame(rf[["k", "i", "f"]].groupby("k").mean().compute(), df_[["k", "i", "f"]].groupby("k").mean().compute(),
                check_index_type=False)
    assert rf.i.sum().compute() == df_.i.sum().compute()
    assert len(rf) == len(df_.compute())
    check_series(rf.i.nlargest(3).compute(), df_.i.nlargest(3).compute(), index=False)
    check_frame(rf.map_partitions(add_ratio, 2.0).compute(), df_.map_partitions(add_ratio, 2.0).compute(),
                index=False)
    check_frame(rf.merge(r[["k"]].drop_duplicates(), on="k").compute().sort_values(["t", "i"]),
                df_.merge(d[["k"]].drop_duplicates(), on="k").compute().sort_values(["t", "i"]), index=False)


def test_non_default_index_is_kept():
    pdf = make_pdf(30).set_index("i")
    r = rd.from_pandas(pdf, npartitions=3)
    out = r.compute()
    assert out.index.name == "i"
    check_frame(out, pdf)


def test_repr_and_html():
    r = rd.from_pandas(make_pdf(), npartitions=4)
    text = repr(r)
    assert "npartitions=4" in text and "float64" in text and "string" in text
    html = r._repr_html_()
    assert "npartitions=4" in html and "<table" in html and "datetime64[ns]" in html
    assert "dtype: int64" in repr(r.i)


def test_head_returns_pandas():
    pdf = make_pdf()
    r, d = both(pdf, 4)
    check_frame(r.head(), d.head())
    check_frame(r.head(80, npartitions=3), d.head(80, npartitions=3), index=False)
    check_series(r.f.head(3), d.f.head(3))


# ------------------------------------------------------------ selection and elementwise


@pytest.mark.parametrize("n", PARTS)
def test_selection_filters_and_arithmetic(n):
    pdf = make_pdf()
    r, d = both(pdf, n)
    cases = [
        lambda x: x[["i", "k"]],
        lambda x: x[x.k == "a"],
        lambda x: x[(x.i > 0) & (x.f < 10)],
        lambda x: x[(x.i > 40) | ~x.b],
        lambda x: x.loc[x.f.isna()],
        lambda x: x.loc[x.i.between(-5, 5), ["i", "f"]],
        lambda x: x[x.k.isin(["b", "d"])],
        lambda x: x.assign(g=x.i * 2 + 1, h=x.f / 3.0, m=x.i % 7, q=x.i // 4, neg=-x.f),
        lambda x: x.assign(c=1.5),
        lambda x: x.assign(s=x.i + x.f, r=10 - x.i, u=2 * x.f),
        lambda x: x.astype({"i": "float64"}),
        lambda x: x.rename(columns={"i": "ii", "k": "kk"}),
        lambda x: x.dropna(),
        lambda x: x.dropna(subset=["f"]),
        lambda x: x.fillna({"f": 0.0}),
        lambda x: x.assign(y=x.t.dt.year, mo=x.t.dt.month, dw=x.t.dt.dayofweek),
    ]
    for case in cases:
        rr, dr = case(r).compute(), case(d).compute()
        if "y" in dr:  # pandas' dt parts are int32; so are rask's
            pass
        check_frame(rr, dr, index=False)


def test_str_accessor_against_pandas_object_strings():
    # rask's str results are int64/bool/string (pandas' object-string
    # semantics); Dask's pyarrow strings give nullable Int64/boolean.
    pdf = make_pdf().astype({"k": object})
    r = rd.from_pandas(pdf, npartitions=3)
    out = r.assign(up=r.k.str.upper(), n=r.k.str.len(), sw=r.k.str.startswith("a"),
                   c=r.k.str.contains("b"), lo=r.k.str.upper().str.lower()).compute()
    ref = pdf.assign(up=pdf.k.str.upper(), n=pdf.k.str.len(), sw=pdf.k.str.startswith("a"),
                     c=pdf.k.str.contains("b"), lo=pdf.k.str.upper().str.lower())
    for c in ["k", "up", "lo"]:
        ref[c] = ref[c].astype(out[c].dtype)
    check_frame(out, ref, index=False)


def test_series_names_follow_pandas():
    pdf = make_pdf()
    r, d = both(pdf, 3)
    for case in [lambda x: x.i + 1, lambda x: x.i + x.f, lambda x: x.i == x.i, lambda x: x.f.fillna(-1.0),
                 lambda x: x.f.dropna(), lambda x: x.i.astype("float64"), lambda x: x["k"]]:
        check_series(case(r).compute(), case(d).compute(), index=False)


def test_setitem():
    pdf = make_pdf()
    r, d = both(pdf, 3)
    r["z"] = r.i * 3
    d["z"] = d.i * 3
    check_frame(r.compute(), d.compute(), index=False)


# ------------------------------------------------------------ reductions


@pytest.mark.parametrize("n", PARTS)
def test_series_reductions_dtypes(n):
    pdf = make_pdf()
    r, d = both(pdf, n)
    for col in ["i", "f", "b"]:
        for func in ["sum", "mean", "min", "max", "count", "std", "var"]:
            if col == "b" and func in ("std", "var", "mean", "min", "max"):
                continue
            rv = getattr(r[col], func)().compute()
            dv = getattr(d[col], func)().compute()
            assert type(rv) is type(dv), (col, func, type(rv), type(dv))
            np.testing.assert_allclose(rv, dv, rtol=1e-12, err_msg=f"{col}.{func}")
    total = r.i.sum()
    assert isinstance(total, rd.Scalar)
    ratio = (r.i.sum() / r.i.count()).compute()
    assert type(ratio) is type(pdf.i.sum() / pdf.i.count()) and ratio == pdf.i.sum() / pdf.i.count()
    assert (2 * r.f.max() - 1).compute() == 2 * pdf.f.max() - 1
    assert r.i.sum().compute().dtype == np.int64
    assert r.k.nunique().compute() == pdf.k.nunique()
    check_series(r.k.unique().compute().sort_values(), pd.Series(pdf.k.unique(), name="k").astype(d.k.dtype)
                 .sort_values(), index=False)


@pytest.mark.parametrize("n", PARTS)
def test_value_counts_nlargest(n):
    pdf = make_pdf()
    r, d = both(pdf, n)
    rv = r.k.value_counts().compute()
    pv = pdf.k.astype(object).value_counts()  # pandas on object strings: int64 counts (Dask's are int64[pyarrow])
    assert rv.name == "count" and rv.index.name == "k" and rv.dtype == np.int64
    assert rv.is_monotonic_decreasing
    check_series(rv.sort_index(), pv.sort_index(), check_index_type=False)
    check_series(r.i.nlargest(7).compute(), d.i.nlargest(7).compute(), index=False)
    check_series(r.f.nsmallest(5).compute(), d.f.nsmallest(5).compute(), index=False)
    check_series(r.nlargest(5, "i").compute().i, d.nlargest(5, "i").compute().i, index=False)
    check_series(r.nsmallest(6, "f").compute().f, d.nsmallest(6, "f").compute().f, index=False)


@pytest.mark.parametrize("n", PARTS)
def test_groupby(n):
    pdf = make_pdf()
    r, d = both(pdf, n)
    num = ["k", "i", "f"]
    cases = [
        lambda x: x[num].groupby("k").mean(),
        lambda x: x[num].groupby("k").sum(),
        lambda x: x[num].groupby("k").count(),
        lambda x: x[num].groupby("k").min(),
        lambda x: x[num].groupby("k").max(),
        lambda x: x[num].groupby("k").std(),
        lambda x: x[num].groupby("k").var(),
        lambda x: x.groupby("k").f.mean(),
        lambda x: x.groupby("k")["i"].sum(),
        lambda x: x.groupby("k").size(),
        lambda x: x.groupby(["k", "b"]).i.max(),
        lambda x: x.groupby("k").agg({"i": "sum", "f": "mean"}),
        lambda x: x.groupby("k").agg({"f": ["mean", "max"]}),
        lambda x: x.groupby("k").i.nunique(),
    ]
    for j, case in enumerate(cases):
        # rask sorts by the keys, as pandas; Dask's nunique comes unsorted.
        rr, dr = case(r).compute(), case(d).compute().sort_index()
        if isinstance(dr, pd.Series):
            check_series(rr, dr, check_index_type=False, obj=f"case {j}")
        else:
            check_frame(rr, dr, check_index_type=False, obj=f"case {j}")
    split = r[num].groupby("k", split_out=3).mean()
    assert split.npartitions == 3
    check_frame(split.compute().sort_index(), d[num].groupby("k").mean().compute(), check_index_type=False)


def test_groupby_as_index_false_and_series_describe_match_pandas():
    pdf = make_pdf()
    r = rd.from_pandas(pdf, npartitions=4)
    check_frame(r[["k", "i", "f"]].groupby("k", as_index=False).mean().compute(),
                pdf[["k", "i", "f"]].groupby("k", as_index=False).mean())
    check_frame(r.groupby("k").f.agg(["mean", "max"]).compute(), pdf.groupby("k").f.agg(["mean", "max"]))
    # Exact quartiles, as pandas (Dask's are approximate over partitions).
    check_series(r.f.describe().compute(), pdf.f.describe(), rtol=1e-12)


def test_loc_takes_row_i_of_every_partition():
    # rask's default index numbers each partition's rows from 0, as a Dask
    # frame read from CSV: loc[0] is the first row of every partition.
    pdf = make_pdf(30)
    r = rd.from_pandas(pdf, npartitions=3)
    check_frame(r.loc[0].compute(), pdf.iloc[[0, 10, 20]], index=False)
    check_frame(r.loc[r.i > 0, ["i", "k"]].compute(), pdf.loc[pdf.i > 0, ["i", "k"]], index=False)


def test_describe():
    pdf = make_pdf()
    r, d = both(pdf, 3)
    rr = r[["i", "f"]].describe().compute()
    pr = pdf[["i", "f"]].describe()
    check_frame(rr, pr, rtol=1e-9)


@pytest.mark.parametrize("n", PARTS)
def test_sort_drop_duplicates_merge(n):
    pdf = make_pdf()
    r, d = both(pdf, n)
    check_frame(r.sort_values("i").compute()[["i"]], d.sort_values("i").compute()[["i"]], index=False)
    rr = r[["k", "b"]].drop_duplicates().compute().sort_values(["k", "b"])
    dr = d[["k", "b"]].drop_duplicates().compute().sort_values(["k", "b"])
    check_frame(rr, dr, index=False)
    right = pd.DataFrame({"k": ["a", "b", "c", "e"], "w": [1.0, 2.0, 3.0, 4.0]})
    rright, dright = rd.from_pandas(right, npartitions=2), dd.from_pandas(right, npartitions=2)
    for how in ["inner", "left"]:
        rm = r.merge(rright, on="k", how=how).compute().sort_values(["i", "f", "k", "t"]).reset_index(drop=True)
        dm = d.merge(dright, on="k", how=how).compute().sort_values(["i", "f", "k", "t"]).reset_index(drop=True)
        check_frame(rm, dm)
    other = right.rename(columns={"k": "key"}).assign(i=np.arange(4))
    rother, dother = rd.from_pandas(other, npartitions=1), dd.from_pandas(other, npartitions=1)
    for how in ["inner", "left", "outer"]:
        rm = r.merge(rother, left_on="k", right_on="key", how=how).compute()
        dm = d.merge(dother, left_on="k", right_on="key", how=how).compute()
        order = ["i_x", "f", "k", "t", "key"]
        check_frame(rm.sort_values(order).reset_index(drop=True), dm.sort_values(order).reset_index(drop=True))


# ------------------------------------------------------------ map_partitions, compute, persist


def add_ratio(part, factor):
    return part.assign(ratio=part.i / factor)


@pytest.mark.parametrize("n", PARTS)
def test_map_partitions(n):
    pdf = make_pdf()
    r, d = both(pdf, n)
    check_frame(r.map_partitions(add_ratio, 4.0).compute(), d.map_partitions(add_ratio, 4.0).compute(),
                index=False)
    rs = r.i.map_partitions(lambda s: s * 2)
    check_series(rs.compute(), d.i.map_partitions(lambda s: s * 2).compute(), index=False)
    # Results feed built-in operations again.
    out = r.map_partitions(add_ratio, 2.0).groupby("k").ratio.sum().compute()
    check_series(out, d.map_partitions(add_ratio, 2.0).groupby("k").ratio.sum().compute(), check_index_type=False)
    lens = r.map_partitions(lambda p: pd.DataFrame({"n": [len(p)]}), meta={"n": "int64"}).compute()
    assert lens.n.sum() == len(pdf) and len(lens) == n


def test_to_delayed_gives_pandas_partitions():
    pdf = make_pdf(50)
    r = rd.from_pandas(pdf, npartitions=3)
    parts = r.to_delayed()
    assert len(parts) == 3
    sizes = rask.delayed(lambda ps: [len(p) for p in ps])(parts).compute()
    assert sizes == [17, 17, 16]
    first = parts[0].compute()
    assert isinstance(first, pd.DataFrame)
    check_frame(first, pdf.iloc[:17], index=False)


def test_compute_persist_and_client():
    pdf = make_pdf()
    r, d = both(pdf, 4)
    a, b = rask.compute(r.i.sum(), r[r.b].f.mean())
    assert a == pdf.i.sum() and np.isclose(b, pdf[pdf.b].f.mean())
    p = r[r.i > 0].persist()
    check_frame(p.compute(), pdf[pdf.i > 0], index=False)
    g = r.groupby("k").i.sum().persist()
    check_series(g.compute(), d.groupby("k").i.sum().compute(), check_index_type=False)
    from rask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
        fut = client.compute(r.groupby("k").f.mean())
        check_series(fut.result(), d.groupby("k").f.mean().compute(), check_index_type=False)
        assert client.compute(r.i.sum()).result() == pdf.i.sum()
        check_frame(r.map_partitions(add_ratio, 3.0).compute(), d.map_partitions(add_ratio, 3.0).compute(),
                    index=False)


# ------------------------------------------------------------ files


def test_csv_and_parquet_round_trips(tmp_path):
    pdf = make_pdf(300)
    r = rd.from_pandas(pdf, npartitions=3)
    paths = r.to_csv(str(tmp_path / "csv" / "part-*.csv"))
    assert len(paths) == 3
    back = rd.read_csv(str(tmp_path / "csv" / "part-*.csv"), parse_dates=["t"])
    ref = dd.read_csv(str(tmp_path / "csv" / "part-*.csv"), parse_dates=["t"])
    check_frame(back.compute(), ref.compute(), index=False)
    r.to_parquet(str(tmp_path / "pq"))
    assert len(glob.glob(str(tmp_path / "pq" / "*.parquet"))) == 3
    back = rd.read_parquet(str(tmp_path / "pq"))
    check_frame(back.compute(), pdf.astype({"k": back.dtypes["k"]}), index=False)
    cols = rd.read_parquet(str(tmp_path / "pq"), columns=["i", "k"])
    assert list(cols.columns) == ["i", "k"]
    check_frame(cols.compute(), pd.read_parquet(str(tmp_path / "pq"), columns=["i", "k"])
                .astype({"k": cols.dtypes["k"]}), index=False)


@pytest.mark.parametrize("blocksize", [None, 2000, "4kB"])
def test_read_csv_options(tmp_path, blocksize):
    pdf = make_pdf(400)
    path = tmp_path / "data.csv"
    pdf.to_csv(path, index=False)
    kw = dict(dtype={"i": "float64"}, usecols=["i", "f", "k", "t"], parse_dates=["t"])
    r = rd.read_csv(str(path), blocksize=blocksize, **kw)
    d = dd.read_csv(str(path), blocksize=blocksize, **kw)
    assert list(r.columns) == list(d.columns)
    tm.assert_series_equal(r.dtypes, d.dtypes)
    check_frame(r.compute(), d.compute(), index=False)
    if blocksize is not None:
        assert r.npartitions > 1
    gz = tmp_path / "data.csv.gz"
    pdf.to_csv(gz, index=False)
    check_frame(rd.read_csv(str(gz), **kw).compute(), dd.read_csv(str(gz), blocksize=None, **kw).compute(),
                index=False)


def test_birthdays_tutorial():
    df = rd.read_csv(DATA)
    ref = dd.read_csv(DATA, blocksize=None)
    assert list(df.columns) == list(ref.columns)
    tm.assert_series_equal(df.dtypes, ref.dtypes)
    ak = df[df.state == "AK"]
    assert len(ak) == 7306
    by_state = df.groupby("state").births.mean()
    means = by_state.compute()
    assert abs(means["AK"] - 25.374350) < 1e-6
    check_series(means, ref.groupby("state").births.mean().compute())
    top = by_state.nlargest(5).compute()
    ref_top = ref.groupby("state").births.mean().nlargest(5).compute()
    assert list(top.values) == pytest.approx(list(ref_top.values))
    assert list(top.index) == list(ref_top.index) and top.index.name == "state" and top.name == "births"
    vc = df.state.value_counts().compute()
    tm.assert_series_equal(vc.sort_index(), ref.state.value_counts().compute().sort_index(), check_dtype=False)
    assert vc.is_monotonic_decreasing and vc.dtype == np.int64
    assert df.births.sum().compute() == ref.births.sum().compute()
    check_frame(df.head(), ref.head())


# ------------------------------------------------------------ errors


def test_errors(tmp_path):
    r = rd.from_pandas(make_pdf(), npartitions=2)
    with pytest.raises(KeyError):
        r["nope"]
    with pytest.raises(KeyError):
        r[["i", "nope"]]
    with pytest.raises(AttributeError):
        r.nope
    with pytest.raises(KeyError):
        r.groupby("nope")
    with pytest.raises(TypeError):
        r.astype({"i": "complex128"})
    with pytest.raises(TypeError):
        r.k + 1
    with pytest.raises(TypeError):
        r.k.sum()
    with pytest.raises(FileNotFoundError):
        rd.read_csv(str(tmp_path / "missing-*.csv"))
    with pytest.raises(FileNotFoundError):
        rd.read_csv(str(tmp_path / "missing.csv"))
    with pytest.raises(FileNotFoundError):
        rd.read_parquet(str(tmp_path / "missing.parquet"))
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3,4\n5,6,7\n8,9\n")
    with pytest.raises(ValueError, match=r"bad\.csv:4: expected 2 fields, saw 3"):
        rd.read_csv(str(bad)).compute()
    with pytest.raises(ValueError):
        rd.from_pandas(make_pdf(), npartitions=2).merge(rd.from_pandas(make_pdf(), npartitions=1), on="k",
                                                        how="cross")


# ------------------------------------------------------------ Arrow and processes


def test_arrow_stream_capsule():
    import pyarrow as pa

    from rask import _rask

    table = pa.table({"x": pa.array(np.arange(10, dtype=np.int64)), "s": pa.array(list("abcdefghij"))})
    frame = _rask.Frame.from_arrow(table, [0, 4, 4, 10], "t1")
    assert frame.npartitions == 3
    stream = frame.meta()
    # A capsule that nobody consumes is released when it is dropped.
    for _ in range(100):
        stream.__arrow_c_stream__()
    schema = pa.RecordBatchReader.from_stream(stream).schema
    assert schema.names == ["x", "s"] and schema.field("s").type == pa.string()
    # An unsupported object is a TypeError, not a crash.
    with pytest.raises((TypeError, AttributeError)):
        _rask.Frame.from_arrow(object(), [0], "t2")
    with pytest.raises(ValueError):
        _rask.Frame.from_arrow(table, [0, 11], "t3")
    # compute() concatenates partitions, empty ones included.
    out = rd.DataFrame(frame).compute()
    assert out.x.tolist() == list(range(10)) and out.index.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 4, 5]


def test_on_a_cluster_of_processes(cluster, tmp_path):
    from rask.distributed import Client

    cluster.add_plain_worker()
    cluster.add_python_worker()
    cluster.wait_workers(2)
    pdf = make_pdf(500).astype({"k": object})
    path = tmp_path / "d.csv"
    pdf.to_csv(path, index=False)
    ref = dd.read_csv(str(path), blocksize=4000, parse_dates=["t"])
    with Client(cluster.address) as client:
        r = rd.read_csv(str(path), blocksize=4000, parse_dates=["t"])
        assert r.npartitions > 1
        assert len(r) == len(pdf)
        check_series(r.groupby("k").f.mean().compute(), ref.groupby("k").f.mean().compute(), check_index_type=False)
        check_frame(r.map_partitions(add_ratio, 2.0).compute(), ref.map_partitions(add_ratio, 2.0).compute(),
                    index=False)
        assert client.compute(r.i.sum()).result() == pdf.i.sum()
        small = rd.from_pandas(pdf, npartitions=3)
        check_frame(small[small.i > 0].compute(), pdf[pdf.i > 0].astype({"k": r.dtypes["k"]}), index=False)


@pytest.fixture
def s3(monkeypatch):
    """A moto_server on 127.0.0.1 with a bucket; its endpoint as storage options."""
    import socket
    import subprocess
    import sys
    import time

    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("moto")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.1)
        for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_REGION": "us-east-1"}.items():
            monkeypatch.setenv(k, v)
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket="frames")
        yield {"endpoint_url": endpoint}, client
    finally:
        proc.kill()
        proc.wait()


def test_s3_round_trips(s3):
    options, client = s3
    pdf = make_pdf(200)
    r = rd.from_pandas(pdf, npartitions=2)
    r.to_parquet("s3://frames/pq/", storage_options=options)
    r.to_csv("s3://frames/csv/part-*.csv", storage_options=options)
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="frames")["Contents"])
    assert keys == ["csv/part-0.csv", "csv/part-1.csv", "pq/part.0.parquet", "pq/part.1.parquet"]
    back = rd.read_parquet("s3://frames/pq/", storage_options=options)
    check_frame(back.compute(), pdf, index=False)
    csv = rd.read_csv("s3://frames/csv/*.csv", parse_dates=["t"], storage_options=options)
    check_frame(csv.compute(), pdf, index=False)
    with pytest.raises(FileNotFoundError):
        rd.read_csv("s3://frames/nothing-*.csv", storage_options=options)
