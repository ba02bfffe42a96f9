"""rask: Dask's lazy graphs and distributed client, on an engine written in Rust.

Change ``dask`` to ``rask`` in the imports::

    from rask import delayed, compute
    from rask.distributed import Client

The graph, the scheduler and the workers are rask's Rust crates; Python
functions run as tasks that carry them cloudpickled.
"""

from . import _rask  # noqa: F401  (the native module: loads the engine)
from . import diagnostics  # noqa: F401
from .base import is_rask_collection
from .delayed import Delayed, compute, delayed, persist, visualize

__version__ = "0.1.0"

__all__ = ["Delayed", "compute", "delayed", "diagnostics", "is_rask_collection", "persist", "visualize", "__version__"]
