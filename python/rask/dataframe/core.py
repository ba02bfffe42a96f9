"""``rask.dataframe``'s collections: DataFrame, Series, Scalar and GroupBy.

Each wraps a native object (``rask._rask.Frame``, ``Column``, ``GroupBy``)
whose graph is built in Rust; these classes give Dask's API, parse its
arguments and turn computed partitions into pandas objects with Dask's
index, names and dtypes.
"""

from __future__ import annotations

import html
import numbers
import os
import uuid

import numpy as np
import pandas as pd

from .. import _rask
from ..base import RaskCollection
from . import _convert

__all__ = ["DataFrame", "Series", "Scalar", "from_pandas", "map_partitions"]


def _ensure_client():
    """Operations that compute inside the engine (``len``, ``head``,
    ``to_parquet``, model fitting) use the engine's current client: make
    sure it is the Python default one (or the embedded cluster)."""
    from ..delayed import _client

    return _client()


def _compute_nodes(nodes):
    return _ensure_client()._native.compute(nodes)


# ------------------------------------------------------------ Scalar


def _scalar_of(value):
    """The Python value of a scalar node's result (in a ``python.call``)."""
    if isinstance(value, pd.DataFrame):
        return value.iloc[0, 0]
    return value


def _scalar_op(op, a, b):
    return op(_scalar_of(a), _scalar_of(b))


class Scalar(RaskCollection):
    """A lazy scalar (a Series reduction); ``compute()`` gives the numpy
    scalar pandas gives (an int64 for the sum of an int column).
    Arithmetic between scalars and numbers is lazy too (a Python task)."""

    __slots__ = ("_frame", "_node", "_name", "_py")

    def __init__(self, frame=None, node=None, name="scalar", py=False):
        self._frame = frame
        self._node = node
        self._name = name
        self._py = py  # the node's value is a Python scalar (arithmetic)

    def __rask_nodes__(self):
        return self._frame.nodes() if self._frame is not None else [self._node]

    def __rask_finalize__(self, futures):
        if self._frame is not None:
            pdf = _convert.to_pandas(self._frame.collect(list(futures)), [])
            return pdf.iloc[0, 0]
        value = futures[0].result()
        return value if self._py else np.int64(value)

    def __rask_persist__(self, futures):
        if self._frame is not None:
            return Scalar(frame=self._frame.over_futures(list(futures)), name=self._name)
        return Scalar(node=futures[0].node(), name=self._name, py=self._py)

    def _lazy(self):
        from ..delayed import Delayed

        [node] = self.__rask_nodes__() if self._frame is None else self._frame.nodes()[:1]
        return Delayed(node)

    def _arith(self, op, other, reflected=False):
        import operator

        from ..delayed import _call

        if isinstance(other, Scalar):
            other = other._lazy()
        elif not _is_scalar(other):
            return NotImplemented
        a, b = (other, self._lazy()) if reflected else (self._lazy(), other)
        d = _call(_scalar_op, (getattr(operator, op), a, b), {}, name=f"scalar-{op}", pure=True)
        return Scalar(node=d._node, name=f"{op}-{self._name}", py=True)

    def __repr__(self):
        return f"rask.dataframe.Scalar<{self._name}>"

    def __float__(self):
        return float(self.compute())

    def __int__(self):
        return int(self.compute())

    def __bool__(self):
        raise TypeError("Truth of a lazy Scalar is ambiguous: compute() it first")


for _op in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow"):
    setattr(Scalar, f"__{_op}__", lambda self, other, _op=_op: self._arith(_op, other))
    setattr(Scalar, f"__r{_op}__", lambda self, other, _op=_op: self._arith(_op, other, reflected=True))


# ------------------------------------------------------------ helpers


def _is_scalar(x):
    return x is None or isinstance(x, (numbers.Number, str, bool, np.generic))


def _py_scalar(x):
    if isinstance(x, np.generic):
        return x.item()
    return x


def _columns_list(x):
    if x is None:
        return None
    if isinstance(x, (str, numbers.Number)):
        return [x]
    return list(x)


def _dtype_name(d):
    """A pandas/numpy dtype (or name, or type) as rask's dtype name."""
    if d is str or d is object:
        return "object"
    if isinstance(d, pd.StringDtype) or (isinstance(d, str) and d in ("string", "string[pyarrow]", "str")):
        return "object"
    try:
        dt = np.dtype(d)
    except TypeError:
        raise TypeError(f"data type {d!r} not understood") from None
    if dt.kind == "M":
        return "datetime64[ns]"
    if dt.kind == "O":
        return "object"
    name = dt.name
    if name not in ("int64", "int32", "float64", "float32", "bool"):
        raise TypeError(f"rask dataframes have no dtype {name}: use int64, int32, float64, float32, object, bool "
                        "or datetime64[ns]")
    return name


