"""``rask.array``: chunked arrays with ``dask.array``'s API.

Change ``import dask.array as da`` to ``import rask.array as da``. The
graph is rask's Rust ``Array`` (every built-in operation runs on any rask
worker at the Rust kernels' speed); ``map_blocks`` and ``map_overlap`` with
Python functions run on Python-capable workers. ``compute()`` returns numpy.
"""

from . import random
from .core import *  # noqa: F401,F403
from .core import (
    AxisError, all_, any_, max_, mean_, min_, nanmax_, nanmean_, nanmin_, nanstd_, nansum_, nanvar_, prod_, round_,
    std_, sum_, var_,
)
from .core import __all__ as _core_all

sum = sum_
prod = prod_
mean = mean_
max = max_
min = min_
amax = max_
amin = min_
std = std_
var = var_
any = any_
all = all_
nansum = nansum_
nanmean = nanmean_
nanmax = nanmax_
nanmin = nanmin_
nanstd = nanstd_
nanvar = nanvar_
round = round_
newaxis = None

__all__ = list(_core_all) + [
    "random", "AxisError", "sum", "prod", "mean", "max", "min", "amax", "amin", "std", "var", "any", "all", "nansum",
    "nanmean", "nanmax", "nanmin", "nanstd", "nanvar", "round", "newaxis",
]
