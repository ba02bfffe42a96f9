"""``rask.ml.linear_model``: as ``dask_ml.linear_model``."""

from __future__ import annotations

import numpy as np

from .. import _rask
from ..dataframe.core import DataFrame, Series, _ensure_client

__all__ = ["LinearRegression"]


def _check(X, y=None):
    if not isinstance(X, DataFrame):
        raise TypeError(f"X must be a rask.dataframe.DataFrame, not {type(X).__name__}")
    if y is not None and not isinstance(y, Series):
        raise TypeError(f"y must be a rask.dataframe.Series, not {type(y).__name__}")


class LinearRegression:
    """Ordinary least squares, as ``sklearn.linear_model.LinearRegression``,
    fitted in one pass over the partitions (exact moments merged up a
    tree, then the normal equations on centered moments).

    ``fit(X, y)`` takes a rask DataFrame of numeric features and a rask
    Series partitioned alike; ``coef_`` and ``intercept_`` are then set.
    """

    def __init__(self, fit_intercept=True):
        self.fit_intercept = fit_intercept
        self._native = _rask.LinearRegression(bool(fit_intercept))

    def fit(self, X, y):
        _check(X, y)
        _ensure_client()
        coef, intercept = self._native.fit(X._native, y._native)
        self.coef_ = np.asarray(coef, dtype=np.float64)
        self.intercept_ = float(intercept)
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        self.n_features_in_ = len(coef)
        return self

    def _fitted(self):
        if not hasattr(self, "coef_"):
            raise ValueError("This LinearRegression instance is not fitted yet. Call 'fit' first.")

    def predict(self, X):
        """Predictions as a lazy rask Series over ``X``'s partitions."""
        _check(X)
        self._fitted()
        return Series(self._native.predict(X._native), None)

    def score(self, X, y):
        """R² of the predictions for ``X`` against ``y`` (computed)."""
        _check(X, y)
        self._fitted()
        _ensure_client()
        return float(self._native.score(X._native, y._native))

    def get_params(self, deep=True):
        return {"fit_intercept": self.fit_intercept}

    def __repr__(self):
        return "LinearRegression()" if self.fit_intercept else "LinearRegression(fit_intercept=False)"