# ------------------------------------------------------------ DataFrame


class _LocIndexer:
    __slots__ = ("_df",)

    def __init__(self, df):
        self._df = df

    def __getitem__(self, key):
        df = self._df
        cols = None
        if isinstance(key, tuple):
            key, cols = key
        if isinstance(key, slice) and key == slice(None):
            out = df
        elif isinstance(key, Series):
            out = df[key]
        elif isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            out = DataFrame(df._native.loc(int(key)))
        else:
            raise NotImplementedError(f"rask's loc takes a row number, a boolean Series or ':', not {key!r}")
        if cols is not None:
            return out[cols]
        return out


class DataFrame(RaskCollection):
    """A lazy, partitioned pandas-like frame (``dask.dataframe.DataFrame``)."""

    __slots__ = ("_native", "_post", "_meta_cache", "__weakref__")

    def __init__(self, native, post=None):
        object.__setattr__(self, "_native", native)
        object.__setattr__(self, "_post", post)
        object.__setattr__(self, "_meta_cache", None)

    # -- collection protocol
    def __rask_nodes__(self):
        return self._native.nodes()

    def __rask_finalize__(self, futures):
        pdf = _convert.to_pandas(self._native.collect(list(futures)), self._native.index)
        return self._post(pdf) if self._post is not None else pdf

    def __rask_persist__(self, futures):
        return DataFrame(self._native.over_futures(list(futures)), self._post)

    # -- structure
    @property
    def _meta(self):
        if self._meta_cache is None:
            object.__setattr__(self, "_meta_cache", _convert.empty_pandas(self._native.meta(), self._native.index))
        return self._meta_cache

    @property
    def columns(self):
        return pd.Index(self._native.columns)

    @property
    def dtypes(self):
        return self._meta.dtypes

    @property
    def npartitions(self):
        return self._native.npartitions

    @property
    def loc(self):
        return _LocIndexer(self)

    def __len__(self):
        _ensure_client()
        return len(self._native)

    def __iter__(self):
        return iter(self._native.columns)

    def __dir__(self):
        return list(super().__dir__()) + [c for c in self._native.columns if isinstance(c, str) and c.isidentifier()]

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        native = object.__getattribute__(self, "_native")
        if name in native.columns:
            return self[name]
        raise AttributeError(f"'DataFrame' object has no attribute {name!r}")

    def __setattr__(self, name, value):
        if name in self.__slots__:
            object.__setattr__(self, name, value)
        else:
            raise AttributeError("set a column with df[name] = value or assign")

    def __getitem__(self, key):
        if isinstance(key, str):
            return Series(self._native.col(key))
        if isinstance(key, Series):
            if key.dtype != np.dtype(bool):
                raise KeyError(f"a row filter must be a boolean Series, got dtype {key.dtype}")
            return DataFrame(self._native.filter(key._native))
        if isinstance(key, (list, pd.Index, tuple)):
            key = list(key)
            missing = [k for k in key if k not in self._native.columns]
            if missing:
                raise KeyError(f"{missing} not in columns {self._native.columns}")
            return DataFrame(self._native.select(key))
        raise KeyError(key)

    def __setitem__(self, key, value):
        object.__setattr__(self, "_native", self.assign(**{key: value})._native)
        object.__setattr__(self, "_meta_cache", None)

    # -- selection and columns
    def assign(self, **kwargs):
        native = self._native
        for name, value in kwargs.items():
            if callable(value) and not isinstance(value, Series):
                value = value(DataFrame(native))
            if isinstance(value, Series):
                native = native.assign(name, value._native)
            elif _is_scalar(value):
                native = native.assign(name, _py_scalar(value))
            else:
                raise TypeError(f"assign takes rask Series or scalars, not {type(value).__name__}")
        return DataFrame(native)

    def rename(self, columns=None, **kwargs):
        if columns is None:
            columns = kwargs.get("mapper")
        if callable(columns):
            columns = {c: columns(c) for c in self._native.columns}
        return DataFrame(self._native.rename([(str(a), str(b)) for a, b in dict(columns or {}).items()]))

    def astype(self, dtype):
        if isinstance(dtype, dict):
            casts = [(c, _dtype_name(t)) for c, t in dtype.items()]
        else:
            casts = [(c, _dtype_name(dtype)) for c in self._native.columns]
        return DataFrame(self._native.astype(casts))

    def dropna(self, how="any", subset=None):
        if how != "any":
            raise NotImplementedError("rask's dropna drops rows with any missing value (how='any')")
        return DataFrame(self._native.dropna(_columns_list(subset)))

    def fillna(self, value=None):
        if isinstance(value, dict):
            pairs = [(c, _py_scalar(v)) for c, v in value.items()]
        elif _is_scalar(value):
            dtypes = self.dtypes
            v = _py_scalar(value)
            pairs = [(c, v) for c in self._native.columns if _fill_applies(dtypes[c], v)]
        else:
            raise TypeError("fillna takes a scalar or a dict of column -> scalar")
        return DataFrame(self._native.fillna(pairs))

    def head(self, n=5, npartitions=1, compute=True):
        _ensure_client()
        if npartitions == 1:
            return _convert.to_pandas(self._native.head(n), self._native.index).pipe(self._post or (lambda x: x))
        nodes = self.__rask_nodes__()
        if npartitions != -1:
            nodes = nodes[:npartitions]
        pdf = self.__rask_finalize__(_compute_nodes(nodes))
        return pdf.head(n)

    def describe(self):
        return DataFrame(self._native.describe(), _describe_post)

    def groupby(self, by, sort=True, dropna=True, split_out=None, as_index=True, **kwargs):
        if not dropna:
            raise NotImplementedError("rask's groupby drops missing keys (dropna=True), as pandas does by default")
        by = _columns_list(by) if not isinstance(by, Series) else [by._native.name]
        for k in by:
            if k not in self._native.columns:
                raise KeyError(k)
        return GroupBy(self, by, split_out or 1, as_index)

    def drop_duplicates(self, subset=None, keep="first", ignore_index=False, split_out=None):
        if keep != "first":
            raise NotImplementedError("rask's drop_duplicates keeps the first row (keep='first')")
        return DataFrame(self._native.drop_duplicates(_columns_list(subset) or []))

    def sort_values(self, by, ascending=True, **kwargs):
        if not isinstance(ascending, bool):
            ascending = list(ascending)
            if len(set(ascending)) != 1:
                raise NotImplementedError("rask sorts all keys in the same direction")
            ascending = ascending[0]
        return DataFrame(self._native.sort_values(_columns_list(by), ascending))

    def nlargest(self, n=5, columns=None):
        return DataFrame(self._native.nlargest(n, _one_column(columns)))

    def nsmallest(self, n=5, columns=None):
        return DataFrame(self._native.nsmallest(n, _one_column(columns)))

    def merge(self, right, how="inner", on=None, left_on=None, right_on=None, suffixes=("_x", "_y"), **kwargs):
        if not isinstance(right, DataFrame):
            raise TypeError(f"merge takes a rask DataFrame, not {type(right).__name__}")
        if tuple(suffixes) != ("_x", "_y"):
            raise NotImplementedError("rask's merge uses the suffixes ('_x', '_y')")
        if left_on is not None or right_on is not None:
            lo, ro = _columns_list(left_on), _columns_list(right_on)
            if lo is None or ro is None or len(lo) != len(ro):
                raise ValueError("merge needs left_on and right_on of the same length")
            if lo != ro:
                # Join on copies of the keys under shared temporary names;
                # both sides keep their own key columns, as in pandas.
                tmp = [f"__rask_key{i}__" for i in range(len(lo))]
                left = self.assign(**{t: self[c] for t, c in zip(tmp, lo)})
                rgt = right.assign(**{t: right[c] for t, c in zip(tmp, ro)})
                joined = left._native.merge(rgt._native, tmp, how)
                return DataFrame(joined.select([c for c in joined.columns if c not in tmp]))
            on = lo
        if on is None:
            on = [c for c in self._native.columns if c in right._native.columns]
            if not on:
                raise ValueError("No common columns to perform merge on")
        return DataFrame(self._native.merge(right._native, _columns_list(on), how))

    def random_split(self, frac, random_state=None, shuffle=False):
        seed = _seed(random_state)
        return [DataFrame(p) for p in self._native.random_split([float(f) for f in frac], seed)]

    def map_partitions(self, func, *args, meta=None, **kwargs):
        return map_partitions(func, self, *args, meta=meta, **kwargs)

    def to_delayed(self):
        """One ``Delayed`` per partition; each computes to a pandas frame
        (index columns as columns)."""
        from ..delayed import Delayed

        return [Delayed(n) for n in self.__rask_nodes__()]

    # -- output
    def to_parquet(self, path, storage_options=None, write_index=None, **kwargs):
        _ensure_client()
        self._native.to_parquet(os.fspath(path), _storage(storage_options))

    def to_csv(self, filename, storage_options=None, index=False, single_file=False, **kwargs):
        if single_file:
            raise NotImplementedError("rask writes one CSV file per partition")
        _ensure_client()
        filename = os.fspath(filename)
        if "://" not in filename and "*" in filename:
            os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
        return self._native.to_csv(filename, _storage(storage_options))

    # -- display
    def __repr__(self):
        columns = list(self._native.columns)
        dtypes = self.dtypes
        meta = pd.DataFrame([[str(dtypes[c]) for c in columns], ["..."] * len(columns)], columns=columns,
                            index=pd.Index(["", ""], name=f"npartitions={self.npartitions}"))
        return f"rask DataFrame Structure:\n{meta.to_string()}\n{self._name_line()}"

    def _name_line(self):
        nodes = self._native.nodes()
        name = nodes[0].key.split("-")[0] if nodes else "empty"
        return f"rask Name: {name}, {len(nodes)} partitions"

    def _repr_html_(self):
        columns = list(self._native.columns)
        dtypes = self.dtypes
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
        types = "".join(f"<td>{html.escape(str(dtypes[c]))}</td>" for c in columns)
        dots = "<td>...</td>" * len(columns)
        blanks = "<th></th>" * len(columns)
        return (
            "<div><strong>rask DataFrame Structure:</strong></div>\n"
            '<table border="1" class="dataframe">\n'
            f'  <thead>\n    <tr style="text-align: right;"><th></th>{head}</tr>\n'
            f"    <tr><th>npartitions={self.npartitions}</th>{blanks}</tr>\n  </thead>\n"
            f"  <tbody>\n    <tr><th></th>{types}</tr>\n    <tr><th></th>{dots}</tr>\n  </tbody>\n</table>\n"
            f"<div>{html.escape(self._name_line())}</div>"
        )


