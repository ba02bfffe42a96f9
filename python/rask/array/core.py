"""``rask.array.Array``: Dask's array API over ``rask._rask.Array``.

The graph is built in Rust (``rask_array::Array``); this module parses
Dask's and numpy's arguments (chunks, axes, index expressions, dtypes),
raises the exceptions they raise, and turns results into numpy arrays.
Python functions (``map_blocks``, ``map_overlap``, ufuncs rask has no
kernel for) become ``python.call`` tasks over the blocks.
"""

from __future__ import annotations

import inspect
import math
import numbers
import operator
import os
import uuid

import numpy as np

from .. import _protocol, _rask
from ..base import RaskCollection

__all__ = [
    "Array", "from_array", "asarray", "asanyarray", "ones", "zeros", "full", "empty", "arange", "linspace", "eye",
    "ones_like", "zeros_like", "full_like", "empty_like", "concatenate", "stack", "where", "dot", "matmul",
    "tensordot", "transpose", "reshape", "histogram", "map_blocks", "map_overlap", "store", "to_zarr", "from_zarr",
    "from_npy_stack", "to_npy_stack", "normalize_chunks", "unique", "bincount", "take", "squeeze", "expand_dims",
    "clip", "isnan", "around", "diff", "cumsum", "cumprod", "moveaxis", "swapaxes", "ravel",
    "argmin", "argmax", "count_nonzero",

]

try:
    AxisError = np.exceptions.AxisError
except AttributeError:  # numpy < 1.25
    AxisError = np.AxisError

#: The dtypes rask arrays have.
SUPPORTED_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32",
                    "float64")
#: Dask's default chunk size (``array.chunk-size``).
CHUNK_BYTES = 128 * 2**20


def _dtype(dtype) -> np.dtype:
    """``dtype`` as a numpy dtype rask has; TypeError otherwise."""
    d = np.dtype(dtype)
    if d.name not in SUPPORTED_DTYPES:
        raise TypeError(f"rask arrays do not support dtype {d} (supported: {', '.join(SUPPORTED_DTYPES)})")
    return d


def _is_nan(n) -> bool:
    return isinstance(n, float) and math.isnan(n)


# ------------------------------------------------------------------ chunks

_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40, "k": 10**3, "m": 10**6, "g": 10**9}


