"""``rask.ml.model_selection``: as ``dask_ml.model_selection``."""

from __future__ import annotations

from ..dataframe.core import DataFrame, Series, _seed

__all__ = ["train_test_split"]


def _split(x, fractions, seed):
    if isinstance(x, DataFrame):
        return [DataFrame(p) for p in x._native.random_split(fractions, seed)]
    if isinstance(x, Series):
        frame = x._native.to_frame()
        return [Series(p.col(x._native.name), x._name) for p in frame.random_split(fractions, seed)]
    raise TypeError(f"train_test_split takes rask DataFrames and Series, not {type(x).__name__}")


def train_test_split(*arrays, test_size=None, train_size=None, random_state=None, shuffle=True, **kwargs):
    """Splits rask DataFrames and Series (partitioned alike) into random
    train and test parts: ``X_train, X_test, y_train, y_test = ...``.

    As in ``dask_ml`` for dataframes, each row goes to one side at random
    (a Bernoulli draw per row from ``random_state``, its partition and its
    position), so the sizes are ``test_size`` of the rows on average, the
    same rows go to the same side in every array, and a given
    ``random_state`` always gives the same split.
    """
    if kwargs:
        raise TypeError(f"train_test_split got unexpected arguments {sorted(kwargs)}")
    if not arrays:
        raise ValueError("At least one array required as input")
    if not shuffle:
        raise NotImplementedError("rask's train_test_split of dataframes shuffles (shuffle=True), as dask_ml's")
    if test_size is None:
        test_size = 0.25 if train_size is None else 1.0 - train_size
    if train_size is None:
        train_size = 1.0 - test_size
    for name, v in (("test_size", test_size), ("train_size", train_size)):
        if not isinstance(v, float) or not 0.0 < v < 1.0:
            raise ValueError(f"{name}={v!r} should be a float in the (0, 1) range")
    if train_size + test_size > 1.0 + 1e-12:
        raise ValueError(f"The sum of test_size and train_size = {train_size + test_size} should be <= 1")
    seed = _seed(random_state)
    n = [a.npartitions for a in arrays]
    if len(set(n)) != 1:
        raise ValueError(f"the arrays must be partitioned alike; they have {n} partitions")
    out = []
    for a in arrays:
        train, test = _split(a, [train_size, test_size], seed)[:2] if train_size + test_size >= 1.0 - 1e-12 else \
            _split(a, [train_size, test_size, 1.0 - train_size - test_size], seed)[:2]
        out.extend([train, test])
    return out