def _fill_applies(dtype, value):
    if isinstance(value, str):
        return isinstance(dtype, pd.StringDtype) or dtype == object
    if isinstance(value, bool):
        return dtype == np.dtype(bool)
    if isinstance(value, numbers.Number):
        return dtype.kind in "if" if isinstance(dtype, np.dtype) else False
    return True


def _describe_post(pdf):
    pdf.index = pdf.index.astype(object).rename(None)
    return pdf


def _one_column(columns):
    cols = _columns_list(columns)
    if not cols or len(cols) != 1:
        raise NotImplementedError("rask's nlargest/nsmallest order by one column")
    return cols[0]


def _seed(random_state):
    if random_state is None:
        return int(np.random.default_rng().integers(0, 2**63 - 1))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    return int(random_state)


def _storage(options):
    """``storage_options`` (s3fs' names) as ``(endpoint_url, region, anonymous)``."""
    if not options:
        return None
    options = dict(options)
    client_kwargs = options.get("client_kwargs") or {}
    endpoint = options.get("endpoint_url") or client_kwargs.get("endpoint_url")
    region = options.get("region") or options.get("region_name") or client_kwargs.get("region_name")
    anon = bool(options.get("anon", False))
    return (endpoint, region, anon)


# ------------------------------------------------------------ Series