def _parse_bytes(text):
    """``"100 MiB"`` -> 104857600; None when ``text`` is not a byte size."""
    import re
    m = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        return None
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _auto_axes(shape, itemsize, fixed, limit=None):
    """Dask-like "auto" chunks: about 128 MiB blocks (or ``limit`` bytes),
    near-cubic, over the axes not fixed by the caller."""
    budget = max((limit or CHUNK_BYTES) // max(itemsize, 1), 1)
    for ax, c in fixed.items():
        budget = max(budget // max(c, 1), 1)
    open_axes = [ax for ax in range(len(shape)) if ax not in fixed]
    out = {}
    while open_axes:
        edge = budget ** (1.0 / len(open_axes))
        small = [ax for ax in open_axes if shape[ax] <= edge]
        if not small:
            for ax in open_axes:
                out[ax] = max(int(edge), 1)
            break
        for ax in small:
            out[ax] = max(shape[ax], 1)
            budget = max(budget // max(shape[ax], 1), 1)
            open_axes.remove(ax)
    return out


def _blocks(n, size):
    if n == 0:
        return (0,)
    size = max(int(size), 1)
    full, rest = divmod(n, size)
    return (size,) * full + ((rest,) if rest else ())


def normalize_chunks(chunks, shape=None, limit=None, dtype=None, previous_chunks=None):
    """Chunks as Dask normalizes them: a tuple of per-axis tuples of sizes.

    ``chunks`` may be an int (every axis), a tuple with an entry per axis
    (int, -1 or None for the whole axis, ``"auto"``, or explicit sizes), a
    dict ``{axis: size}`` (other axes whole) or ``"auto"``.
    """
    if shape is None:
        if isinstance(chunks, tuple) and all(isinstance(c, tuple) for c in chunks):
            return chunks
        raise ValueError("normalize_chunks needs a shape unless chunks are explicit")
    shape = tuple(int(s) for s in shape)
    nd = len(shape)
    itemsize = np.dtype(dtype).itemsize if dtype is not None else 8
    if isinstance(chunks, list):
        chunks = tuple(chunks)
    if isinstance(chunks, str) and chunks != "auto" and _parse_bytes(chunks) is not None:
        limit, chunks = _parse_bytes(chunks), "auto"
    if chunks is None or (isinstance(chunks, str) and chunks == "auto"):
        per_axis = ["auto"] * nd
    elif isinstance(chunks, str):
        raise ValueError(f"chunks {chunks!r} is not understood: give an int, a tuple, a dict or 'auto'")
    elif isinstance(chunks, dict):
        for ax in chunks:
            if not isinstance(ax, numbers.Integral) or not -nd <= ax < nd:
                raise ValueError(f"chunks {chunks!r} name an axis outside the shape {shape}")
        per_axis = [chunks.get(ax, chunks.get(ax - nd, -1)) for ax in range(nd)]
    elif isinstance(chunks, numbers.Integral):
        per_axis = [int(chunks)] * nd
    elif isinstance(chunks, tuple):
        if len(chunks) != nd:
            raise ValueError(f"Chunks and shape must be of the same length/dimension. Got chunks={chunks}, "
                             f"shape={shape}")
        per_axis = list(chunks)
    else:
        raise ValueError(f"chunks {chunks!r} is not understood: give an int, a tuple, a dict or 'auto'")
    fixed = {}
    for ax, c in enumerate(per_axis):
        if c is None or (isinstance(c, numbers.Integral) and c == -1):
            per_axis[ax] = shape[ax]
            c = shape[ax]
        if isinstance(c, numbers.Integral) and not isinstance(c, bool):
            if c <= 0 and shape[ax] > 0:
                raise ValueError(f"chunk size {c} on axis {ax} must be positive")
            fixed[ax] = int(c)
        elif isinstance(c, float) and not math.isnan(c):
            raise ValueError(f"chunk size {c!r} on axis {ax} must be an integer")
    auto = _auto_axes(shape, itemsize, fixed, limit) if any(isinstance(c, str) for c in per_axis) else {}
    out = []
    for ax, c in enumerate(per_axis):
        if isinstance(c, str):
            if c != "auto":
                raise ValueError(f"chunks {c!r} on axis {ax} are not understood")
            out.append(_blocks(shape[ax], auto[ax]))
        elif isinstance(c, numbers.Integral):
            out.append(_blocks(shape[ax], c))
        else:
            sizes = tuple(c)
            if any(_is_nan(s) for s in sizes):
                out.append(sizes)
                continue
            sizes = tuple(int(s) for s in sizes)
            if sum(sizes) != shape[ax] or any(s < 0 for s in sizes):
                raise ValueError(f"Chunks do not add up to shape. Got chunks={chunks}, shape={shape}")
            out.append(sizes)
    return tuple(out)


def _native_chunks(chunks):
    return [list(c) for c in chunks]


# ------------------------------------------------------------------- axes

def _axis(axis, ndim):
    if not isinstance(axis, numbers.Integral) or isinstance(axis, bool):
        raise TypeError(f"'{type(axis).__name__}' object cannot be interpreted as an integer")
    if not -ndim <= axis < ndim:
        raise AxisError(int(axis), ndim)
    return int(axis) % ndim if ndim else 0


def _axes(axis, ndim):
    """None (all), an int or a tuple, negative allowed; numpy's errors."""
    if axis is None:
        return None
    if isinstance(axis, (tuple, list)):
        axes = [_axis(a, ndim) for a in axis]
        if len(set(axes)) != len(axes):
            raise ValueError("duplicate value in 'axis'")
        return axes
    return [_axis(axis, ndim)]


# ------------------------------------------------------------------- Array

def _scalar_value(v):
    """A Python scalar (bool, int, float) from a Python or numpy scalar."""
    if isinstance(v, np.generic):
        v = v.item()
    return v


def _is_scalar(v) -> bool:
    return isinstance(v, (bool, int, float)) and not isinstance(v, np.generic)


class Array(RaskCollection):
    """A lazy chunked n-dimensional array, as ``dask.array.Array``."""

    __slots__ = ("_a", "__weakref__")
    __array_priority__ = 11

    def __init__(self, native):
        self._a = native

    # ----------------------------------------------------- protocol
    def __rask_nodes__(self):
        return self._a.nodes()

    def __rask_finalize__(self, futures):
        out = self._a.finalize(futures)
        return out[()] if out.ndim == 0 else out

    def __rask_persist__(self, futures):
        return Array(self._a.persisted(futures))

    # ----------------------------------------------------- metadata
    @property
    def shape(self):
        return tuple(np.nan if s is None else s for s in self._a.shape)

    @property
    def chunks(self):
        return tuple(tuple(np.nan if s is None else s for s in axis) for axis in self._a.chunks)

    @property
    def chunksize(self):
        return tuple(max(c) if c and not any(_is_nan(x) for x in c) else (np.nan if c else 0) for c in self.chunks)

    @property
    def dtype(self):
        return np.dtype(self._a.dtype)

    @property
    def ndim(self):
        return len(self._a.shape)

    @property
    def size(self):
        s = self.shape
        return np.nan if any(_is_nan(x) for x in s) else math.prod(s)

    @property
    def nbytes(self):
        n = self.size
        return n if _is_nan(n) else n * self.dtype.itemsize

    @property
    def itemsize(self):
        return self.dtype.itemsize

    @property
    def numblocks(self):
        return tuple(len(c) for c in self._a.chunks)

    @property
    def npartitions(self):
        return self._a.npartitions

    @property
    def name(self):
        return self._a.name

    @property
    def T(self):
        return self.transpose()

    @property
    def _meta(self):
        return np.empty((0,) * self.ndim, dtype=self.dtype)

    def _rask_node(self):
        """The whole array as one graph node (one block), for when it is an
        argument of a ``delayed`` call: the function gets a numpy array."""
        if any(_is_nan(s) for s in self.shape):
            raise ValueError("an array with unknown chunk sizes cannot be a delayed argument; call "
                             "x.compute_chunk_sizes() first")
        whole = self if self.npartitions == 1 else self.rechunk(tuple((s,) for s in self.shape))
        return whole._a.nodes()[0]

    def __dask_keys__(self):
        return [n.key for n in self._a.nodes()]

    def __len__(self):
        if not self.ndim:
            raise TypeError("len() of unsized object")
        n = self.shape[0]
        if _is_nan(n):
            raise ValueError("Cannot call len() on object with unknown chunk size.")
        return n

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self):
        name = self.name.rsplit("-", 1)[0]
        def fmt(t):
            inner = ", ".join("nan" if _is_nan(x) else str(x) for x in t)
            return f"({inner},)" if len(t) == 1 else f"({inner})"
        return (f"dask.array<{name}, shape={fmt(self.shape)}, dtype={self.dtype}, chunksize={fmt(self.chunksize)}, "
                f"chunktype=numpy.ndarray>")

    def _repr_html_(self):
        from ._html import array_html
        return array_html(self)

    def __bool__(self):
        if not _is_nan(self.size) and self.size > 1:
            raise ValueError(f"The truth value of a {type(self).__name__} is ambiguous. Use a.any() or a.all().")
        return bool(self.compute())

    __hash__ = object.__hash__

    def __array__(self, dtype=None, copy=None):
        x = np.asarray(self.compute())
        return x if dtype is None else x.astype(dtype, copy=False)

    def __int__(self):
        return int(self.compute())

    def __float__(self):
        return float(self.compute())

    def __index__(self):
        return operator.index(self.compute())

    def __complex__(self):
        return complex(self.compute())

    # -------------------------------------------------- elementwise
    def _binary(self, other, op, reflected=False):
        other = _operand(other)
        if other is NotImplemented:
            return NotImplemented
        if isinstance(other, Array):
            a, b = (other, self) if reflected else (self, other)
            return Array(a._a.binary(op, b._a))
        return Array(self._a.scalar(op, other, reflected))

    def __add__(self, o):
        return self._binary(o, "add")

    def __radd__(self, o):
        return self._binary(o, "add", True)

    def __sub__(self, o):
        return self._binary(o, "sub")

    def __rsub__(self, o):
        return self._binary(o, "sub", True)

    def __mul__(self, o):
        return self._binary(o, "mul")

    def __rmul__(self, o):
        return self._binary(o, "mul", True)

    def __truediv__(self, o):
        return self._binary(o, "truediv")

    def __rtruediv__(self, o):
        return self._binary(o, "truediv", True)

    def __floordiv__(self, o):
        return self._binary(o, "floordiv")

    def __rfloordiv__(self, o):
        return self._binary(o, "floordiv", True)

    def __mod__(self, o):
        return self._binary(o, "mod")

    def __rmod__(self, o):
        return self._binary(o, "mod", True)

    def __pow__(self, o):
        return self._binary(o, "pow")

    def __rpow__(self, o):
        return self._binary(o, "pow", True)

    def __lt__(self, o):
        return self._binary(o, "lt")

    def __le__(self, o):
        return self._binary(o, "le")

    def __gt__(self, o):
        return self._binary(o, "gt")

    def __ge__(self, o):
        return self._binary(o, "ge")

    def __eq__(self, o):
        return self._binary(o, "eq")

    def __ne__(self, o):
        return self._binary(o, "ne")

    def _bitwise(self, other, ufunc, logical, reflected=False):
        other = _operand(other)
        if other is NotImplemented:
            return NotImplemented
        other_dtype = other.dtype if isinstance(other, Array) else np.result_type(other)
        if self.dtype == bool and (other_dtype == bool) and logical is not None:
            return self._binary(other, logical, reflected)
        args = (other, self) if reflected else (self, other)
        return _elemwise_py(ufunc, *args)

    def __and__(self, o):
        return self._bitwise(o, np.bitwise_and, "logical_and")

    def __rand__(self, o):
        return self._bitwise(o, np.bitwise_and, "logical_and", True)

    def __or__(self, o):
        return self._bitwise(o, np.bitwise_or, "logical_or")

    def __ror__(self, o):
        return self._bitwise(o, np.bitwise_or, "logical_or", True)

    def __xor__(self, o):
        return self._bitwise(o, np.bitwise_xor, "ne")

    def __rxor__(self, o):
        return self._bitwise(o, np.bitwise_xor, "ne", True)

    def __lshift__(self, o):
        return self._bitwise(o, np.left_shift, None)

    def __rshift__(self, o):
        return self._bitwise(o, np.right_shift, None)

    def __neg__(self):
        if self.dtype == bool:
            raise TypeError("The numpy boolean negative, the `-` operator, is not supported, use the `~` operator "
                            "or the logical_not function instead.")
        return Array(self._a.unary("negative"))

    def __pos__(self):
        return self

    def __abs__(self):
        return Array(self._a.unary("absolute"))

    def __invert__(self):
        if self.dtype == bool:
            return Array(self._a.unary("logical_not"))
        if self.dtype.kind == "f":
            raise TypeError("ufunc 'invert' not supported for the input types")
        return _elemwise_py(np.invert, self)

    def __matmul__(self, o):
        o = _operand(o)
        if o is NotImplemented or not isinstance(o, Array):
            return NotImplemented
        return matmul(self, o)

    def __rmatmul__(self, o):
        o = _operand(o)
        if o is NotImplemented or not isinstance(o, Array):
            return NotImplemented
        return matmul(o, self)

    # ------------------------------------------------ numpy protocols
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or kwargs.get("out") is not None:
            return NotImplemented
        kwargs.pop("out", None)
        dtype = kwargs.pop("dtype", None)
        if kwargs or ufunc.nout != 1:
            return NotImplemented
        name = ufunc.__name__
        if ufunc.signature is not None:  # a generalized ufunc
            if name == "matmul":
                out = matmul(*inputs)
                return out.astype(dtype) if dtype is not None else out
            return NotImplemented
        if ufunc.nin == 1:
            (x,) = inputs
            if name in _UNARY:
                out = Array(_operand(x)._a.unary(_UNARY[name]))
            elif name == "positive":
                out = x
            elif name == "invert" or name == "bitwise_not":
                out = ~x
            elif name == "rint":
                out = Array(x._a.unary("round", 0))
            else:
                out = _elemwise_py(ufunc, x)
        elif ufunc.nin == 2:
            a, b = inputs
            if name in _BINARY and (isinstance(a, Array) or _operand(a) is not NotImplemented):
                op = _BINARY[name]
                out = a._binary(b, op) if isinstance(a, Array) else b._binary(a, op, reflected=True)
                if out is NotImplemented:
                    return NotImplemented
            elif name in ("bitwise_and", "bitwise_or", "bitwise_xor", "logical_xor"):
                logical = {"bitwise_and": "logical_and", "bitwise_or": "logical_or"}.get(name, "ne")
                a, b = _operand(a), _operand(b)
                if isinstance(a, Array):
                    out = a._bitwise(b, ufunc, logical)
                else:
                    out = b._bitwise(a, ufunc, logical, reflected=True)
                if name == "logical_xor":
                    out = _elemwise_py(ufunc, a, b)
            else:
                out = _elemwise_py(ufunc, *inputs)
        else:
            return NotImplemented
        if out is NotImplemented:
            return NotImplemented
        return out.astype(dtype) if dtype is not None else out

    def __array_function__(self, func, types, args, kwargs):
        impl = _FUNCTIONS.get(func)
        if impl is None:
            return NotImplemented
        return impl(*args, **kwargs)

    # ----------------------------------------------------- methods
    def astype(self, dtype, casting="unsafe", copy=True):
        return Array(self._a.astype(_dtype(dtype).name))

    def compute_chunk_sizes(self):
        return Array(self._a.compute_chunk_sizes())

    def rechunk(self, chunks="auto", threshold=None, block_size_limit=None, balance=False):
        if any(_is_nan(s) for s in self.shape):
            raise ValueError("Array chunk sizes are unknown: call x.compute_chunk_sizes() before rechunking")
        if isinstance(chunks, dict):
            chunks = {(_axis(k, self.ndim)): v for k, v in chunks.items()}
            chunks = tuple(chunks.get(ax, self.chunks[ax]) for ax in range(self.ndim))
        c = normalize_chunks(chunks, self.shape, dtype=self.dtype)
        if c == self.chunks:
            return self
        return Array(self._a.rechunk(_native_chunks(c)))

    def _reduce(self, op, axis=None, keepdims=False, dtype=None, ddof=0, split_every=None):
        x = self if dtype is None else self.astype(dtype)
        axes = _axes(axis, self.ndim)
        return Array(x._a.reduce(op, axes, bool(keepdims), int(ddof), int(split_every or 4)))

    def sum(self, axis=None, dtype=None, keepdims=False, split_every=None, out=None):
        return self._reduce("sum", axis, keepdims, dtype, split_every=split_every)

    def prod(self, axis=None, dtype=None, keepdims=False, split_every=None, out=None):
        return self._reduce("prod", axis, keepdims, dtype, split_every=split_every)

    def mean(self, axis=None, dtype=None, keepdims=False, split_every=None, out=None):
        return self._reduce("mean", axis, keepdims, dtype, split_every=split_every)

    def max(self, axis=None, keepdims=False, split_every=None, out=None):
        return self._reduce("max", axis, keepdims, split_every=split_every)

    def min(self, axis=None, keepdims=False, split_every=None, out=None):
        return self._reduce("min", axis, keepdims, split_every=split_every)

    def std(self, axis=None, dtype=None, keepdims=False, ddof=0, split_every=None, out=None):
        return self._reduce("std", axis, keepdims, dtype, ddof, split_every)

    def var(self, axis=None, dtype=None, keepdims=False, ddof=0, split_every=None, out=None):
        return self._reduce("var", axis, keepdims, dtype, ddof, split_every)

    def any(self, axis=None, keepdims=False, split_every=None, out=None):
        return self._reduce("any", axis, keepdims, split_every=split_every)

    def all(self, axis=None, keepdims=False, split_every=None, out=None):
        return self._reduce("all", axis, keepdims, split_every=split_every)

    def argmin(self, axis=None, keepdims=False, split_every=None, out=None):
        return _arg(self, "argmin", axis, keepdims)

    def argmax(self, axis=None, keepdims=False, split_every=None, out=None):
        return _arg(self, "argmax", axis, keepdims)

    def cumsum(self, axis=None, dtype=None, out=None, method="sequential"):
        return _cumulative(self, "cumsum", axis, dtype)

    def cumprod(self, axis=None, dtype=None, out=None, method="sequential"):
        return _cumulative(self, "cumprod", axis, dtype)

    def clip(self, min=None, max=None):
        return clip(self, min, max)

    def round(self, decimals=0):
        return Array(self._a.unary("round", int(decimals)))

    def transpose(self, *axes):
        if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list))):
            axes = axes[0]
        return transpose(self, axes or None)

    def reshape(self, *shape, merge_chunks=True, limit=None):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        return reshape(self, shape)

    def ravel(self):
        return ravel(self)

    flatten = ravel

    def squeeze(self, axis=None):
        return squeeze(self, axis)

    def swapaxes(self, axis1, axis2):
        return swapaxes(self, axis1, axis2)

    def dot(self, other):
        return dot(self, other)

    def map_blocks(self, func, *args, **kwargs):
        return map_blocks(func, self, *args, **kwargs)

    def map_overlap(self, func, depth, boundary=None, trim=True, **kwargs):
        return map_overlap(func, self, depth=depth, boundary=boundary, trim=trim, **kwargs)

    def to_zarr(self, *args, **kwargs):
        return to_zarr(self, *args, **kwargs)

    def store(self, target, **kwargs):
        return store([self], [target], **kwargs)

    def to_delayed(self, optimize_graph=True):
        from ..delayed import Delayed
        nodes = self._a.nodes()
        return np.array([Delayed(n) for n in nodes], dtype=object).reshape(self.numblocks)

    def nonzero(self):
        raise NotImplementedError("nonzero is not in rask.array yet")

    def __getitem__(self, index):
        return _getitem(self, index)

    def __setitem__(self, key, value):
        """``x[mask] = value`` with a boolean array of ``x``'s shape and a
        scalar (or broadcastable) value, as Dask: ``x`` becomes
        ``where(mask, value, x)`` in its own dtype."""
        if isinstance(key, np.ndarray) and key.dtype == bool:
            key = from_array(key)
        if not (isinstance(key, Array) and key.dtype == bool and key.shape == self.shape):
            raise NotImplementedError("rask.array supports item assignment with a boolean mask of the array's "
                                      "shape only")
        value = _as_array(value)
        if value.dtype != self.dtype:
            value = value.astype(self.dtype)
        self._a = where(key, value, self)._a


