"""rask.array against numpy and dask.array on the same code.

Each case builds the same expression on numpy data, on ``rask.array`` and
(where Dask has it) on ``dask.array``, for several chunkings (uneven,
1-element, whole-axis), and compares values, dtype, shape and the returned
type. Data are seeded random, with NaNs for the float cases.
"""

import os

import dask
import dask.array as dsa
import numpy as np
import pytest

import rask
import rask.array as da
from rask.distributed import Client, LocalCluster

dask.config.set(scheduler="synchronous")

AxisError = np.exceptions.AxisError

# (shape, list of chunkings)
CASES = [
    ((10,), [3, 1, 10, ((4, 6),)]),
    ((7,), [((3, 4),), 2]),
    ((6, 8), [(2, 3), ((1, 5), (3, 3, 2)), (6, 8), 1]),
    ((4, 5, 6), [(2, 5, 3), (1, 2, 4)]),
    ((1, 1), [1]),
    ((0,), [5]),
    ((3, 0), [(2, 1)]),
]
CHUNKED = [(shape, chunks) for shape, cs in CASES for chunks in cs]
NONEMPTY = [(s, c) for s, c in CHUNKED if 0 not in s]
DTYPES = ["float64", "float32", "int64", "int32", "uint8", "bool"]


def data(shape, dtype, seed=0, nans=False):
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(shape) > 0.5
    if np.dtype(dtype).kind in "iu":
        lo = 0 if np.dtype(dtype).kind == "u" else -50
        return rng.integers(lo, 50, size=shape).astype(dtype)
    x = (rng.standard_normal(shape) * 10).astype(dtype)
    if nans and x.size:
        x.flat[rng.integers(0, x.size, size=max(1, x.size // 7))] = np.nan
    return x


def check(result, expected, exact=True, rtol=1e-12):
    """``result`` (a rask Array, computed here) equals numpy's ``expected``
    in type, dtype, shape and values."""
    if isinstance(result, da.Array):
        assert result.dtype == np.asarray(expected).dtype, (result.dtype, np.asarray(expected).dtype)
        if not any(np.isnan(s) for s in result.shape if isinstance(s, float)):
            assert result.shape == np.shape(expected)
        got = result.compute()
    else:
        got = result
    if np.ndim(expected) == 0:
        assert isinstance(got, np.generic), type(got)
        assert not isinstance(got, np.ndarray)
    else:
        assert type(got) is np.ndarray, type(got)
    assert got.dtype == np.asarray(expected).dtype, (got.dtype, np.asarray(expected).dtype)
    assert np.shape(got) == np.shape(expected)
    if exact or np.asarray(expected).dtype.kind not in "fc":
        np.testing.assert_array_equal(got, expected)
    else:
        atol = 0
        if np.asarray(expected).dtype == np.float32:
            # numpy accumulates float32 in float32, rask in float64: compare
            # at float32's precision relative to the values' scale.
            rtol = max(rtol, 1e-5)
            finite = np.abs(np.asarray(expected)[np.isfinite(expected)])
            atol = 1e-5 * (finite.max() if finite.size else 0)
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, equal_nan=True)
    return got


# ------------------------------------------------------------ conversion

@pytest.mark.parametrize("shape,chunks", CHUNKED)
@pytest.mark.parametrize("dtype", DTYPES + ["int8", "int16", "uint16", "uint32", "uint64"])
def test_from_array_roundtrip(shape, chunks, dtype):
    x = data(shape, dtype)
    a = da.from_array(x, chunks=chunks)
    assert a.chunks == dsa.from_array(x, chunks=chunks).chunks
    assert a.dtype == x.dtype and a.shape == x.shape
    got = check(a, x)
    assert got.flags.writeable and got.flags.c_contiguous
    # np.asarray computes; the result does not share memory with the input.
    assert not np.shares_memory(np.asarray(a), x)


def test_from_array_non_contiguous_and_byte_order():
    x = np.arange(60, dtype=">i4").reshape(6, 10)[:, ::3]
    check(da.from_array(x, chunks=2), x.astype("<i4"))
    f = np.asfortranarray(data((5, 4), "float64"))
    check(da.from_array(f, chunks=(2, 3)), f)


def test_unsupported_dtypes_raise_type_error():
    with pytest.raises(TypeError, match="complex128"):
        da.from_array(np.ones(3, dtype=complex))
    with pytest.raises(TypeError):
        da.ones(3, dtype="U3")
    with pytest.raises(TypeError):
        da.ones(3, dtype="not-a-dtype")


def test_compute_single_block_is_writable_copy():
    x = da.from_array(np.arange(5.0), chunks=5)
    a = x.compute()
    a[0] = 100.0  # a shared single block is copied, so this is safe
    assert x.compute()[0] == 0.0


def test_zero_d_results_are_numpy_scalars():
    x = da.from_array(np.arange(10, dtype="int32"), chunks=3)
    s = x.sum().compute()
    assert type(s) is np.int64 and s == 45
    m = x.mean().compute()
    assert type(m) is np.float64 and m == 4.5
    assert type(x.max().compute()) is np.int32
    assert type((x > 3).any().compute()) is np.bool_
    assert float(x.sum()) == 45.0 and int(x.max()) == 9


def test_asarray_and_array_protocol():
    x = data((5, 4), "float64")
    a = da.from_array(x, chunks=2)
    np.testing.assert_array_equal(np.asarray(a), x)
    np.testing.assert_array_equal(np.array(a, dtype="float32"), x.astype("float32"))


# ----------------------------------------------------------- metadata

def test_metadata_as_dask():
    x = np.zeros((10, 7))
    for chunks in [3, (4, 7), {0: 2}, "auto", -1, (None, 2), ((5, 5), (3, 4))]:
        r, d = da.from_array(x, chunks=chunks), dsa.from_array(x, chunks=chunks)
        assert r.chunks == d.chunks, chunks
        assert r.numblocks == d.numblocks and r.npartitions == d.npartitions
        assert r.chunksize == d.chunksize
    r = da.from_array(x, chunks=3)
    assert r.ndim == 2 and r.size == 70 and r.nbytes == 560 and r.itemsize == 8 and len(r) == 10
    assert r.T.shape == (7, 10)
    assert repr(r).startswith("dask.array<array, shape=(10, 7), dtype=float64, chunksize=(3, 3), chunktype=numpy.ndarray")
    html = r._repr_html_()
    assert "<table" in html and "<svg" in html and "560 B" in html and "(10, 7)" in html and "float64" in html


def test_auto_chunks_match_dask_for_big_arrays():
    for shape in [(100000, 100000), (50_000_000,), (1000, 1000)]:
        assert da.ones(shape, chunks="auto").chunks == dsa.ones(shape, chunks="auto").chunks
    assert da.ones((4096, 4096), chunks="32MiB").chunks == dsa.ones((4096, 4096), chunks="32MiB").chunks
    assert da.ones((1000, 1000), chunks=("auto", 10)).chunks == dsa.ones((1000, 1000), chunks=("auto", 10)).chunks


def test_bad_chunks_raise_value_error():
    with pytest.raises(ValueError):
        da.ones((10,), chunks=((3, 3),))
    with pytest.raises(ValueError):
        da.ones((10, 3), chunks=(2,))
    with pytest.raises(ValueError):
        da.ones((10,), chunks=0)
    with pytest.raises(ValueError):
        da.ones((10,), chunks="huge")


# ----------------------------------------------------------- creation

@pytest.mark.parametrize("chunks", [3, 1, "auto"])
def test_creation(chunks):
    check(da.ones((5, 3), chunks=chunks), np.ones((5, 3)))
    check(da.zeros((4,), dtype="int32", chunks=chunks), np.zeros(4, dtype="int32"))
    check(da.full((3, 2), 7, chunks=chunks), np.full((3, 2), 7))
    check(da.full((3,), 2.5, chunks=chunks), np.full((3,), 2.5))
    check(da.full((3,), True, chunks=chunks), np.full((3,), True))
    assert da.empty((2, 2), chunks=chunks).shape == (2, 2)
    check(da.arange(10, chunks=chunks), np.arange(10))
    check(da.arange(2, 11, 3, chunks=chunks), np.arange(2, 11, 3))
    check(da.arange(0.0, 1.0, 0.25, chunks=chunks), np.arange(0.0, 1.0, 0.25))
    check(da.arange(10, 0, -2, chunks=chunks), np.arange(10, 0, -2))
    check(da.linspace(0, 1, 7, chunks=chunks), np.linspace(0, 1, 7), exact=False)
    check(da.linspace(0, 1, 8, endpoint=False, chunks=chunks), np.linspace(0, 1, 8, endpoint=False), exact=False)
    check(da.eye(5, chunks=chunks), np.eye(5))
    check(da.eye(4, M=6, k=1, dtype="int64", chunks=chunks), np.eye(4, 6, k=1, dtype="int64"))
    x = data((4, 3), "int32")
    check(da.ones_like(da.from_array(x, chunks=2)), np.ones_like(x))
    check(da.zeros_like(x), np.zeros_like(x))
    check(da.full_like(x, 9, dtype="float32"), np.full_like(x, 9, dtype="float32"))


def test_random_matches_dask_api_and_is_chunking_independent():
    a = da.random.RandomState(42).random_sample((50, 40), chunks=(7, 9)).compute()
    b = da.random.RandomState(42).random_sample((50, 40), chunks=(50, 40)).compute()
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float64 and 0 <= a.min() and a.max() < 1
    rs = da.random.RandomState(1)
    assert not np.array_equal(rs.random((5,)).compute(), rs.random((5,)).compute())
    i = da.random.randint(3, 9, size=(1000,), chunks=77).compute()
    assert i.dtype == np.int64 and i.min() == 3 and i.max() == 8
    n = da.random.normal(5.0, 2.0, size=(200_000,), chunks=30_000).compute()
    assert abs(n.mean() - 5.0) < 0.05 and abs(n.std() - 2.0) < 0.05
    g = da.random.default_rng(7)
    assert g.random((3, 4), chunks=2).shape == (3, 4)
    assert g.integers(0, 5, size=10).dtype == np.int64
    assert da.random.random((4,)).compute().shape == (4,)


# -------------------------------------------------------- elementwise

BINOPS = [
    ("add", lambda a, b: a + b), ("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b),
    ("truediv", lambda a, b: a / b), ("floordiv", lambda a, b: a // b), ("mod", lambda a, b: a % b),
    ("lt", lambda a, b: a < b), ("le", lambda a, b: a <= b), ("gt", lambda a, b: a > b),
    ("ge", lambda a, b: a >= b), ("eq", lambda a, b: a == b), ("ne", lambda a, b: a != b),
    ("maximum", np.maximum), ("minimum", np.minimum),
]


@pytest.mark.parametrize("shape,chunks", NONEMPTY[:6])
@pytest.mark.parametrize("dtype", ["float64", "int64", "int32", "uint8"])
@pytest.mark.parametrize("name,op", BINOPS, ids=[n for n, _ in BINOPS])
def test_binary_ops(shape, chunks, dtype, name, op):
    x, y = data(shape, dtype, 1), data(shape, dtype, 2)
    if name in ("floordiv", "mod", "truediv") and dtype != "float64":
        y = np.where(y == 0, 3, y).astype(dtype)
    a, b = da.from_array(x, chunks=chunks), da.from_array(y, chunks=2)
    with np.errstate(all="ignore"):
        check(op(a, b), op(x, y), exact=name not in ("truediv",))
        check(op(a, 3), op(x, 3))
        check(op(7, a), op(7, x), exact=name != "truediv")
        check(op(a, y), op(x, y), exact=name != "truediv")  # a numpy operand becomes from_array
        check(op(a, 2.5), op(x, 2.5), exact=False)


def test_pow_neg_abs_invert_and_bool_logic():
    x = data((9,), "float64")
    a = da.from_array(x, chunks=4)
    check(a ** 2, x ** 2, exact=False)
    check(2 ** da.from_array(np.arange(6), chunks=4), 2 ** np.arange(6))
    check(-a, -x)
    check(abs(a), abs(x))
    m, n = data((9,), "bool", 1), data((9,), "bool", 2)
    ma, na = da.from_array(m, chunks=2), da.from_array(n, chunks=4)
    check(ma & na, m & n)
    check(ma | na, m | n)
    check(ma ^ na, m ^ n)
    check(~ma, ~m)
    i, j = data((9,), "int64", 1), data((9,), "int64", 2)
    ia, ja = da.from_array(i, chunks=2), da.from_array(j, chunks=3)
    check(ia & ja, i & j)  # no kernel: a Python task per block
    check(ia | 6, i | 6)
    check(~ia, ~i)
    with pytest.raises(TypeError):
        -ma


def test_broadcasting_and_shape_mismatch():
    x, y = data((6, 4), "float64"), data((4,), "float64", 3)
    a, b = da.from_array(x, chunks=(2, 3)), da.from_array(y, chunks=2)
    check(a + b, x + y)
    check(a * y[None, :], x * y[None, :])
    check(a - da.from_array(x[:, :1], chunks=3), x - x[:, :1])
    with pytest.raises(ValueError, match="broadcast"):
        a + da.ones((5,))


@pytest.mark.parametrize("name", ["sqrt", "exp", "log", "sin", "cos", "absolute", "negative", "floor", "ceil",
                                  "isnan", "tanh", "arctan"])
def test_ufuncs(name):
    x = np.abs(data((7, 5), "float64", nans=True)) + 0.5
    a = da.from_array(x, chunks=(3, 2))
    u = getattr(np, name)
    r = u(a)
    assert isinstance(r, da.Array)
    check(r, u(x), exact=name in ("absolute", "negative", "floor", "ceil", "isnan"))


def test_binary_ufuncs_and_dtype_kwarg():
    x, y = data((7,), "float64", 1), data((7,), "float64", 2)
    a, b = da.from_array(x, chunks=3), da.from_array(y, chunks=2)
    for u in [np.add, np.subtract, np.multiply, np.true_divide, np.maximum, np.minimum, np.less, np.equal,
              np.fmax, np.fmin, np.arctan2, np.hypot]:
        r = u(a, b)
        assert isinstance(r, da.Array), u
        check(r, u(x, y), exact=False)
    check(np.add(a, 1), np.add(x, 1), exact=False)
    check(np.add(x, a), np.add(x, a.compute()), exact=False)
    assert np.add.reduce is not None
    assert a.__array_ufunc__(np.add, "reduce", a) is NotImplemented


@pytest.mark.parametrize("dtype", ["float64", "float32", "int64", "int8", "bool"])
def test_astype(dtype):
    x = data((9, 4), "float64")
    a = da.from_array(x, chunks=(4, 3))
    with np.errstate(invalid="ignore"):
        check(a.astype(dtype), x.astype(dtype))
    i = data((9,), "int32")
    check(da.from_array(i, chunks=2).astype(dtype), i.astype(dtype))


def test_where_and_clip():
    x = data((8, 5), "float64")
    a = da.from_array(x, chunks=(3, 2))
    check(da.where(a > 0, a, 0), np.where(x > 0, x, 0))
    check(np.where(a > 0, a, -a), np.where(x > 0, x, -x))
    check(da.where(a > 0, 1.0, 2.0), np.where(x > 0, 1.0, 2.0))
    i = data((8,), "int32")
    check(da.where(da.from_array(i, chunks=3) > 0, da.from_array(i, chunks=3), 0), np.where(i > 0, i, 0))
    check(a.clip(-3, 4), x.clip(-3, 4))
    check(np.clip(a, -1, None), np.clip(x, -1, None))
    check(da.clip(da.from_array(i, chunks=3), 0, 10), np.clip(i, 0, 10))
    check(a.round(1), x.round(1))


# ------------------------------------------------------------ reductions

REDUCTIONS = ["sum", "mean", "max", "min", "std", "var", "prod", "any", "all"]


def _axes_for(ndim):
    out = [None]
    for ax in range(ndim):
        out += [ax, -1 - ax]
    if ndim >= 2:
        out += [(0, 1), (-1, 0)]
    if ndim >= 3:
        out += [(0, 2)]
    return out


@pytest.mark.parametrize("shape,chunks", CHUNKED)
@pytest.mark.parametrize("dtype", ["float64", "int64", "int32", "float32", "uint8", "bool"])
@pytest.mark.parametrize("name", REDUCTIONS)
def test_reductions(shape, chunks, dtype, name):
    x = data(shape, dtype)
    a = da.from_array(x, chunks=chunks)
    for axis in _axes_for(len(shape)):
        for keepdims in (False, True):
            try:
                with np.errstate(all="ignore"), _quiet():
                    expected = getattr(np, name)(x, axis=axis, keepdims=keepdims)
            except ValueError as e:  # max/min of an empty axis
                with pytest.raises(ValueError, match="zero-size array"):
                    getattr(a, name)(axis=axis, keepdims=keepdims).compute()
                assert "zero-size array" in str(e)
                continue
            r = getattr(a, name)(axis=axis, keepdims=keepdims)
            exact = name in ("max", "min", "any", "all") or (dtype[0] in "iub" and name in ("sum", "prod"))
            check(r, expected, exact=exact, rtol=1e-10)
            # np.<name>(x) dispatches through __array_function__.
            check(getattr(np, name)(a, axis=axis, keepdims=keepdims), expected, exact=exact, rtol=1e-10)


@pytest.mark.parametrize("shape,chunks", NONEMPTY)
@pytest.mark.parametrize("name", ["nansum", "nanmean", "nanmax", "nanmin", "nanstd", "nanvar"])
def test_nan_reductions(shape, chunks, name):
    x = data(shape, "float64", nans=True)
    if np.isnan(x).all():
        x.flat[0] = 1.5
    a = da.from_array(x, chunks=chunks)
    for axis in [None, 0, -1]:
        with np.errstate(all="ignore"), _quiet():
            expected = getattr(np, name)(x, axis=axis)
        check(getattr(da, name)(a, axis=axis), expected, exact=name in ("nanmax", "nanmin"), rtol=1e-10)


class _quiet:
    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)


@pytest.mark.parametrize("shape,chunks", NONEMPTY)
def test_arg_reductions_and_cumulative(shape, chunks):
    x = data(shape, "float64", seed=5)
    a = da.from_array(x, chunks=chunks)
    check(a.argmax(), np.argmax(x))
    check(da.argmin(a), np.argmin(x))
    for axis in range(len(shape)):
        check(a.argmax(axis=axis), np.argmax(x, axis=axis))
        check(np.argmin(a, axis=-1 - axis), np.argmin(x, axis=-1 - axis))
        check(a.cumsum(axis=axis), np.cumsum(x, axis=axis))
        check(np.cumprod(a, axis=axis), np.cumprod(x, axis=axis))
        check(da.diff(a, axis=axis), np.diff(x, axis=axis))
    i = data(shape, "int32")
    check(da.from_array(i, chunks=chunks).cumsum(axis=0), np.cumsum(i, axis=0))
    check(a.cumsum(), np.cumsum(x))


def test_reductions_dtype_and_empty():
    x = data((10,), "int32")
    a = da.from_array(x, chunks=3)
    check(a.sum(dtype="float64"), x.sum(dtype="float64"), exact=False)
    e = da.from_array(np.zeros((0,)), chunks=5)
    check(e.sum(), np.float64(0.0))
    assert da.from_array(np.ones((3, 0)), chunks=2).sum(axis=0).compute().shape == (0,)


def test_axis_errors():
    a = da.ones((3, 4), chunks=2)
    with pytest.raises(AxisError):
        a.sum(axis=2)
    with pytest.raises(AxisError):
        a.mean(axis=-3)
    with pytest.raises(ValueError):  # AxisError is a ValueError and an IndexError
        a.max(axis=5)
    with pytest.raises(IndexError):
        np.sum(a, axis=(0, 7))
    with pytest.raises(ValueError, match="duplicate"):
        a.sum(axis=(0, 0))
    with pytest.raises(AxisError):
        da.concatenate([a, a], axis=2)
    with pytest.raises(AxisError):
        a.cumsum(axis=3)


# -------------------------------------------------------------- indexing

INDEXES = [
    (slice(None),), (slice(1, 5),), (slice(None, None, -1),), (slice(-2, None),), (slice(5, 1, -2),),
    (slice(None, None, 3),), (0,), (-1,), (None,), (Ellipsis,), (Ellipsis, None), (slice(100, 200),),
    ([0, 2, 2, 1],), (np.array([3, -1, 0]),), (slice(0, 0),),
]
INDEXES_2D = [
    (slice(1, 4), slice(None, None, 2)), (2, slice(None)), (slice(None), -1), (Ellipsis, 1), (None, 1, None),
    (slice(None, None, -1), slice(None, None, -3)), (1, 2), ([4, 0], slice(1, 3)), (slice(None), [0, 7, 3]),
    (-1, [1, 1]), (Ellipsis, None, slice(2, 5)), (np.array([True, False, True, True, False, False]), slice(None)),
]


@pytest.mark.parametrize("shape,chunks", [((10,), 3), ((10,), 1), ((10,), ((4, 6),))])
@pytest.mark.parametrize("index", INDEXES, ids=repr)
def test_getitem_1d(shape, chunks, index):
    x = data(shape, "int64")
    a = da.from_array(x, chunks=chunks)
    check(a[index], x[index])
    d = dsa.from_array(x, chunks=chunks)[index]
    assert a[index].shape == d.shape


@pytest.mark.parametrize("chunks", [(2, 3), ((1, 5), (3, 3, 2)), 1])
@pytest.mark.parametrize("index", INDEXES_2D, ids=repr)
def test_getitem_2d(chunks, index):
    x = data((6, 8), "float64")
    a = da.from_array(x, chunks=chunks)
    r = a[index]
    check(r, x[index])
    assert r.shape == dsa.from_array(x, chunks=chunks)[index].shape


def test_boolean_mask_unknown_chunks():
    x = data((6, 8), "float64", nans=True)
    for chunks in [(2, 3), 1, (6, 8)]:
        a = da.from_array(x, chunks=chunks)
        r = a[a > 0]
        d = dsa.from_array(x, chunks=chunks)
        assert np.isnan(r.shape[0]) and r.ndim == 1
        assert repr(r).startswith("dask.array<getitem, shape=(nan,)")
        assert all(np.isnan(c) for c in r.chunks[0])
        # rask merges each row of blocks first (numpy's element order), so
        # it has one block per row of blocks where Dask has one per block.
        assert len(r.chunks[0]) == a.numblocks[0] <= len(d[d > 0].chunks[0])
        check(r, x[x > 0])
        check(a[~da.isnan(a)].sum(), np.nansum(x), exact=False)
        known = r.compute_chunk_sizes()
        assert known.shape == (int((x > 0).sum()),)
        with pytest.raises(ValueError):
            len(r)
    m = x > 0
    check(da.from_array(x, chunks=2)[m], x[m])  # a numpy mask


@pytest.mark.parametrize("chunks", [3, 1, 10])
@pytest.mark.parametrize("name", ["max", "min", "nanmax", "nanmin", "all", "any", "sum", "mean", "count_nonzero"])
def test_reductions_of_masks_with_empty_blocks(chunks, name):
    x = data((10,), "float64", nans=False)
    a = da.from_array(x, chunks=chunks)
    for threshold in [x.max() - 1e-9, np.sort(x)[-3], x.min() - 1]:
        sel = x[x > threshold]
        check(getattr(da, name)(a[a > threshold]), getattr(np, name)(sel), exact=name not in ("sum", "mean"))
    empty = a[a > x.max()]
    if name in ("max", "min", "nanmax", "nanmin"):
        with pytest.raises(ValueError, match="zero-size array"):
            getattr(da, name)(empty).compute()
    elif name != "mean":
        check(getattr(da, name)(empty), getattr(np, name)(x[x > x.max()]))
    with pytest.raises(ValueError, match="known chunk sizes"):
        a[a > 0].argmax()


def test_index_errors():
    a = da.from_array(np.arange(10), chunks=3)
    with pytest.raises(IndexError, match="out of bounds"):
        a[10]
    with pytest.raises(IndexError, match="out of bounds"):
        a[-11]
    with pytest.raises(IndexError, match="out of bounds"):
        a[[1, 10]]
    with pytest.raises(IndexError, match="too many indices"):
        a[1, 2]
    with pytest.raises(IndexError):
        a["x"]
    with pytest.raises(IndexError):
        a[1.5]
    with pytest.raises(ValueError, match="step"):
        a[::0]
    with pytest.raises(IndexError):
        a[..., ...]


def test_mask_assignment():
    x = data((6, 5), "float64", nans=True)
    a = da.from_array(x, chunks=(4, 2))
    a[da.isnan(a)] = 0
    y = x.copy()
    y[np.isnan(y)] = 0
    check(a, y)
    i = data((7,), "int32")
    b = da.from_array(i, chunks=3)
    b[i < 0] = 7
    j = i.copy()
    j[j < 0] = 7
    check(b, j)
    with pytest.raises(NotImplementedError):
        b[0] = 1


def test_no_copy_out_and_read_only_blocks_in():
    x = data((64, 8), "float64")
    a = da.from_array(x, chunks=(16, 8))
    out = (a + 1).compute()
    # numpy views the stitched result (its base is rask's holder), no copy.
    assert not out.flags.owndata and type(out.base).__name__ == "NumpyView" and out.flags.writeable
    np.testing.assert_array_equal(out, x + 1)

    def writes(block):
        block[0] = 1.0
        return block
    with pytest.raises(ValueError, match="read-only"):
        a.map_blocks(writes).compute()
    check(a.map_blocks(lambda b: b), x)  # a block handed back unchanged


def test_take():
    x = data((5, 7), "int32")
    a = da.from_array(x, chunks=(2, 3))
    check(da.take(a, [6, 0, 0, 3], axis=1), np.take(x, [6, 0, 0, 3], axis=1))
    check(np.take(a, [4, 1], axis=0), np.take(x, [4, 1], axis=0))


# ---------------------------------------------------------------- layout

@pytest.mark.parametrize("shape,chunks", NONEMPTY)
def test_transpose_reshape_rechunk(shape, chunks):
    x = data(shape, "float64")
    a = da.from_array(x, chunks=chunks)
    check(a.T, x.T)
    check(np.transpose(a), np.transpose(x))
    if len(shape) == 3:
        check(a.transpose(1, 0, 2), x.transpose(1, 0, 2))
        check(da.moveaxis(a, 0, -1), np.moveaxis(x, 0, -1))
    check(a.reshape(-1), x.reshape(-1))
    check(np.reshape(a, (x.size, 1)), x.reshape(x.size, 1))
    check(a.ravel(), x.ravel())
    for c in [1, 2, "auto", tuple(max(s // 2, 1) for s in shape)]:
        r = a.rechunk(c)
        assert r.chunks == dsa.from_array(x, chunks=chunks).rechunk(c).chunks
        check(r, x)


def test_reshape_errors_and_shapes():
    x = np.arange(24.0).reshape(4, 6)
    a = da.from_array(x, chunks=(2, 3))
    check(a.reshape(6, 4), x.reshape(6, 4))
    check(a.reshape((2, 3, 4)), x.reshape(2, 3, 4))
    check(a.reshape(3, -1), x.reshape(3, -1))
    with pytest.raises(ValueError):
        a.reshape(5, 5)
    with pytest.raises(ValueError):
        a.reshape(-1, -1)


def test_concatenate_stack_squeeze_expand():
    x, y = data((4, 3), "float64", 1), data((2, 3), "int32", 2)
    a, b = da.from_array(x, chunks=2), da.from_array(y, chunks=(1, 3))
    check(da.concatenate([a, b]), np.concatenate([x, y]))
    check(np.concatenate([a, b], axis=0), np.concatenate([x, y], axis=0))
    check(da.concatenate([a, a], axis=-1), np.concatenate([x, x], axis=-1))
    check(da.stack([a, a * 2]), np.stack([x, x * 2]))
    check(np.stack([a, a], axis=2), np.stack([x, x], axis=2))
    check(da.expand_dims(a, 1), np.expand_dims(x, 1))
    check(da.squeeze(da.expand_dims(a, 0)), x)
    check(a[:, :1].squeeze(axis=1), x[:, :1].squeeze(axis=1))
    with pytest.raises(ValueError):
        da.concatenate([a, da.ones((2, 4))])
    with pytest.raises(ValueError):
        da.stack([a, b])
    with pytest.raises(ValueError):
        a.squeeze(axis=0)


@pytest.mark.parametrize("chunks", [(2, 3), 1, ((3, 2), (4, 1))])
@pytest.mark.parametrize("dtype", ["float64", "int64", "float32"])
def test_dot_matmul_tensordot(chunks, dtype):
    x, y = data((5, 5), dtype, 1), data((5, 4), dtype, 2)
    v = data((5,), dtype, 3)
    a, b, w = da.from_array(x, chunks=chunks), da.from_array(y, chunks=2), da.from_array(v, chunks=2)
    exact = dtype == "int64"
    check(a.dot(b), x.dot(y), exact=exact, rtol=1e-5)
    check(da.dot(a, b), np.dot(x, y), exact=exact, rtol=1e-5)
    check(a @ b, x @ y, exact=exact, rtol=1e-5)
    check(a @ w, x @ v, exact=exact, rtol=1e-5)
    check(w @ a, v @ x, exact=exact, rtol=1e-5)
    check(np.matmul(a, b), np.matmul(x, y), exact=exact, rtol=1e-5)
    check(da.tensordot(a, b, axes=1), np.tensordot(x, y, axes=1), exact=exact, rtol=1e-5)
    check(np.tensordot(a, b, axes=([0], [0])), np.tensordot(x, y, axes=([0], [0])), exact=exact, rtol=1e-5)
    check(a @ y, x @ y, exact=exact, rtol=1e-5)
    with pytest.raises(ValueError):
        b @ b
    with pytest.raises(ValueError):
        da.dot(b, b)


def test_histogram_unique_bincount():
    x = data((200,), "float64", nans=False)
    a = da.from_array(x, chunks=33)
    counts, edges = da.histogram(a, bins=10, range=(-20, 20))
    ec, ee = np.histogram(x, bins=10, range=(-20, 20))
    check(counts, ec)
    np.testing.assert_allclose(edges, ee)
    c2, e2 = np.histogram(a, bins=5, range=(0, 1))
    assert isinstance(c2, da.Array)
    with pytest.raises(ValueError):
        da.histogram(a, bins=10)
    i = data((50,), "int64") % 7
    ia = da.from_array(np.abs(i), chunks=6)
    check(da.unique(ia), np.unique(np.abs(i)))
    check(np.unique(ia), np.unique(np.abs(i)))
    check(da.bincount(ia), np.bincount(np.abs(i)))
    check(da.bincount(ia, minlength=20), np.bincount(np.abs(i), minlength=20))


# ------------------------------------------------------ Python functions

def _double_plus(block, k=0):
    return block * 2 + k


@pytest.mark.parametrize("chunks", [3, 1, ((4, 6),)])
def test_map_blocks(chunks):
    x = data((10,), "float64")
    a = da.from_array(x, chunks=chunks)
    check(a.map_blocks(_double_plus), x * 2)
    check(da.map_blocks(_double_plus, a, k=5), x * 2 + 5)
    check(a.map_blocks(lambda b: (b > 0).astype("int8")), (x > 0).astype("int8"))
    check(a.map_blocks(lambda b: b.astype("float32"), dtype="float32"), x.astype("float32"))
    y = data((10,), "float64", 4)
    check(da.map_blocks(np.add, a, da.from_array(y, chunks=5)), x + y)
    s = a.map_blocks(lambda b: np.array([b.sum()]), chunks=(1,))
    assert s.shape == (len(a.chunks[0]),)
    np.testing.assert_allclose(s.compute(), [b.sum() for b in np.split(x, np.cumsum(a.chunks[0])[:-1])])

    def with_id(b, block_id=None):
        return np.full_like(b, block_id[0])
    check(a.map_blocks(with_id), np.repeat(np.arange(len(a.chunks[0])), a.chunks[0]).astype("float64"))


def test_map_blocks_drop_and_new_axis():
    x = data((6, 4), "float64")
    a = da.from_array(x, chunks=(2, 2))
    r = a.map_blocks(lambda b: b.sum(axis=1), drop_axis=1)
    check(r, x.sum(axis=1), exact=False)
    n = da.from_array(x[:, 0], chunks=2).map_blocks(lambda b: b[:, None], new_axis=1)
    check(n, x[:, :1])


@pytest.mark.parametrize("boundary", [None, "none", "reflect", "nearest", "periodic", 0.5])
@pytest.mark.parametrize("chunks", [(3, 4), (6, 5), ((2, 4), (3, 2))])
def test_map_overlap_matches_dask(boundary, chunks):
    x = data((6, 5), "float64")

    def smooth(b):
        out = b.copy()
        out[1:-1, 1:-1] = (b[:-2, 1:-1] + b[2:, 1:-1] + b[1:-1, :-2] + b[1:-1, 2:] + b[1:-1, 1:-1]) / 5
        return out
    r = da.from_array(x, chunks=chunks).map_overlap(smooth, depth=1, boundary=boundary)
    d = dsa.from_array(x, chunks=chunks).map_overlap(smooth, depth=1, boundary=boundary)
    check(r, d.compute(), exact=True)
    r2 = da.map_overlap(smooth, da.from_array(x, chunks=chunks), depth={0: 1, 1: 1}, boundary=boundary)
    check(r2, d.compute())


def test_python_function_errors_come_back():
    a = da.from_array(np.arange(4.0), chunks=2)

    def bad(b):
        raise KeyError("no such thing")
    with pytest.raises(KeyError, match="no such thing"):
        a.map_blocks(bad, dtype="float64").compute()


def test_delayed_functions_get_and_return_numpy():
    @rask.delayed
    def f(block):
        assert type(block) is np.ndarray
        return block * 2

    x = np.arange(12.0).reshape(3, 4)
    out = f(x).compute()
    assert type(out) is np.ndarray and out.flags.writeable
    np.testing.assert_array_equal(out, x * 2)
    # A rask array as a delayed argument arrives as one numpy array.
    x5 = data((6, 5), "float64")
    total = rask.delayed(np.sum)(da.from_array(x5, chunks=(2, 3)) * 2, axis=0).compute()
    np.testing.assert_allclose(total, (x5 * 2).sum(axis=0))
    shape = rask.delayed(lambda b: (type(b).__name__, b.shape))(da.ones((4, 3), chunks=1)).compute()
    assert shape == ("ndarray", (4, 3))
    ints = rask.delayed(lambda b: b)(np.arange(5, dtype="uint16")).compute()
    assert ints.dtype == np.uint16
    obj = rask.delayed(lambda b: b)(np.array(["a", "b"])).compute()  # pickled, not an array value
    assert obj.tolist() == ["a", "b"]


# -------------------------------------------------------------- storage

@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_roundtrip(tmp_path, zarr_format):
    import zarr
    x = data((9, 7), "float32")
    a = da.from_array(x, chunks=(4, 3))
    path = str(tmp_path / "x.zarr")
    da.to_zarr(a, path, zarr_format=zarr_format)
    z = zarr.open_array(path, mode="r")
    np.testing.assert_array_equal(z[:], x)
    back = da.from_zarr(path)
    assert back.chunks == ((4, 4, 1), (3, 3, 1))
    check(back, x)
    check(da.from_zarr(path, chunks=5), x)
    with pytest.raises(ValueError):
        a.to_zarr(path)
    a.to_zarr(path, overwrite=True)
    # a store zarr-python wrote
    zpath = str(tmp_path / "z.zarr")
    zz = zarr.create_array(zpath, shape=(5, 6), chunks=(2, 4), dtype="int16")
    zz[:] = np.arange(30, dtype="int16").reshape(5, 6)
    check(da.from_zarr(zpath), np.arange(30, dtype="int16").reshape(5, 6))


def test_missing_files_raise_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        da.from_zarr(str(tmp_path / "nope.zarr"))
    with pytest.raises(FileNotFoundError):
        da.from_npy_stack(str(tmp_path / "nope"))


def test_npy_stack_roundtrip_with_dask(tmp_path):
    x = data((10, 4), "int32")
    d = str(tmp_path / "stack")
    da.to_npy_stack(d, da.from_array(x, chunks=(3, 2)), axis=0)
    back = dsa.from_npy_stack(d)  # Dask reads rask's stack
    np.testing.assert_array_equal(back.compute(), x)
    d2 = str(tmp_path / "stack2")
    dsa.to_npy_stack(d2, dsa.from_array(x, chunks=(4, 4)), axis=0)
    r = da.from_npy_stack(d2)  # and rask reads Dask's
    assert r.chunks == ((4, 4, 2), (4,))
    check(r, x)


def test_store_into_numpy_and_zarr(tmp_path):
    import zarr
    x = data((7, 5), "float64")
    a = da.from_array(x, chunks=(3, 2))
    target = np.zeros_like(x)
    da.store(a, target)
    np.testing.assert_array_equal(target, x)
    z = zarr.create_array(str(tmp_path / "s.zarr"), shape=x.shape, chunks=(3, 2), dtype="float64")
    a.store(z)
    np.testing.assert_array_equal(z[:], x)
    with pytest.raises(ValueError):
        da.store([a, a], [target])


# ------------------------------------------------------ compute / persist

def test_compute_persist_and_client_on_local_cluster():
    x = data((20, 6), "float64")
    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
        a = da.from_array(x, chunks=(5, 3))
        m, s = rask.compute(a.mean(axis=0), (a * 2).sum())
        check(m, x.mean(axis=0), exact=False)
        check(s, (x * 2).sum(), exact=False)
        p = (a + 1).persist()
        assert isinstance(p, da.Array) and p.chunks == a.chunks
        check(p, x + 1)
        check(p.sum(axis=1), (x + 1).sum(axis=1), exact=False)
        f = client.compute(a[::2])
        got = f.result()
        assert type(got) is np.ndarray
        np.testing.assert_array_equal(got, x[::2])
        (p2,) = rask.persist(a.T)
        check(p2, x.T)


def test_numpy_function_not_supported_gives_type_error():
    a = da.ones(3, chunks=1)
    with pytest.raises(TypeError):
        np.fft.fft(a)



@pytest.fixture
def moto_s3(monkeypatch):
    """A moto S3 server on a free port, with the AWS environment set."""
    from moto.server import ThreadedMotoServer
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    try:
        yield endpoint
    finally:
        server.stop()


def test_zarr_on_s3_both_ways(moto_s3, tmp_path):
    import boto3
    import zarr
    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    s3.create_bucket(Bucket="arrays")
    options = {"endpoint_url": moto_s3, "region": "us-east-1"}
    x = data((9, 7), "float64", nans=True)
    a = da.from_array(x, chunks=(4, 3))
    da.to_zarr(a, "s3://arrays/x.zarr", storage_options=options)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="arrays")["Contents"]}
    assert "x.zarr/zarr.json" in keys and len(keys) == 1 + 3 * 3
    # zarr-python reads what rask wrote (downloaded as is).
    for k in keys:
        local = tmp_path / k
        local.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file("arrays", k, str(local))
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "x.zarr"), mode="r")[:], x)
    check(da.from_zarr("s3://arrays/x.zarr", storage_options=options), x)
    # rask reads a store zarr-python wrote (uploaded as is).
    src = tmp_path / "z.zarr"
    z = zarr.create_array(str(src), shape=(6, 5), chunks=(4, 2), dtype="int32", zarr_format=2)
    z[:] = np.arange(30, dtype="int32").reshape(6, 5)
    for f in src.rglob("*"):
        if f.is_file():
            s3.upload_file(str(f), "arrays", "z.zarr/" + str(f.relative_to(src)))
    check(da.from_zarr("s3://arrays/z.zarr", storage_options=options).sum(axis=0),
          np.arange(30, dtype="int32").reshape(6, 5).sum(axis=0))


def _pid_block(block):
    return np.full(block.shape, os.getpid(), dtype="int64")


def test_arrays_on_a_cluster_of_plain_and_python_workers(cluster):
    """Built-in array ops run on any worker; map_blocks (a Python function)
    only on the Python worker; results cross back to numpy."""
    cluster.add_plain_worker()
    cluster.add_python_worker()
    cluster.wait_workers(2)
    x = data((40, 30), "float64", nans=True)
    with Client(cluster.address) as client:
        a = da.from_array(x, chunks=(7, 11))
        check(da.nanmean(a, axis=0), np.nanmean(x, axis=0), exact=False)
        check((a[::-3, 5:] * 2).T, (x[::-3, 5:] * 2).T)
        check(a.map_blocks(_double_plus, k=1.5), x * 2 + 1.5)
        pids = np.unique(a.map_blocks(_pid_block, dtype="int64").compute())
        assert set(pids.tolist()) <= {p.pid for p in cluster.python}
        f = client.compute(a.sum(axis=1))
        np.testing.assert_allclose(f.result(), x.sum(axis=1), equal_nan=True)