class _StrAccessor:
    __slots__ = ("_s",)

    def __init__(self, s):
        self._s = s

    def _op(self, op, arg=None):
        return self._s._wrap(self._s._native.str_op(op, arg))

    def lower(self):
        return self._op("lower")

    def upper(self):
        return self._op("upper")

    def len(self):
        return self._op("len")

    def contains(self, pat, regex=False, **kwargs):
        if regex:
            raise NotImplementedError("rask's str.contains matches literal substrings (regex=False)")
        return self._op("contains", pat)

    def startswith(self, pat):
        return self._op("startswith", pat)

    def endswith(self, pat):
        return self._op("endswith", pat)


class _DtAccessor:
    __slots__ = ("_s",)

    def __init__(self, s):
        self._s = s

    def __getattr__(self, part):
        if part.startswith("_"):
            raise AttributeError(part)
        return self._s._wrap(self._s._native.dt(part))


class Series(RaskCollection):
    """A lazy column (``dask.dataframe.Series``)."""

    __slots__ = ("_native", "_name", "_post", "__weakref__")

    _NO_NAME = object()

    def __init__(self, native, name=_NO_NAME, post=None):
        self._native = native
        self._name = native.name if name is Series._NO_NAME else name
        self._post = post

    def _wrap(self, native, name=_NO_NAME):
        return Series(native, self._name if name is Series._NO_NAME else name)

    # -- collection protocol
    def _frame(self):
        return self._native.to_frame()

    def __rask_nodes__(self):
        return self._frame().nodes()

    def __rask_finalize__(self, futures):
        frame = self._frame()
        pdf = _convert.to_pandas(frame.collect(list(futures)), frame.index)
        s = pdf[self._native.name]
        s.name = self._name
        return self._post(s) if self._post is not None else s

    def __rask_persist__(self, futures):
        frame = self._frame().over_futures(list(futures))
        return Series(frame.col(self._native.name), self._name, self._post)

    # -- structure
    @property
    def name(self):
        return self._name

    @property
    def dtype(self):
        frame = self._frame()
        meta = _convert.empty_pandas(frame.meta(), frame.index)
        return meta[self._native.name].dtype

    @property
    def npartitions(self):
        return self._native.frame().npartitions

    def __len__(self):
        _ensure_client()
        return len(self._native.frame())

    def rename(self, name):
        if name is None:
            return Series(self._native, None)
        return Series(self._native.rename(str(name)), name)

    def to_frame(self, name=None):
        s = self if name is None else self.rename(name)
        return DataFrame(s._native.to_frame())

    def head(self, n=5, npartitions=1, compute=True):
        return self.to_frame().head(n, npartitions)[self._native.name].rename(self._name)

    def __repr__(self):
        return (f"rask Series Structure:\nnpartitions={self.npartitions}\n"
                f"Name: {self._name}, dtype: {self.dtype}")

    def _repr_html_(self):
        return f"<pre>{html.escape(repr(self))}</pre>"

    # -- operators
    def _binary(self, op, other, reflected=False):
        if isinstance(other, Series):
            name = self._name if other._name == self._name else None
            return Series(self._native.binary(op, other._native, reflected), name)
        if isinstance(other, (pd.Timestamp, np.datetime64)) or type(other).__name__ in ("datetime", "date"):
            # A datetime literal: compare nanoseconds since the epoch.
            if op not in ("eq", "ne", "lt", "le", "gt", "ge"):
                raise TypeError(f"rask compares datetime columns with datetimes; {op} is not supported")
            ns = pd.Timestamp(other).as_unit("ns").value
            if self.dtype.kind != "M":
                raise TypeError(f"cannot compare a {self.dtype} column with a datetime")
            return Series(self._native.astype("int64").binary(op, ns, reflected), self._name)
        if isinstance(other, (Scalar, DataFrame)) or not _is_scalar(other):
            return NotImplemented
        return Series(self._native.binary(op, _py_scalar(other), reflected), self._name)

    def __neg__(self):
        return self._wrap(self._native.neg())

    def __invert__(self):
        return self._wrap(self._native.invert())

    def __bool__(self):
        raise ValueError("The truth value of a rask Series is ambiguous: compute() it, or use & and |")

    __hash__ = object.__hash__

    # -- elementwise
    def isna(self):
        return self._wrap(self._native.isna())

    isnull = isna

    def notna(self):
        return self._wrap(self._native.notna())

    notnull = notna

    def isin(self, values):
        return self._wrap(self._native.isin([_py_scalar(v) for v in values]))

    def between(self, left, right, inclusive="both"):
        if inclusive != "both":
            raise NotImplementedError("rask's between includes both ends (inclusive='both')")
        return self._wrap(self._native.between(_py_scalar(left), _py_scalar(right)))

    def astype(self, dtype):
        return self._wrap(self._native.astype(_dtype_name(dtype)))

    def fillna(self, value):
        return self._wrap(self._native.fillna(_py_scalar(value)))

    def dropna(self):
        return self._wrap(self._native.dropna())

    @property
    def str(self):
        return _StrAccessor(self)

    @property
    def dt(self):
        return _DtAccessor(self)

    # -- reductions
    def _reduce(self, func):
        frame = self._native.to_frame().agg([(self._native.name, func)])
        return Scalar(frame=frame, name=f"{func}-{self._name}")

    def sum(self):
        return self._reduce("sum")

    def mean(self):
        return self._reduce("mean")

    def min(self):
        return self._reduce("min")

    def max(self):
        return self._reduce("max")

    def count(self):
        return self._reduce("count")

    def std(self, ddof=1):
        if ddof != 1:
            raise NotImplementedError("rask's Series.std uses ddof=1")
        return self._reduce("std")

    def var(self, ddof=1):
        if ddof != 1:
            raise NotImplementedError("rask's Series.var uses ddof=1")
        return self._reduce("var")

    def nunique(self, dropna=True):
        if not dropna:
            raise NotImplementedError("rask's nunique counts non-missing values (dropna=True)")
        return Scalar(node=self._native.nunique(), name=f"nunique-{self._name}")

    def unique(self):
        return self._wrap(self._native.unique())

    def value_counts(self, sort=True, ascending=False, dropna=True, normalize=False, split_out=None):
        if not dropna or normalize or ascending or not sort:
            raise NotImplementedError("rask's value_counts counts non-missing values, largest first")
        name = self._name
        vc = Series(self._native.value_counts(), "count")

        def post(s, name=name):
            s.index.name = name
            return s

        vc._post = post
        return vc

    def nlargest(self, n=5):
        return self._wrap(self._native.nlargest(n))

    def nsmallest(self, n=5):
        return self._wrap(self._native.nsmallest(n))

    def describe(self):
        d = self.to_frame().describe()
        return Series(d._native.col(self._native.name), self._name, post=_series_describe_post)

    def map_partitions(self, func, *args, meta=None, **kwargs):
        return map_partitions(func, self, *args, meta=meta, **kwargs)