def _operand(v):
    """Another operand as an Array or a Python scalar; NotImplemented for
    what rask cannot combine with an array."""
    if isinstance(v, Array):
        return v
    if isinstance(v, np.ndarray):
        if v.ndim == 0:
            return _operand(v[()])
        return from_array(v)
    if isinstance(v, np.generic):
        if v.dtype.name not in SUPPORTED_DTYPES:
            return NotImplemented
        return from_array(np.asarray(v))
    if isinstance(v, (bool, int, float)):
        return v
    if isinstance(v, (list, tuple)):
        try:
            arr = np.asarray(v)
        except Exception:
            return NotImplemented
        if arr.dtype.name in SUPPORTED_DTYPES:
            return from_array(arr)
    return NotImplemented


_BINARY = {
    "add": "add", "subtract": "sub", "multiply": "mul", "true_divide": "truediv", "divide": "truediv",
    "floor_divide": "floordiv", "remainder": "mod", "mod": "mod", "power": "pow", "maximum": "maximum",
    "minimum": "minimum", "fmax": "fmax", "fmin": "fmin", "less": "lt", "less_equal": "le", "greater": "gt",
    "greater_equal": "ge", "equal": "eq", "not_equal": "ne", "logical_and": "logical_and",
    "logical_or": "logical_or",
}
_UNARY = {
    "negative": "negative", "absolute": "absolute", "sqrt": "sqrt", "exp": "exp", "log": "log", "sin": "sin",
    "cos": "cos", "floor": "floor", "ceil": "ceil", "isnan": "isnan", "logical_not": "logical_not",
}


def _arg(x, op, axis, keepdims):
    if any(_is_nan(s) for s in x.shape):
        raise ValueError(f"{op} needs known chunk sizes (its flat index counts positions); call "
                         "x.compute_chunk_sizes() first")
    if axis is None:
        out = Array(x._a.reduce(op, None, False, 0, 4))
        if keepdims:
            out = out.reshape((1,) * x.ndim)
        return out
    return Array(x._a.reduce(op, [_axis(axis, x.ndim)], bool(keepdims), 0, 4))


def _cumulative(x, op, axis, dtype):
    if axis is None:
        x = x.ravel() if x.ndim != 1 else x
        axis = 0
    if dtype is not None:
        x = x.astype(dtype)
    return Array(x._a.cumulative(op, _axis(axis, x.ndim)))


# ---------------------------------------------------------------- indexing

