"""``rask.dataframe``: lazy, partitioned pandas frames, as ``dask.dataframe``.

Change ``import dask.dataframe as dd`` to ``import rask.dataframe as dd``.
The graph and the built-in operations (readers, filters, group-bys, joins,
sorts, writers) are rask's Rust crate ``rask_dataframe`` on Arrow; they run
on any rask worker. ``map_partitions`` runs Python functions on
Python-capable workers. ``compute()`` gives pandas objects.
"""

from .core import DataFrame, GroupBy, Scalar, Series, from_pandas, map_partitions
from .io import read_csv, read_parquet

__all__ = ["DataFrame", "GroupBy", "Scalar", "Series", "from_pandas", "map_partitions", "read_csv", "read_parquet"]