def _series_describe_post(s):
    s.index = s.index.astype(object).rename(None)
    return s


for _op in ("add", "sub", "mul", "truediv", "floordiv", "mod", "eq", "ne", "lt", "le", "gt", "ge"):
    def _fwd(self, other, _op=_op):
        return self._binary(_op, other)

    def _rev(self, other, _op=_op):
        return self._binary(_op, other, reflected=True)

    setattr(Series, f"__{_op}__", _fwd)
    if _op not in ("eq", "ne", "lt", "le", "gt", "ge"):
        setattr(Series, f"__r{_op}__", _rev)
Series.__and__ = lambda self, other: self._binary("and", other)
Series.__rand__ = lambda self, other: self._binary("and", other, reflected=True)
Series.__or__ = lambda self, other: self._binary("or", other)
Series.__ror__ = lambda self, other: self._binary("or", other, reflected=True)


# ------------------------------------------------------------ GroupBy


_FUNCS = ("mean", "sum", "count", "min", "max", "var", "std", "size")


class GroupBy:
    """``df.groupby(by)``, optionally narrowed to some columns."""

    def __init__(self, df, by, split_out, as_index, columns=None):
        self._df = df
        self._by = by
        self._split_out = split_out
        self._as_index = as_index
        self._columns = columns  # None, a column name (SeriesGroupBy) or a list

    def __getitem__(self, key):
        cols = key if isinstance(key, str) else list(key)
        for c in [cols] if isinstance(cols, str) else cols:
            if c not in self._df._native.columns:
                raise KeyError(c)
        return GroupBy(self._df, self._by, self._split_out, self._as_index, cols)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._df._native.columns:
            return self[name]
        raise AttributeError(f"'GroupBy' object has no attribute {name!r}")

    def _native(self, ddof=1):
        native = self._df._native
        if self._columns is not None:
            cols = [self._columns] if isinstance(self._columns, str) else self._columns
            native = native.select(self._by + [c for c in cols if c not in self._by])
        return native.groupby(self._by, self._split_out, ddof)

    def _finish(self, frame, series_name=None, post=None):
        if isinstance(self._columns, str):
            name = series_name or self._columns
            s = Series(frame.col(name), self._columns if series_name is None else None)
            if not self._as_index:
                s._post = lambda x: x.reset_index()
            return s
        out = DataFrame(frame, post)
        if not self._as_index:
            prev = post
            out = DataFrame(frame, lambda x: (prev(x) if prev else x).reset_index())
        return out

    def _each(self, func, ddof=1):
        if isinstance(self._columns, str) and self._columns in self._by:
            raise NotImplementedError("aggregating a group key itself")
        return self._finish(self._native(ddof).each(func))

    def mean(self, numeric_only=None):
        return self._each("mean")

    def sum(self, numeric_only=None):
        return self._each("sum")

    def count(self):
        return self._each("count")

    def min(self, numeric_only=None):
        return self._each("min")

    def max(self, numeric_only=None):
        return self._each("max")

    def var(self, ddof=1, numeric_only=None):
        return self._each("var", ddof)

    def std(self, ddof=1, numeric_only=None):
        return self._each("std", ddof)

    def size(self):
        s = Series(self._native().size(), None)
        if not self._as_index:
            s._post = lambda x: x.rename("size").reset_index()
        return s

    def nunique(self):
        if not isinstance(self._columns, str):
            raise NotImplementedError("nunique of a grouped column: df.groupby(k)[col].nunique()")
        return Series(self._native().nunique(self._columns), self._columns)

    def agg(self, arg=None, **kwargs):
        if arg is None and kwargs:
            raise NotImplementedError("named aggregation: use agg({column: func})")
        if isinstance(self._columns, str):
            if isinstance(arg, str):
                return self._each(arg) if arg != "size" else self.size()
            funcs = list(arg)
            frame = self._native().agg([(self._columns, f) for f in funcs])
            names = [f"{self._columns}_{f}" for f in funcs] if len(funcs) > 1 else [self._columns]
            renamed = frame.rename(list(zip(names, funcs)))
            return DataFrame(renamed, None if self._as_index else (lambda x: x.reset_index()))
        if isinstance(arg, str):
            return self._each(arg)
        if isinstance(arg, (list, tuple)):
            cols = [c for c in self._df._native.columns if c not in self._by] if self._columns is None \
                else list(self._columns)
            arg = {c: list(arg) for c in cols}
        if not isinstance(arg, dict):
            raise TypeError(f"agg takes a function name, a list of them or a dict, not {type(arg).__name__}")
        pairs, labels, multi = [], [], False
        for col, funcs in arg.items():
            if isinstance(funcs, str):
                pairs.append((col, funcs))
                labels.append((col, funcs))
            else:
                multi = True
                for f in funcs:
                    pairs.append((col, f))
                    labels.append((col, f))
        for _, f in pairs:
            if f not in _FUNCS:
                raise ValueError(f"unknown aggregation {f!r}: rask has {', '.join(_FUNCS)}")
        frame = self._native().agg(pairs)
        counts = {}
        for c, _ in pairs:
            counts[c] = counts.get(c, 0) + 1
        rust_names = [c if counts[c] == 1 else f"{c}_{f}" for c, f in pairs]

        def post(pdf, rust_names=rust_names, labels=labels, multi=multi):
            pdf = pdf[rust_names]
            if multi:
                pdf.columns = pd.MultiIndex.from_tuples(labels)
            else:
                pdf.columns = [c for c, _ in labels]
            return pdf

        return self._finish(frame, post=post)

    aggregate = agg


