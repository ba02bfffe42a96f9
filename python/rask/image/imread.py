"""``rask.image.imread``: many image files as one lazy array (``dask_image.imread``)."""

from __future__ import annotations

import os

from .. import _rask
from ..array.core import Array

__all__ = ["imread"]


def imread(fname, nframes=1, *, arraytype="numpy"):
    """Reads the files a glob names (local or ``s3://``), sorted, as one
    array stacked along a new first axis: PNG, JPEG and TIFF (multi-page
    TIFFs add their pages). ``nframes``: frames per block (``-1``: a whole
    file per block), as dask-image's. Nothing is read until compute, except
    the first file's header (shape and dtype)."""
    if arraytype != "numpy":
        raise NotImplementedError(f"arraytype={arraytype!r}: rask reads into numpy blocks only")
    if not isinstance(nframes, int) or isinstance(nframes, bool) or nframes == 0 or nframes < -1:
        raise ValueError(f"`nframes` must be a positive integer or -1, got {nframes!r}")
    pattern = os.fspath(fname)
    return Array(_rask.image_imread(pattern, None if nframes == -1 else nframes))
