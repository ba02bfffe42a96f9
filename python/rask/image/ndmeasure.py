"""``rask.image.ndmeasure``: labelling and per-label statistics
(``dask_image.ndmeasure``).

``label`` is lazy, as dask-image's: the labels are found per chunk and
joined across chunk faces on the cluster, with scipy's numbering. The
statistics (``sum``, ``mean``, ``maximum``, ``minimum``, ``area``) run on
the cluster when called and return small arrays of one value per index
(rask computes them at once; dask-image returns them lazily)."""

from __future__ import annotations

import numpy as np

from .. import _rask
from ..array.core import Array, from_array, ones_like
from ._common import image_of

__all__ = ["area", "label", "maximum", "mean", "minimum", "sum"]


def _connectivity(structure, ndim):
    if structure is None:
        return 1
    s = np.asarray(structure).astype(bool)
    if s.shape != (3,) * ndim:
        raise RuntimeError("structure and input must have equal rank" if s.ndim != ndim else
                           "structure dimensions must be equal to 3")
    from scipy.ndimage import generate_binary_structure

    for k in range(1, ndim + 1):
        if np.array_equal(s, generate_binary_structure(ndim, k)):
            return k
    raise NotImplementedError("rask labels with the structures of generate_binary_structure(ndim, k) only")


def label(image, structure=None, wrap_axes=None):
    """Labels the connected non-zero regions: ``(labels, num_features)``,
    both lazy; labels are int64 (dask-image gives int32), numbered as scipy's."""
    if wrap_axes:
        raise NotImplementedError("wrap_axes")
    x = image_of(image)
    labels, count = _rask.image_label(x._a, _connectivity(structure, x.ndim))
    return Array(labels), Array(count)


def _stats(image, label_image, index):
    x = image_of(image)
    if label_image is None:
        labels = ones_like(x, dtype="int64")  # scipy: no labels, one region of everything
        count = 1
    else:
        labels = image_of(label_image)
        count = int(np.asarray(labels.max().compute()))
    if labels.shape != x.shape:
        raise ValueError("The image and label_image arrays must be the same shape.")
    native = _rask.image_label_stats(x._a, labels.astype("int64")._a, max(count, 0))
    return [np.asarray(v) for v in native], count


def _pick(values, count, index, empty):
    """Values for ``index`` (None: all labels > 0 together, as scipy)."""
    if index is None:
        return None
    idx = np.asarray(index)
    flat = idx.ravel().astype(np.int64)
    out = np.array([values[i - 1] if 1 <= i <= count else empty for i in flat])
    return out.reshape(idx.shape)


def _reduce(kind, image, label_image, index):
    (sums, means, maxima, minima, areas), count = _stats(image, label_image, index)
    values = {"sum": sums, "mean": means, "maximum": maxima, "minimum": minima, "area": areas}[kind]
    if index is None:
        if kind == "sum":
            result = np.float64(sums.sum())
        elif kind == "area":
            result = np.int64(areas.sum())
        elif kind == "mean":
            result = np.float64(sums.sum() / areas.sum()) if areas.sum() else np.float64(np.nan)
        elif kind == "maximum":
            result = np.float64(maxima.max()) if len(maxima) else np.float64(np.nan)
        else:
            result = np.float64(minima.min()) if len(minima) else np.float64(np.nan)
        return from_array(np.asarray(result))
    empty = np.nan if kind == "mean" else 0  # as scipy: a missing label sums, peaks and counts to 0
    return from_array(_pick(values, count, index, empty))


def sum(image, label_image=None, index=None):  # noqa: A001 - dask-image's name
    return _reduce("sum", image, label_image, index)


def mean(image, label_image=None, index=None):
    return _reduce("mean", image, label_image, index)


def maximum(image, label_image=None, index=None):
    return _reduce("maximum", image, label_image, index)


def minimum(image, label_image=None, index=None):
    return _reduce("minimum", image, label_image, index)


def area(image, label_image=None, index=None):
    return _reduce("area", image, label_image, index)