# ------------------------------------------------------------ constructors


def from_pandas(data, npartitions=None, chunksize=None, sort=True, name=None):
    """A rask frame over a pandas DataFrame or Series, split into
    ``npartitions`` (or ``chunksize``-row) partitions as Dask splits it.

    A default RangeIndex is not kept (rask's default index numbers each
    partition's rows from 0); any other index becomes the frame's index.
    """
    if isinstance(data, pd.Series):
        name = data.name
        col = "__series__" if name is None else str(name)
        frame = from_pandas(data.to_frame(col), npartitions=npartitions, chunksize=chunksize, sort=sort)
        return Series(frame._native.col(col), name)
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"Input must be a pandas DataFrame or Series, got {type(data).__name__}")
    if (npartitions is None) == (chunksize is None):
        raise ValueError("Exactly one of npartitions and chunksize must be specified.")
    if any(not isinstance(c, str) for c in data.columns):
        data = data.rename(columns=str)
    index = []
    if not isinstance(data.index, pd.RangeIndex):
        names = [n if n is not None else ("index" if data.index.nlevels == 1 else f"level_{i}")
                 for i, n in enumerate(data.index.names)]
        data = data.copy(deep=False)
        data.index.names = names
        data = data.reset_index()
        index = names
    n = len(data)
    if chunksize is None:
        chunksize = max(1, -(-n // max(1, int(npartitions))))
    bounds = list(range(0, n, int(chunksize))) + [n]
    if bounds[0] != 0 or len(bounds) < 2:
        bounds = [0, n]
    if n == 0:
        bounds = [0, 0]
    table = _convert.from_pandas_table(data)
    native = _rask.Frame.from_arrow(table, bounds, uuid.uuid4().hex)
    if index:
        native = native.with_index(index)
    return DataFrame(native)


def _partition_call(part, func, index, schema, as_series, args, kwargs):
    """Runs ``func`` over one partition (a task of ``python.call``) and gives
    the result back to the engine as an Arrow table."""
    import pyarrow as pa

    if index:
        part = part.set_index(index if len(index) > 1 else index[0])
    out = func(part, *args, **kwargs)
    if isinstance(out, pd.Series):
        out = out.to_frame(as_series)
    elif not isinstance(out, pd.DataFrame):
        raise TypeError(f"map_partitions: the function must return a pandas DataFrame or Series, "
                        f"got {type(out).__name__}")
    out = out.reset_index(drop=isinstance(out.index, pd.RangeIndex) or not index)
    table = _convert.from_pandas_table(out)
    if table.schema != schema:
        try:
            table = table.select(schema.names).cast(schema)
        except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise ValueError(f"map_partitions: a partition's result does not match meta ({schema}): {e}") from None
    return _rask.ArrowTable.from_stream(table)


def _meta_of(meta):
    if isinstance(meta, (pd.DataFrame, pd.Series)):
        return meta.iloc[:0]
    if isinstance(meta, dict):
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in meta.items()})
    if isinstance(meta, (list, tuple)) and meta and isinstance(meta[0], tuple):
        if len(meta) == 2 and isinstance(meta[0], str) and not isinstance(meta[1], tuple):
            return pd.Series(name=meta[0], dtype=meta[1])
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in meta})
    if isinstance(meta, tuple) and len(meta) == 2:
        return pd.Series(name=meta[0], dtype=meta[1])
    raise TypeError(f"meta must be a pandas object, a dict or (name, dtype) pairs, not {type(meta).__name__}")


