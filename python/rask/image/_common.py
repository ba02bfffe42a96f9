"""Argument handling shared by ``ndfilters`` and ``ndmeasure``: scipy's
spellings of per-axis values, modes, origins and footprints."""

from __future__ import annotations

import numbers

import numpy as np

from ..array.core import Array, _as_array

_MODES = {"reflect", "constant", "nearest", "mirror", "wrap", "grid-mirror", "grid-constant", "grid-wrap"}


def image_of(image) -> Array:
    if isinstance(image, Array):
        return image
    if isinstance(image, np.ndarray):
        return _as_array(image)
    raise TypeError(f"expected a rask array or a numpy array, got {type(image).__name__}")


def per_axis(value, ndim, name, cast=float):
    """One value per axis from a scalar or a sequence (scipy's rule)."""
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return [cast(value)] * ndim
    values = [cast(v) for v in value]
    if len(values) != ndim:
        raise RuntimeError(f"sequence argument must have length equal to input rank: {name}={value!r}, rank {ndim}")
    return values


def modes(mode, ndim):
    names = [mode] if isinstance(mode, str) else list(mode)
    for m in names:
        if m not in _MODES:
            raise RuntimeError(f"boundary mode not supported: {m!r}")
    if len(names) != 1 and len(names) != ndim:
        raise RuntimeError(f"sequence argument must have length equal to input rank: mode={mode!r}, rank {ndim}")
    return names


def dtype_name(output):
    if output is None:
        return None
    if isinstance(output, np.ndarray):
        raise TypeError("output arrays are not supported by rask (lazy results): pass a dtype")
    return np.dtype(output).name


def footprint_args(size, footprint, ndim):
    """``(size, mask)`` for the native rank filters: a box, or a boolean
    footprint as (flat mask, shape)."""
    if footprint is not None:
        f = np.asarray(footprint).astype(bool)
        if f.ndim != ndim:
            raise RuntimeError("footprint array has incorrect shape.")
        if not f.any():
            raise ValueError("All-zero footprint is not supported.")
        return None, (f.ravel().tolist(), list(f.shape))
    if size is None:
        raise RuntimeError("no footprint provided")
    return [int(s) for s in per_axis(size, ndim, "size", int)], None


def origins(origin, ndim):
    return [int(o) for o in per_axis(origin, ndim, "origin", int)]
