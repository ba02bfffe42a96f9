"""Readers: ``read_csv`` and ``read_parquet`` (local paths, globs, ``s3://``)."""

from __future__ import annotations

import os
import re

from .. import _rask
from .core import DataFrame, _storage

__all__ = ["read_csv", "read_parquet"]

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def _parse_bytes(s):
    if s is None or isinstance(s, int):
        return s
    m = re.fullmatch(r"\s*([\d.]+)\s*([a-zA-Z]*)\s*", str(s))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"cannot read a byte count from {s!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _path(p):
    if isinstance(p, (list, tuple)):
        if len(p) != 1:
            raise NotImplementedError("rask reads one path or glob per call")
        p = p[0]
    return os.fspath(p)


def read_csv(urlpath, blocksize="default", dtype=None, usecols=None, parse_dates=None, compression="infer",
             storage_options=None, header="infer", sep=",", na_values=None, **kwargs):
    """Reads CSV files (a path, a glob or an ``s3://`` URL) as ``dask.dataframe.read_csv``.

    ``blocksize`` splits uncompressed files into partitions (None: one per
    file); compressed files (``.gz``, ``.bz2``, ``.xz``, ``.zst``) are one
    partition each. Missing files raise ``FileNotFoundError``; a malformed
    row raises ``ValueError`` naming the file and line when computed.
    """
    delimiter = kwargs.pop("delimiter", None)
    if delimiter is not None:
        sep = delimiter
    if kwargs:
        raise TypeError(f"read_csv: rask does not support the arguments {sorted(kwargs)}")
    if dtype is None:
        dtype = {}
    if not isinstance(dtype, dict):
        raise TypeError("read_csv: rask takes dtype= as a dict of column -> dtype")
    from .core import _dtype_name

    dtypes = [(str(c), _dtype_name(t)) for c, t in dtype.items()]
    if parse_dates is True or parse_dates is False:
        parse_dates = None
    if header not in ("infer", 0, None):
        raise NotImplementedError("read_csv: header must be 0 (the first line) or None")
    blocksize = 64_000_000 if blocksize == "default" else _parse_bytes(blocksize)
    if na_values is not None and isinstance(na_values, str):
        na_values = [na_values]
    native = _rask.Frame.read_csv(
        _path(urlpath),
        None if blocksize is None else blocksize,
        dtypes,
        None if usecols is None else [str(c) for c in usecols],
        [str(c) for c in parse_dates or []],
        None if compression in ("infer", None) else str(compression),
        _storage(storage_options),
        header is not None,
        sep,
        [str(v) for v in na_values or []],
    )
    return DataFrame(native)


def read_parquet(path, columns=None, storage_options=None, **kwargs):
    """Reads Parquet files (a path, directory, glob or ``s3://`` URL), one
    partition per row group, optionally only some columns."""
    if kwargs.pop("index", None) not in (None, False):
        raise NotImplementedError("read_parquet: rask does not restore an index from Parquet")
    kwargs.pop("engine", None)
    if kwargs:
        raise TypeError(f"read_parquet: rask does not support the arguments {sorted(kwargs)}")
    path = _path(path)
    if "://" not in path and os.path.isdir(path):
        path = os.path.join(path, "*.parquet")
    if isinstance(columns, str):
        columns = [columns]
    native = _rask.Frame.read_parquet(path, None if columns is None else list(columns), _storage(storage_options))
    return DataFrame(native)