def map_partitions(func, df, *args, meta=None, **kwargs):
    """Applies a Python function to each partition (a pandas DataFrame, or a
    Series for a rask Series); the results (pandas) form a new collection.
    Runs on Python-capable workers. Without ``meta``, the function runs once
    on an empty frame of the input's dtypes to learn the output's."""
    from ..delayed import Delayed, _call

    for a in list(args) + list(kwargs.values()):
        if isinstance(a, RaskCollection):
            raise NotImplementedError("map_partitions with other rask collections as arguments")
    is_series_in = isinstance(df, Series)
    frame = df._frame() if is_series_in else df._native
    index = list(frame.index)
    in_meta = _convert.empty_pandas(frame.meta(), index)
    if is_series_in:
        col = df._native.name
        user_func, name = func, df._name

        def func(part, *a, _f=user_func, _c=col, _n=name, **k):
            return _f(part[_c].rename(_n), *a, **k)

        func.__name__ = getattr(user_func, "__name__", "func")
    if meta is None:
        try:
            out_meta = func(in_meta, *args, **kwargs)
        except Exception as e:
            raise ValueError(f"map_partitions could not infer the output's columns by running "
                             f"{getattr(func, '__name__', func)!r} on an empty frame ({type(e).__name__}: {e}); "
                             "pass meta=") from e
    else:
        out_meta = _meta_of(meta)
    as_series = None
    if isinstance(out_meta, pd.Series):
        out_name = out_meta.name
        as_series = "__series__" if out_name is None else str(out_name)
        out_meta = out_meta.to_frame(as_series)
    elif not isinstance(out_meta, pd.DataFrame):
        raise TypeError("map_partitions: the function must return a pandas DataFrame or Series")
    out_index = [] if (isinstance(out_meta.index, pd.RangeIndex) or not index) else \
        [n for n in out_meta.index.names if n is not None]
    if out_index and len(out_index) != out_meta.index.nlevels:
        out_index = []
    meta_flat = out_meta.reset_index(drop=not out_index)
    schema = _convert.meta_schema(meta_flat)
    fname = getattr(func, "__name__", "func")
    nodes = []
    for node in frame.nodes():
        d = _call(_partition_call, (Delayed(node), func, index, schema, as_series, tuple(args), dict(kwargs)), {},
                  name=f"map-partitions-{fname}", pure=True)
        nodes.append(d._node)
    meta_table = _convert.from_pandas_table(meta_flat)
    native = _rask.Frame.from_nodes(nodes, meta_table)
    if out_index:
        native = native.with_index(out_index)
    out = DataFrame(native)
    if as_series is not None:
        return Series(native.col(as_series), out_name)
    return out