_INDEX_ERROR = ("only integers, slices (`:`), ellipsis (`...`), numpy.newaxis (`None`) and integer or boolean arrays "
                "are valid indices")


def _getitem(x, index):
    if not isinstance(index, tuple):
        index = (index,)
    # Boolean masks as an Array (or a numpy array of the array's shape).
    if len(index) == 1 and isinstance(index[0], Array) and index[0].dtype == bool:
        return _mask(x, index[0])
    if len(index) == 1 and isinstance(index[0], np.ndarray) and index[0].dtype == bool and index[0].ndim > 1:
        return _mask(x, from_array(index[0]))
    n_real = sum(1 for i in index if i is not None and i is not Ellipsis)
    if sum(1 for i in index if i is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if n_real > x.ndim:
        raise IndexError(f"too many indices for array: array is {x.ndim}-dimensional, but {n_real} were indexed")
    # Expand the ellipsis so that each entry's input axis is known.
    if Ellipsis in [i for i in index if not isinstance(i, (np.ndarray, Array, list))]:
        pos = next(k for k, i in enumerate(index) if i is Ellipsis and not isinstance(i, (np.ndarray, list)))
        fill = x.ndim - n_real
        index = index[:pos] + (slice(None),) * fill + index[pos + 1:]
    items = []
    fancy = None  # (output axis, indices)
    in_axis = out_axis = 0
    for i in index:
        if i is None:
            items.append(("newaxis",))
            out_axis += 1
            continue
        size = x.shape[in_axis]
        if isinstance(i, slice):
            start, stop, step = (None if v is None else operator.index(v) for v in (i.start, i.stop, i.step))
            if step == 0:
                raise ValueError("slice step cannot be zero")
            items.append(("range", start, stop, 1 if step is None else step))
            in_axis += 1
            out_axis += 1
        elif isinstance(i, (numbers.Integral, np.integer)) and not isinstance(i, (bool, np.bool_)):
            i = int(i)
            if not _is_nan(size) and not -size <= i < size:
                raise IndexError(f"index {i} is out of bounds for axis {in_axis} with size {size}")
            items.append(("at", i))
            in_axis += 1
        elif isinstance(i, (list, np.ndarray, Array)):
            if isinstance(i, Array):
                raise NotImplementedError("indexing with a lazy integer array is not in rask.array; compute it first")
            arr = np.asarray(i)
            if arr.dtype == bool:
                if arr.ndim != 1:
                    raise IndexError("a boolean index on one axis must be 1-dimensional")
                if not _is_nan(size) and arr.shape[0] != size:
                    raise IndexError(f"boolean index did not match indexed array along axis {in_axis}; size of axis "
                                     f"is {size} but size of corresponding boolean axis is {arr.shape[0]}")
                arr = np.flatnonzero(arr)
            if arr.dtype.kind not in "iu" and arr.size:
                raise IndexError(_INDEX_ERROR)
            if arr.ndim != 1:
                raise NotImplementedError("rask.array takes 1-d integer index arrays only")
            if fancy is not None:
                raise NotImplementedError("Don't yet support nd fancy indexing: index one axis with an array at a time")
            fancy = (out_axis, [int(v) for v in arr])
            items.append(("range", None, None, 1))
            in_axis += 1
            out_axis += 1
        else:
            raise IndexError(_INDEX_ERROR)
    out = x
    if items and any(it != ("range", None, None, 1) for it in items):
        out = Array(x._a.slice(items))
    if fancy is not None:
        out = Array(out._a.take(fancy[1], fancy[0]))
    return out


def _mask(x, m):
    if m.ndim != x.ndim or (m.shape != x.shape and not any(_is_nan(s) for s in m.shape + x.shape)):
        raise IndexError(f"boolean index shape {m.shape} does not match the array's {x.shape}")
    if m.chunks != x.chunks:
        m = m.rechunk(x.chunks)
    return Array(x._a.mask(m._a))


# ------------------------------------------------------------------- creation

def _shape(shape):
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    shape = tuple(operator.index(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"negative dimensions are not allowed: {shape}")
    return shape


def from_array(x, chunks="auto", name=None, lock=False, asarray=None, fancy=True, getitem=None, meta=None,
               inline_array=False):
    """An in-memory array cut into blocks (``da.from_array``): one copy of
    the data, out of the array's buffer into the blocks."""
    if isinstance(x, Array):
        return x if chunks == "auto" else x.rechunk(chunks)
    a = np.asarray(x)
    d = _dtype(a.dtype)
    if a.ndim == 0:
        return Array(from_array(a.reshape(1))._a.reshape([]))
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    if a.ndim == 0:  # a 0-d buffer has no shape to read: one element, then back to 0-d
        return from_array(a.reshape(1), chunks=(1,)).reshape(())
    client = _remote_client() if a.nbytes > _UPLOAD_BYTES else None
    if client is not None and isinstance(chunks, str) and chunks == "auto":
        c = normalize_chunks(chunks, a.shape, dtype=d, limit=_UPLOAD_BYTES)
    else:
        c = normalize_chunks(chunks, a.shape, dtype=d)
    source = a.view(np.uint8) if d == bool else a
    out = Array(_rask.Array.from_numpy(source, d.name, _native_chunks(c)))
    if client is not None:
        # A remote scheduler takes graphs in messages of bounded size (64
        # MiB): the blocks go up one submission each, as client.scatter,
        # and the array refers to them (they stay while it does).
        natives = [client._native.compute([node])[0] for node in out.__rask_nodes__()]
        for n in natives:
            n.wait()  # graphs may refer only to keys already computed
        out = Array(out._a.persisted(natives))
    return out


# Arrays larger than this are uploaded block by block to a remote cluster,
# in blocks of at most this size ("auto" chunks).
_UPLOAD_BYTES = 32 << 20


def _remote_client():
    """The default client when it is connected to a remote scheduler."""
    from .. import distributed

    c = distributed._default
    return c if c is not None and not c._closed and c._remote else None


def asarray(a, dtype=None, order=None, like=None, **kwargs):
    if isinstance(a, Array):
        return a if dtype is None else a.astype(dtype)
    a = np.asarray(a, dtype=dtype)
    return from_array(a)


asanyarray = asarray


def full(shape, fill_value, dtype=None, chunks="auto", **kwargs):
    shape = _shape(shape)
    if np.ndim(fill_value) != 0:
        raise ValueError(f"fill_value must be scalar. Received {type(fill_value).__name__} instead.")
    d = _dtype(np.array(fill_value).dtype if dtype is None else dtype)
    value = _scalar_value(fill_value)
    if d.kind in "iub" and isinstance(value, float):
        value = d.type(value).item()
    c = normalize_chunks(chunks, shape, dtype=d)
    return Array(_rask.Array.full(list(shape), value, d.name, _native_chunks(c)))


def ones(shape, dtype=float, chunks="auto", **kwargs):
    return full(shape, 1, dtype=dtype or float, chunks=chunks)


def zeros(shape, dtype=float, chunks="auto", **kwargs):
    return full(shape, 0, dtype=dtype or float, chunks=chunks)


def empty(shape, dtype=float, chunks="auto", **kwargs):
    return full(shape, 0, dtype=dtype or float, chunks=chunks)


def _like(a, dtype, chunks, shape):
    if shape is None:
        shape = a.shape
    if dtype is None:
        dtype = a.dtype
    if chunks is None:
        chunks = a.chunks if isinstance(a, Array) and tuple(shape) == a.shape else "auto"
    return shape, dtype, chunks


def ones_like(a, dtype=None, order="C", chunks=None, name=None, shape=None):
    shape, dtype, chunks = _like(a, dtype, chunks, shape)
    return ones(shape, dtype=dtype, chunks=chunks)


def zeros_like(a, dtype=None, order="C", chunks=None, name=None, shape=None):
    shape, dtype, chunks = _like(a, dtype, chunks, shape)
    return zeros(shape, dtype=dtype, chunks=chunks)


def empty_like(a, dtype=None, order="C", chunks=None, name=None, shape=None):
    shape, dtype, chunks = _like(a, dtype, chunks, shape)
    return empty(shape, dtype=dtype, chunks=chunks)


def full_like(a, fill_value, dtype=None, order="C", chunks=None, name=None, shape=None):
    shape, dtype, chunks = _like(a, dtype, chunks, shape)
    return full(shape, fill_value, dtype=dtype, chunks=chunks)


def arange(start=0, stop=None, step=1, *, chunks="auto", like=None, dtype=None, **kwargs):
    """``da.arange``: numpy's values and dtype (int64 for integers, float64 otherwise)."""
    if stop is None:
        start, stop = 0, start
    values = [_scalar_value(v) for v in (start, stop, step)]
    if values[2] == 0:
        raise ValueError("Maximum allowed size exceeded")
    n = max(int(math.ceil((values[1] - values[0]) / values[2])), 0)
    natural = np.arange(0, 0, 1, dtype=np.result_type(*values)).dtype
    d = _dtype(natural if dtype is None else dtype)
    c = normalize_chunks(chunks, (n,), dtype=d)
    out = Array(_rask.Array.arange(*values, _native_chunks(c)))
    return out if out.dtype == d else out.astype(d)


def linspace(start, stop, num=50, endpoint=True, retstep=False, chunks="auto", dtype=None):
    num = operator.index(num)
    if num < 0:
        raise ValueError(f"Number of samples, {num}, must be non-negative.")
    div = (num - 1) if endpoint else num
    step = (stop - start) / div if div > 0 else np.nan
    end = stop if endpoint else (start + step * (num - 1) if num > 0 else start)
    c = normalize_chunks(chunks, (num,), dtype=np.float64)
    out = Array(_rask.Array.linspace(float(start), float(end), num, _native_chunks(c)))
    if dtype is not None:
        out = out.astype(dtype)
    return (out, step) if retstep else out


def eye(N, chunks="auto", M=None, k=0, dtype=float):
    d = _dtype(dtype)
    c = normalize_chunks(chunks, (N, N if M is None else M), dtype=d)
    if c[0] != c[1] and M is None:
        c = (c[0], c[0])
    return Array(_rask.Array.eye(int(N), None if M is None else int(M), int(k), d.name, _native_chunks(c)))


# ----------------------------------------------------------------- functions

def _as_array(x):
    if isinstance(x, Array):
        return x
    a = _operand(x)
    if isinstance(a, Array):
        return a
    return from_array(np.asarray(x))


def concatenate(seq, axis=0, allow_unknown_chunksizes=False):
    arrays = [_as_array(a) for a in seq]
    if not arrays:
        raise ValueError("Need array(s) to concatenate")
    if axis is None:
        return concatenate([a.ravel() for a in arrays], 0)
    nd = arrays[0].ndim
    if nd == 0:
        raise ValueError("zero-dimensional arrays cannot be concatenated")
    axis = _axis(axis, nd)
    for a in arrays:
        if a.ndim != nd:
            raise ValueError("all the input array dimensions except for the concatenation axis must match exactly, "
                             f"but along dimension 0, the array at index 0 has {nd} dimension(s) and another has "
                             f"{a.ndim} dimension(s)")
        for ax in range(nd):
            if ax != axis and a.shape[ax] != arrays[0].shape[ax]:
                raise ValueError("all the input array dimensions except for the concatenation axis must match "
                                 f"exactly, but along dimension {ax}, the arrays have sizes {arrays[0].shape[ax]} "
                                 f"and {a.shape[ax]}")
    return Array(_rask.Array.concatenate([a._a for a in arrays], axis))


def stack(seq, axis=0, allow_unknown_chunksizes=False):
    arrays = [_as_array(a) for a in seq]
    if not arrays:
        raise ValueError("Need array(s) to stack")
    if any(a.shape != arrays[0].shape for a in arrays):
        raise ValueError("all input arrays must have the same shape")
    axis = _axis(axis, arrays[0].ndim + 1)
    return Array(_rask.Array.stack([a._a for a in arrays], axis))


def where(condition, x=None, y=None):
    if x is None and y is None:
        raise NotImplementedError("where(condition) (nonzero) is not in rask.array yet")
    if x is None or y is None:
        raise ValueError("either both or neither of x and y should be given")
    c = _as_array(condition)
    if c.dtype != bool:
        c = c != 0
    xs, ys = _as_array(x), _as_array(y)
    shape = np.broadcast_shapes(c.shape, xs.shape, ys.shape)
    c, xs, ys = (broadcast_to(v, shape) for v in (c, xs, ys))
    if _is_scalar(x) and _is_scalar(y):
        # NEP 50: two Python scalars give their own result dtype.
        pass
    elif _is_scalar(x):
        xs = xs.astype(np.result_type(ys.dtype, x))
    elif _is_scalar(y):
        ys = ys.astype(np.result_type(xs.dtype, y))
    return Array(c._a.where_(xs._a, ys._a))


def broadcast_to(x, shape, chunks=None):
    """``da.broadcast_to`` (a shape numpy broadcasting allows)."""
    x = _as_array(x)
    shape = tuple(shape)
    if x.shape == shape:
        return x
    np.broadcast_shapes(x.shape, shape)  # numpy's ValueError when they do not broadcast
    if np.broadcast_shapes(x.shape, shape) != shape:
        raise ValueError(f"cannot broadcast shape {x.shape} to {shape}")
    return x + zeros(shape, dtype=x.dtype, chunks=x.chunks if x.ndim == len(shape) and False else "auto")


def dot(a, b):
    a, b = _as_array(a), _as_array(b)
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    if a.ndim == 2 and b.ndim == 2:
        _check_aligned(a, b, 1, 0)
        return Array(a._a.dot(b._a))
    if b.ndim == 1:
        _check_aligned(a, b, -1, 0)
        return tensordot(a, b, axes=((a.ndim - 1,), (0,)))
    _check_aligned(a, b, -1, -2)
    return tensordot(a, b, axes=((a.ndim - 1,), (b.ndim - 2,)))


def _check_aligned(a, b, ia, ib):
    if a.shape[ia] != b.shape[ib]:
        raise ValueError(f"shapes {a.shape} and {b.shape} not aligned: {a.shape[ia]} (dim {ia % a.ndim}) != "
                         f"{b.shape[ib]} (dim {ib % b.ndim})")


def matmul(a, b):
    a, b = _as_array(a), _as_array(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul: Input operand does not have enough dimensions")
    ka = a.shape[-1]
    kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if ka != kb:
        raise ValueError(f"matmul: Input operand 1 has a mismatch in its core dimension 0, with gufunc signature "
                         f"(n?,k),(k,m?)->(n?,m?) (size {kb} is different from {ka})")
    return Array(a._a.matmul(b._a))


def tensordot(a, b, axes=2):
    a, b = _as_array(a), _as_array(b)
    if isinstance(axes, numbers.Integral):
        n = int(axes)
        a_axes = list(range(a.ndim - n, a.ndim))
        b_axes = list(range(n))
    else:
        a_axes, b_axes = axes
        a_axes = [a_axes] if isinstance(a_axes, numbers.Integral) else list(a_axes)
        b_axes = [b_axes] if isinstance(b_axes, numbers.Integral) else list(b_axes)
    a_axes = [_axis(x, a.ndim) for x in a_axes]
    b_axes = [_axis(x, b.ndim) for x in b_axes]
    if len(a_axes) != len(b_axes) or any(a.shape[i] != b.shape[j] for i, j in zip(a_axes, b_axes)):
        raise ValueError("shape-mismatch for sum")
    return Array(a._a.tensordot(b._a, a_axes, b_axes))


def transpose(a, axes=None):
    a = _as_array(a)
    if axes is None:
        perm = list(range(a.ndim))[::-1]
    else:
        perm = [_axis(x, a.ndim) for x in axes]
        if sorted(perm) != list(range(a.ndim)):
            raise ValueError("axes don't match array")
    return Array(a._a.transpose(perm))


def swapaxes(a, axis1, axis2):
    a = _as_array(a)
    perm = list(range(a.ndim))
    i, j = _axis(axis1, a.ndim), _axis(axis2, a.ndim)
    perm[i], perm[j] = perm[j], perm[i]
    return transpose(a, perm)


def moveaxis(a, source, destination):
    a = _as_array(a)
    s, d = _axis(source, a.ndim), _axis(destination, a.ndim)
    perm = [x for x in range(a.ndim) if x != s]
    perm.insert(d, s)
    return transpose(a, perm)


def reshape(x, shape, merge_chunks=True, limit=None):
    x = _as_array(x)
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    shape = tuple(operator.index(s) for s in shape)
    if any(_is_nan(s) for s in x.shape):
        raise ValueError("Array chunk size or shape is unknown. Possible solution with x.compute_chunk_sizes()")
    known = math.prod(s for s in shape if s != -1)
    if shape.count(-1) > 1:
        raise ValueError("can only specify one unknown dimension")
    if (-1 not in shape and known != x.size) or (-1 in shape and (known == 0 or x.size % known)):
        raise ValueError(f"cannot reshape array of size {x.size} into shape {shape}")
    return Array(x._a.reshape(list(shape)))


def ravel(x):
    return reshape(_as_array(x), (-1,))


def squeeze(a, axis=None):
    a = _as_array(a)
    if axis is None:
        return Array(a._a.squeeze(None))
    axes = _axes(axis, a.ndim)
    for ax in axes:
        if a.shape[ax] != 1:
            raise ValueError("cannot select an axis to squeeze out which has size not equal to one")
    return Array(a._a.squeeze(axes))


def expand_dims(a, axis):
    a = _as_array(a)
    axes = [axis] if isinstance(axis, numbers.Integral) else list(axis)
    nd = a.ndim + len(axes)
    axes = sorted(_axis(x, nd) for x in axes)
    for ax in axes:
        a = Array(a._a.expand_dims(ax))
    return a


def clip(a, a_min=None, a_max=None, **kwargs):
    a = _as_array(a)
    if a_min is None and a_max is None:
        raise ValueError("One of max or min must be given")
    if isinstance(a_min, Array) or isinstance(a_max, Array):
        out = a
        if a_min is not None:
            out = out._binary(a_min, "maximum")
        if a_max is not None:
            out = out._binary(a_max, "minimum")
        return out
    low = -np.inf if a_min is None else _scalar_value(a_min)
    high = np.inf if a_max is None else _scalar_value(a_max)
    if a.dtype.kind in "iub" and (a_min is None or a_max is None):
        info = np.iinfo(a.dtype) if a.dtype.kind != "b" else None
        if info is not None:
            low = info.min if a_min is None else low
            high = info.max if a_max is None else high
    return Array(a._a.clip(low, high))


def isnan(a):
    return Array(_as_array(a)._a.unary("isnan"))


def round_(a, decimals=0):
    return _as_array(a).round(decimals)


around = round_


def diff(a, n=1, axis=-1, prepend=None, append=None):
    a = _as_array(a)
    if prepend is not None or append is not None:
        raise NotImplementedError("diff with prepend/append is not in rask.array yet")
    if a.ndim == 0:
        raise ValueError("diff requires input that is at least one dimensional")
    axis = _axis(axis, a.ndim)
    for _ in range(n):
        a = Array(a._a.diff(axis))
    return a


def cumsum(a, axis=None, dtype=None, out=None):
    return _cumulative(_as_array(a), "cumsum", axis, dtype)


def cumprod(a, axis=None, dtype=None, out=None):
    return _cumulative(_as_array(a), "cumprod", axis, dtype)


def take(a, indices, axis=0):
    a = _as_array(a)
    axis = _axis(axis, a.ndim)
    idx = [int(i) for i in np.asarray(indices).ravel()]
    return Array(a._a.take(idx, axis))


def unique(ar, return_index=False, return_inverse=False, return_counts=False):
    if return_index or return_inverse or return_counts:
        raise NotImplementedError("unique with return_index/inverse/counts is not in rask.array yet")
    return Array(_as_array(ar)._a.unique())


def bincount(x, weights=None, minlength=0):
    x = _as_array(x)
    if weights is not None:
        raise NotImplementedError("bincount with weights is not in rask.array yet")
    if x.dtype.kind not in "iu":
        raise TypeError(f"Cannot cast array data from dtype('{x.dtype}') to dtype('int64') according to the rule "
                        "'safe'")
    if x.ndim != 1:
        raise ValueError("object too deep for desired array")
    return Array(x._a.bincount(int(minlength)))


def histogram(a, bins=None, range=None, normed=False, weights=None, density=None):
    """``da.histogram`` with a number of bins and a range: (counts, edges);
    the counts are lazy, the edges a numpy array."""
    a = _as_array(a)
    if weights is not None or density:
        raise NotImplementedError("histogram with weights or density is not in rask.array yet")
    if bins is None or not isinstance(bins, numbers.Integral):
        raise ValueError("dask.array.histogram requires either specifying bins as an iterable or specifying both a "
                         "range and the number of bins")
    if range is None:
        raise ValueError("dask.array.histogram requires either specifying bins as an iterable or specifying both a "
                         "range and the number of bins")
    low, high = (float(v) for v in range)
    if low > high:
        raise ValueError("max must be larger than min in range parameter.")
    if low == high:
        low, high = low - 0.5, high + 0.5
    counts, edges = a._a.histogram(int(bins), low, high)
    return Array(counts), np.asarray(edges)


def _reduction(op):
    def f(a, axis=None, dtype=None, keepdims=False, split_every=None, out=None, ddof=0, **kwargs):
        a = _as_array(a)
        if op in ("std", "var", "nanstd", "nanvar"):
            return a._reduce(op, axis, keepdims, dtype, ddof, split_every)
        if op in ("max", "min", "any", "all", "nanmax", "nanmin", "count_nonzero"):
            return a._reduce(op, axis, keepdims, None, 0, split_every)
        return a._reduce(op, axis, keepdims, dtype, 0, split_every)
    f.__name__ = op
    return f


sum_ = _reduction("sum")
prod_ = _reduction("prod")
mean_ = _reduction("mean")
max_ = _reduction("max")
min_ = _reduction("min")
std_ = _reduction("std")
var_ = _reduction("var")
any_ = _reduction("any")
all_ = _reduction("all")
nansum_ = _reduction("nansum")
nanmean_ = _reduction("nanmean")
nanmax_ = _reduction("nanmax")
nanmin_ = _reduction("nanmin")
nanstd_ = _reduction("nanstd")
nanvar_ = _reduction("nanvar")


def count_nonzero(a, axis=None, keepdims=False):
    return _as_array(a)._reduce("count_nonzero", axis, keepdims)


def argmin(a, axis=None, keepdims=False, split_every=None, out=None):
    return _arg(_as_array(a), "argmin", axis, keepdims)


def argmax(a, axis=None, keepdims=False, split_every=None, out=None):
    return _arg(_as_array(a), "argmax", axis, keepdims)


# ------------------------------------------------------- Python functions

def _funcname(func):
    from ..delayed import _funcname as f
    return f(func)


def _token(*parts):
    from ..delayed import _tokenize
    return _tokenize(*parts)


def _calls(func, prefix, block_args, block_kwargs, dtype, chunks):
    """An Array whose block ``i`` is ``func(*block_args[i], **block_kwargs)``,
    run as a ``python.call`` task; arrays' blocks in the arguments are
    given as native nodes."""
    from ..delayed import _function_arg, _function_bytes
    fbytes = _function_bytes(func)
    template = None
    lists = []
    if block_kwargs:
        n = len(block_args[0]) if block_args else 0
        template = _protocol.pickle_bytes(
            (tuple(_protocol.Dep(i) for i in range(n)), dict(block_kwargs)))
    for args in block_args:
        lists.append(list(args))
    token = _token(fbytes, prefix, [[getattr(a, "key", a) if isinstance(a, _rask.Node) else repr(a) for a in args]
                                    for args in block_args], template or b"")
    native_chunks = [[None if _is_nan(s) else int(s) for s in c] for c in chunks]
    return Array(_rask.Array.from_calls(prefix, token, _function_arg(func, fbytes, None), template, lists,
                                        _dtype(dtype).name, native_chunks))


def _infer_dtype(func, arrays, kwargs, fallback):
    try:
        metas = [np.ones((1,) * a.ndim, dtype=a.dtype) if isinstance(a, Array) else a for a in arrays]
        out = func(*metas, **kwargs)
        d = np.asarray(out).dtype
        if d.name in SUPPORTED_DTYPES:
            return d
    except Exception:
        pass
    return fallback


def _elemwise_py(func, *args):
    """An elementwise numpy function rask has no kernel for, over blocks."""
    arrays = [a if isinstance(a, Array) else _operand(a) for a in args]
    arrs = [a for a in arrays if isinstance(a, Array)]
    shape = np.broadcast_shapes(*(a.shape for a in arrs))
    arrays = [broadcast_to(a, shape) if isinstance(a, Array) else a for a in arrays]
    first = next(a for a in arrays if isinstance(a, Array))
    arrays = [a.rechunk(first.chunks) if isinstance(a, Array) else a for a in arrays]
    try:
        metas = [np.ones((1,) * a.ndim, dtype=a.dtype) if isinstance(a, Array) else a for a in arrays]
        dtype = np.asarray(func(*metas)).dtype
    except TypeError:
        raise
    if dtype.name not in SUPPORTED_DTYPES:
        raise TypeError(f"{getattr(func, '__name__', func)} gives {dtype}, which rask arrays do not have")
    return map_blocks(func, *arrays, dtype=dtype, name=getattr(func, "__name__", None))


def _has_param(func, name):
    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def map_blocks(func, *args, name=None, token=None, dtype=None, chunks=None, drop_axis=None, new_axis=None,
               enforce_ndim=False, meta=None, **kwargs):
    """``da.map_blocks``: ``func`` on each block (numpy in, numpy out), as a
    Python task. Arrays must line up block for block (same number of
    dimensions; chunks are aligned to the first array's)."""
    if not callable(func):
        raise TypeError(f"First argument must be callable function, not {type(func).__name__}\n"
                        "Usage:   da.map_blocks(function, x)\n   or:   da.map_blocks(function, x, y, z)")
    arrays = [a for a in args if isinstance(a, Array)]
    if not arrays:
        raise ValueError("map_blocks needs at least one rask array argument")
    first = max(arrays, key=lambda a: a.ndim)
    nd = first.ndim
    aligned = []
    for a in args:
        if isinstance(a, Array) and a is not first:
            if a.ndim != nd:
                raise ValueError(f"map_blocks: arrays of {a.ndim} and {nd} dimensions do not line up block for block")
            if a.chunks != first.chunks:
                if a.shape != first.shape:
                    raise ValueError(f"map_blocks: shapes {a.shape} and {first.shape} do not line up")
                a = a.rechunk(first.chunks)
        aligned.append(a)
    drop = [] if drop_axis is None else [_axis(d, nd) for d in
                                         ([drop_axis] if isinstance(drop_axis, numbers.Integral) else drop_axis)]
    if drop:
        # A dropped axis must be one block, as Dask's concatenate=True gives.
        fixes = {ax: -1 for ax in drop if len(first.chunks[ax]) > 1}
        if fixes:
            aligned = [a.rechunk({**{ax: a.chunks[ax] for ax in range(nd)}, **fixes}) if isinstance(a, Array) else a
                       for a in aligned]
            first = next(a for a in aligned if isinstance(a, Array) and a.ndim == nd)
    in_chunks = list(first.chunks)
    out_chunks = [c for ax, c in enumerate(in_chunks) if ax not in drop]
    new = [] if new_axis is None else ([new_axis] if isinstance(new_axis, numbers.Integral) else list(new_axis))
    out_nd = len(out_chunks) + len(new)
    new = sorted(_axis(n, out_nd) for n in new)
    for ax in new:
        out_chunks.insert(ax, (1,))
    if chunks is not None:
        if isinstance(chunks, tuple) and chunks and all(isinstance(c, tuple) for c in chunks):
            given = list(chunks)
        else:
            block = tuple(chunks) if isinstance(chunks, (tuple, list)) else (chunks,)
            given = [tuple(block[ax] for _ in range(len(out_chunks[ax]))) if ax < len(block) else out_chunks[ax]
                     for ax in range(len(block))]
        if len(given) != out_nd:
            raise ValueError(f"map_blocks: chunks {chunks} give {len(given)} dimensions, the output has {out_nd}")
        for ax, c in enumerate(given):
            if len(c) != len(out_chunks[ax]):
                raise ValueError(f"map_blocks: chunks on axis {ax} give {len(c)} blocks; the input has "
                                 f"{len(out_chunks[ax])}")
        out_chunks = [tuple(c) for c in given]
    if dtype is None:
        fallback = meta.dtype if meta is not None else first.dtype
        dtype = _infer_dtype(func, aligned, kwargs, fallback)
    in_nodes = [a._a.nodes() if isinstance(a, Array) else None for a in aligned]
    numblocks = first.numblocks
    block_args = []
    out_numblocks = [len(c) for c in out_chunks]
    kept = [ax for ax in range(nd) if ax not in drop]
    with_id = _has_param(func, "block_id")
    for out_idx in np.ndindex(*out_numblocks):
        rest = [i for ax, i in enumerate(out_idx) if ax not in new]
        in_idx = [0] * nd
        for ax, i in zip(kept, rest):
            in_idx[ax] = i
        flat = int(np.ravel_multi_index(in_idx, numblocks)) if nd else 0
        block_args.append([n[flat] if n is not None else a for n, a in zip(in_nodes, aligned)])
    kw = dict(kwargs)
    if with_id:
        # block_id differs per block: it goes in the arguments.
        wrapped = _WithBlockId(func)
        block_args = [b + [tuple(i)] for b, i in zip(block_args, np.ndindex(*out_numblocks))]
        func = wrapped
    prefix = name or _funcname(func)
    return _calls(func, prefix, block_args, kw, dtype, out_chunks)


class _WithBlockId:
    """Calls ``func(*blocks, block_id=...)`` with the block index as the last
    positional argument of the task."""

    def __init__(self, func):
        self.func = func
        self.__name__ = getattr(func, "__name__", "map_blocks")

    def __call__(self, *args, **kwargs):
        return self.func(*args[:-1], block_id=tuple(args[-1]), **kwargs)


class _Overlap:
    """Runs ``func`` on an extended block and trims the halo off."""

    def __init__(self, func, trim):
        self.func = func
        self.trim = trim
        self.__name__ = getattr(func, "__name__", "map_overlap")

    def __call__(self, block, trims, **kwargs):
        out = self.func(block, **kwargs)
        if not self.trim:
            return out
        out = np.asarray(out)
        return out[tuple(slice(b, out.shape[ax] - a) for ax, (b, a) in enumerate(trims))]


def _per_axis(value, ndim, default, what):
    if isinstance(value, dict):
        return [value.get(ax, value.get(ax - ndim, default)) for ax in range(ndim)]
    if isinstance(value, (tuple, list)):
        if len(value) != ndim:
            raise ValueError(f"{what} {value} must give one value per axis ({ndim})")
        return list(value)
    return [value] * ndim


def _pad(x, axis, d, boundary):
    """``x`` with ``d`` elements added on both sides of ``axis``."""
    n = x.shape[axis]

    def sl(start, stop, step=1):
        idx = [slice(None)] * x.ndim
        idx[axis] = slice(start, stop, step)
        return x[tuple(idx)]

    if boundary == "reflect":
        if d > n:
            raise ValueError(f"depth {d} on axis {axis} is larger than the axis ({n})")
        left, right = sl(d - 1, None, -1) if d else sl(0, 0), sl(n - 1, n - d - 1 if n - d - 1 >= 0 else None, -1)
    elif boundary == "nearest":
        left = concatenate([sl(0, 1)] * d, axis) if d else sl(0, 0)
        right = concatenate([sl(n - 1, n)] * d, axis) if d else sl(0, 0)
    elif boundary == "periodic":
        if d > n:
            raise ValueError(f"depth {d} on axis {axis} is larger than the axis ({n})")
        left, right = sl(n - d, n), sl(0, d)
    elif isinstance(boundary, numbers.Number) and not isinstance(boundary, bool):
        shape = list(x.shape)
        shape[axis] = d
        fill = full(tuple(shape), boundary, dtype=x.dtype, chunks=tuple(
            (d,) if ax == axis else x.chunks[ax] for ax in range(x.ndim)))
        left = right = fill
    else:
        raise ValueError(f"boundary {boundary!r} is not one of 'reflect', 'nearest', 'periodic', 'none' or a number")
    return concatenate([left, x, right], axis)


def map_overlap(func, *args, depth=None, boundary=None, trim=True, align_arrays=True, allow_rechunk=True,
                dtype=None, **kwargs):
    """``da.map_overlap`` for one array: each block is extended by ``depth``
    elements from its neighbours (and past the array's edges by
    ``boundary``: ``"none"`` by default, as in Dask), ``func`` runs on the
    extended block, and the halo is trimmed off (``trim=True``)."""
    if isinstance(func, Array):  # the old argument order (x, func, ...)
        func, args = args[0], (func,) + args[1:]
    arrays = [a for a in args if isinstance(a, Array)]
    if len(arrays) != 1 or len(args) != 1:
        raise NotImplementedError("rask.array.map_overlap takes one array")
    x = arrays[0]
    nd = x.ndim
    depths = [int(d) for d in _per_axis(0 if depth is None else depth, nd, 0, "depth")]
    bounds = _per_axis("none" if boundary is None else boundary, nd, "none", "boundary")
    if any(d < 0 for d in depths):
        raise ValueError(f"depth {depth} must be non-negative")
    for ax, d in enumerate(depths):
        c = x.chunks[ax]
        if d and len(c) > 1 and min(c) < d:
            raise ValueError(f"The overlapping depth {d} is larger than your smallest chunk size {min(c)}. "
                             "Rechunk your array with a larger chunk size or a chunk size that more evenly "
                             "divides the shape of your array.")
    padded = x
    pads = []
    for ax, (d, b) in enumerate(zip(depths, bounds)):
        if d and b != "none":
            padded = _pad(padded, ax, d, b)
            pads.append(d)
        else:
            pads.append(0)
    if dtype is None:
        dtype = _infer_dtype(func, [x], kwargs, x.dtype)
    block_args = []
    for idx in np.ndindex(*x.numblocks):
        sl, trims = [], []
        for ax, i in enumerate(idx):
            c = x.chunks[ax]
            lo = pads[ax] + sum(c[:i])
            hi = lo + c[i]
            total = padded.shape[ax]
            s, e = max(lo - depths[ax], 0), min(hi + depths[ax], total)
            sl.append(slice(s, e))
            trims.append((lo - s, e - hi))
        ext = padded[tuple(sl)]
        ext = ext.rechunk(tuple((n,) for n in ext.shape))
        block_args.append([ext._a.nodes()[0], trims])
    wrapped = _Overlap(func, trim)
    return _calls(wrapped, _funcname(func) if hasattr(func, "__name__") else "map_overlap", block_args, kwargs,
                  dtype, x.chunks if trim else [[None] * len(c) for c in x.chunks])


# ------------------------------------------------------------- storage

def _is_remote(url):
    return isinstance(url, str) and "://" in url and not url.startswith("file://")


def _local(url):
    url = os.fspath(url)
    return url[len("file://"):] if url.startswith("file://") else url


def from_zarr(url, component=None, storage_options=None, chunks=None, name=None, inline_array=False, **kwargs):
    """A lazy array over a Zarr store (format 2 or 3), local or ``s3://``."""
    if not isinstance(url, (str, os.PathLike)):
        raise TypeError(f"from_zarr takes a path or URL, got {type(url).__name__}")
    path = os.fspath(url)
    if component:
        path = path.rstrip("/") + "/" + component
    if not _is_remote(path):
        path = _local(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"No such Zarr store: {path!r}")
    out = Array(_rask.Array.from_zarr(path, storage_options))
    return out if chunks is None else out.rechunk(chunks)


def to_zarr(arr, url, component=None, storage_options=None, overwrite=False, region=None, compute=True,
            return_stored=False, zarr_format=None, **kwargs):
    """Writes a Zarr store (format 3 unless ``zarr_format=2``), local or
    ``s3://``; each block is written by the task that computes it."""
    if not isinstance(arr, Array):
        raise TypeError("to_zarr needs a rask array")
    if region is not None or not compute or return_stored:
        raise NotImplementedError("to_zarr with region, compute=False or return_stored is not in rask.array yet")
    path = os.fspath(url)
    if component:
        path = path.rstrip("/") + "/" + component
    if not _is_remote(path):
        path = _local(path)
        if os.path.exists(path) and os.listdir(path) and not overwrite:
            raise ValueError(f"path {path!r} contains an array; pass overwrite=True to replace it")
    arr._a.to_zarr(path, int(zarr_format or 3), storage_options)
    return None


def store(sources, targets, lock=True, regions=None, compute=True, return_stored=False, **kwargs):
    """``da.store``: writes each source into its target (anything with
    ``__setitem__``: numpy, zarr, h5py), one block at a time as blocks
    finish; the client holds one block at a time."""
    if isinstance(sources, Array):
        sources, targets = [sources], [targets]
    if len(sources) != len(targets):
        raise ValueError(f"Different number of sources [{len(sources)}] and targets [{len(targets)}]")
    if not compute:
        raise NotImplementedError("store(compute=False) is not in rask.array yet")
    if regions is not None and not isinstance(regions, (list, tuple)):
        regions = [regions]
    from ..delayed import _client
    client = _client()
    for k, (src, tgt) in enumerate(zip(sources, targets)):
        src = _as_array(src)
        if any(_is_nan(s) for s in src.shape):
            raise ValueError("store needs known chunk sizes; call compute_chunk_sizes() first")
        nodes = src._a.nodes()
        futures = client._native.compute(nodes)
        offsets = [np.cumsum((0,) + c) for c in src.chunks]
        region = regions[k] if regions else None
        for f, idx in zip(futures, np.ndindex(*src.numblocks)):
            block = f.result()
            sl = tuple(slice(int(offsets[ax][i]), int(offsets[ax][i + 1])) for ax, i in enumerate(idx))
            if region is not None:
                sl = tuple(slice(r.start + s.start, r.start + s.stop) for r, s in zip(region, sl)) + tuple(
                    region[len(sl):])
            tgt[sl] = block
            del block
    return None


def to_npy_stack(dirname, x, axis=0):
    """Dask's npy stack: one ``.npy`` file per block along ``axis`` and an
    ``info`` file (pickled chunks, dtype and axis)."""
    import pickle
    x = _as_array(x)
    axis = _axis(axis, x.ndim)
    whole = tuple(x.chunks[ax] if ax == axis else (x.shape[ax],) for ax in range(x.ndim))
    x = x.rechunk(whole)
    os.makedirs(dirname, exist_ok=True)
    with open(os.path.join(dirname, "info"), "wb") as f:
        pickle.dump({"chunks": x.chunks, "dtype": x.dtype, "axis": axis}, f)
    start = 0
    for i, n in enumerate(x.chunks[axis]):
        idx = [slice(None)] * x.ndim
        idx[axis] = slice(start, start + n)
        start += n
        x[tuple(idx)]._a.to_npy(os.path.join(dirname, f"{i}.npy"))


def from_npy_stack(dirname, mmap_mode="r"):
    """Reads Dask's npy stack (see ``to_npy_stack``) lazily, one block per file."""
    import pickle
    info_path = os.path.join(dirname, "info")
    if not os.path.exists(info_path):
        raise FileNotFoundError(f"No such npy stack: {dirname!r} (no info file)")
    with open(info_path, "rb") as f:
        info = pickle.load(f)
    chunks, axis = info["chunks"], info["axis"]
    parts = []
    for i in range(len(chunks[axis])):
        path = os.path.join(dirname, f"{i}.npy")
        if not os.path.exists(path):
            raise FileNotFoundError(f"No such file: {path!r}")
        shape = tuple(c[i] if ax == axis else builtins_sum(c) for ax, c in enumerate(chunks))
        parts.append(Array(_rask.Array.from_npy(path, [[n] for n in shape])))
    out = parts[0] if len(parts) == 1 else concatenate(parts, axis)
    return out.rechunk(chunks) if out.chunks != tuple(tuple(c) for c in chunks) else out


def builtins_sum(values):
    total = 0
    for v in values:
        total += v
    return total


_FUNCTIONS = {}


def _register_functions():
    table = {
        np.sum: sum_, np.prod: prod_, np.mean: mean_, np.max: max_, np.min: min_, np.amax: max_, np.amin: min_,
        np.std: std_, np.var: var_, np.any: any_, np.all: all_, np.nansum: nansum_, np.nanmean: nanmean_,
        np.nanmax: nanmax_, np.nanmin: nanmin_, np.nanstd: nanstd_, np.nanvar: nanvar_, np.argmin: argmin,
        np.argmax: argmax, np.count_nonzero: count_nonzero, np.cumsum: cumsum, np.cumprod: cumprod,
        np.diff: diff, np.concatenate: concatenate, np.stack: stack, np.where: where, np.dot: dot,
        np.matmul: matmul, np.tensordot: tensordot, np.transpose: transpose, np.reshape: reshape,
        np.ravel: ravel, np.squeeze: squeeze, np.expand_dims: expand_dims, np.clip: clip, np.round: round_,
        np.around: round_, np.unique: unique, np.bincount: bincount, np.histogram: histogram, np.take: take,
        np.moveaxis: moveaxis, np.swapaxes: swapaxes, np.ones_like: ones_like, np.zeros_like: zeros_like,
        np.full_like: full_like, np.empty_like: empty_like, np.broadcast_to: broadcast_to,
        np.shape: lambda a: a.shape, np.ndim: lambda a: a.ndim, np.size: lambda a: a.size,
    }
    _FUNCTIONS.update(table)


_register_functions()
_ = uuid
