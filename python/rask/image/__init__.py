"""``rask.image``: dask-image's API on rask's image kernels.

Change ``from dask_image import imread, ndfilters, ndmeasure`` to
``from rask.image import imread, ndfilters, ndmeasure``. Images are
``rask.array.Array``s; the filters are rask's Rust kernels (exact against
scipy.ndimage for every chunking: halos come from neighbouring chunks) and
run on any rask worker.
"""

from . import imread, ndfilters, ndmeasure

__all__ = ["imread", "ndfilters", "ndmeasure"]
