"""``rask.image.ndfilters``: scipy.ndimage's filters over chunked arrays
(``dask_image.ndfilters``). Every filter takes scipy's arguments and gives
scipy's answer for any chunking; the result keeps the input's dtype unless
``output`` names another."""

from __future__ import annotations

import numpy as np

from .. import _rask
from ..array.core import Array
from ._common import dtype_name, footprint_args, image_of, modes, origins, per_axis

__all__ = [
    "convolve", "correlate", "gaussian", "gaussian_filter", "gaussian_gradient_magnitude", "gaussian_laplace",
    "laplace", "maximum_filter", "median_filter", "minimum_filter", "percentile_filter", "prewitt", "rank_filter",
    "sobel", "uniform_filter",
]


def _no_origin(origin):
    if np.any(np.asarray(origin) != 0):
        raise NotImplementedError("origin other than 0 is supported only by the rank filters, correlate and convolve")


def gaussian_filter(image, sigma, order=0, mode="reflect", cval=0.0, truncate=4.0, *, output=None):
    x = image_of(image)
    sigma = per_axis(sigma, x.ndim, "sigma")
    order = [int(o) for o in per_axis(order, x.ndim, "order", int)]
    return Array(_rask.image_gaussian("gaussian_filter", x._a, sigma, order, float(truncate), modes(mode, x.ndim),
                                      float(cval), dtype_name(output)))


gaussian = gaussian_filter


def gaussian_gradient_magnitude(image, sigma, mode="reflect", cval=0.0, truncate=4.0, *, output=None, **kwargs):
    x = image_of(image)
    if truncate != 4.0:
        raise NotImplementedError("gaussian_gradient_magnitude: truncate other than 4.0")
    sigma = per_axis(sigma, x.ndim, "sigma")
    return Array(_rask.image_gaussian("gaussian_gradient_magnitude", x._a, sigma, [0], 4.0, modes(mode, x.ndim),
                                      float(cval), dtype_name(output)))


def gaussian_laplace(image, sigma, mode="reflect", cval=0.0, truncate=4.0, *, output=None, **kwargs):
    x = image_of(image)
    if truncate != 4.0:
        raise NotImplementedError("gaussian_laplace: truncate other than 4.0")
    sigma = per_axis(sigma, x.ndim, "sigma")
    return Array(_rask.image_gaussian("gaussian_laplace", x._a, sigma, [0], 4.0, modes(mode, x.ndim), float(cval),
                                      dtype_name(output)))


def _box(kind, image, size, mode, cval, origin, output):
    x = image_of(image)
    _no_origin(origin)
    sizes = [int(s) for s in per_axis(size, x.ndim, "size", int)]
    return Array(_rask.image_box(kind, x._a, sizes, modes(mode, x.ndim), float(cval), dtype_name(output)))


def uniform_filter(image, size=3, mode="reflect", cval=0.0, origin=0, *, output=None):
    return _box("uniform_filter", image, size, mode, cval, origin, output)


def _rank(kind, image, value, size, footprint, mode, cval, origin, output):
    x = image_of(image)
    size_arg, mask = footprint_args(size, footprint, x.ndim)
    return Array(_rask.image_rank(kind, x._a, float(value), size_arg, mask, origins(origin, x.ndim),
                                  modes(mode, x.ndim), float(cval), dtype_name(output)))


def minimum_filter(image, size=None, footprint=None, mode="reflect", cval=0.0, origin=0, *, output=None):
    if footprint is None and np.all(np.asarray(origin) == 0):
        return _box("minimum_filter", image, size if size is not None else _need_size(), mode, cval, origin, output)
    return _rank("rank_filter", image, 0, size, footprint, mode, cval, origin, output)


def maximum_filter(image, size=None, footprint=None, mode="reflect", cval=0.0, origin=0, *, output=None):
    if footprint is None and np.all(np.asarray(origin) == 0):
        return _box("maximum_filter", image, size if size is not None else _need_size(), mode, cval, origin, output)
    return _rank("rank_filter", image, -1, size, footprint, mode, cval, origin, output)


def median_filter(image, size=None, footprint=None, mode="reflect", cval=0.0, origin=0, *, output=None):
    if footprint is None and np.all(np.asarray(origin) == 0):
        return _box("median_filter", image, size if size is not None else _need_size(), mode, cval, origin, output)
    return _rank("median_filter", image, 0, size, footprint, mode, cval, origin, output)


def rank_filter(image, rank, size=None, footprint=None, mode="reflect", cval=0.0, origin=0, *, output=None):
    if isinstance(rank, bool) or int(rank) != rank:
        raise TypeError(f"rank must be an integer, got {rank!r}")
    return _rank("rank_filter", image, int(rank), size, footprint, mode, cval, origin, output)


def percentile_filter(image, percentile, size=None, footprint=None, mode="reflect", cval=0.0, origin=0, *,
                      output=None):
    return _rank("percentile_filter", image, float(percentile), size, footprint, mode, cval, origin, output)


def _need_size():
    raise RuntimeError("no footprint provided")


def _edge(kind, image, axis, mode, cval, output):
    x = image_of(image)
    return Array(_rask.image_edge(kind, x._a, int(axis), modes(mode, x.ndim), float(cval), dtype_name(output)))


def sobel(image, axis=-1, mode="reflect", cval=0.0, *, output=None):
    return _edge("sobel", image, axis, mode, cval, output)


def prewitt(image, axis=-1, mode="reflect", cval=0.0, *, output=None):
    return _edge("prewitt", image, axis, mode, cval, output)


def laplace(image, mode="reflect", cval=0.0, *, output=None):
    return _edge("laplace", image, 0, mode, cval, output)


def _kernel(kind, image, weights, mode, cval, origin, output):
    x = image_of(image)
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != x.ndim:
        raise RuntimeError("filter weights array has incorrect shape.")
    return Array(_rask.image_kernel(kind, x._a, w.ravel().tolist(), list(w.shape), origins(origin, x.ndim),
                                    modes(mode, x.ndim), float(cval), dtype_name(output)))


def correlate(image, weights, mode="reflect", cval=0.0, origin=0, *, output=None):
    return _kernel("correlate", image, weights, mode, cval, origin, output)


def convolve(image, weights, mode="reflect", cval=0.0, origin=0, *, output=None):
    return _kernel("convolve", image, weights, mode, cval, origin, output)
