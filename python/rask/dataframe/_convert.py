"""Arrow <-> pandas for ``rask.dataframe``.

Partitions leave the engine as Arrow record batches through the Arrow C
stream interface (``__arrow_c_stream__``): pyarrow imports their buffers
without a copy, and ``Table.to_pandas`` makes the one copy pandas' blocks
need. Strings become pandas' pyarrow-backed ``string`` dtype, as Dask's
``dataframe.convert-string`` default gives; an integer column with missing
values becomes float64, as in pandas.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

STRING = pd.StringDtype("pyarrow")


def _mapper(t):
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return STRING
    return None


def _table_pandas(table: pa.Table) -> pd.DataFrame:
    # split_blocks: one pandas block per column, so that columns without
    # missing values are not copied again to consolidate blocks.
    return table.to_pandas(types_mapper=_mapper, split_blocks=True)


def table_to_pandas(stream) -> pd.DataFrame:
    """One partition as pandas (what a Python function over a partition gets)."""
    return _table_pandas(pa.table(stream))


def read_stream(stream):
    """(pyarrow Table, rows per batch) of a native ``ArrowStream``."""
    reader = pa.RecordBatchReader.from_stream(stream)
    batches = list(reader)
    return pa.Table.from_batches(batches, schema=reader.schema), [b.num_rows for b in batches]


def to_pandas(stream, index) -> pd.DataFrame:
    """A computed frame: its partitions' batches concatenated. ``index``
    names the index columns; without any, each partition's rows are
    numbered from 0, as in a Dask frame read from CSV."""
    table, lengths = read_stream(stream)
    pdf = _table_pandas(table)
    if index:
        pdf = pdf.set_index(list(index) if len(index) > 1 else index[0])
    elif len(lengths) > 1:
        pdf.index = pd.Index(np.concatenate([np.arange(n, dtype=np.int64) for n in lengths]))
    return pdf


def empty_pandas(stream, index) -> pd.DataFrame:
    """The empty frame with the right columns and dtypes (Dask's ``_meta``)."""
    return to_pandas(stream, index)


def _arrow_type(t):
    if pa.types.is_large_string(t) or pa.types.is_string_view(t) or pa.types.is_null(t):
        return pa.string()
    if pa.types.is_dictionary(t):
        return _arrow_type(t.value_type)
    if pa.types.is_timestamp(t):
        if t.tz is not None:
            raise TypeError(f"rask dataframes have no timezone-aware datetimes (got {t}); convert to naive UTC first")
        return pa.timestamp("ns")
    if pa.types.is_date(t):
        return pa.timestamp("ns")
    return t


def from_pandas_table(pdf: pd.DataFrame) -> pa.Table:
    """A pandas frame as an Arrow table of the types rask computes on
    (the index is not included)."""
    table = pa.Table.from_pandas(pdf, preserve_index=False)
    schema = pa.schema([pa.field(f.name, _arrow_type(f.type)) for f in table.schema])
    if schema != table.schema.remove_metadata():
        table = table.cast(schema)
    return table.replace_schema_metadata(None)


def meta_schema(meta: pd.DataFrame) -> pa.Schema:
    return from_pandas_table(meta).schema
