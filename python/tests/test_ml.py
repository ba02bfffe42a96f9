"""rask.ml against scikit-learn on the same data."""

import numpy as np
import pandas as pd
import pytest

import rask.dataframe as rd
from rask.ml.linear_model import LinearRegression
from rask.ml.model_selection import train_test_split

sklearn_lm = pytest.importorskip("sklearn.linear_model")


def make(n=1000, seed=1):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({
        "a": rng.normal(1000, 5, n),  # a large mean: centered moments avoid cancellation
        "b": rng.normal(0, 1, n),
        "c": rng.integers(0, 10, n).astype("int64"),
    })
    y = 3.0 * X.a - 2.0 * X.b + 0.5 * X.c + 7.0 + rng.normal(0, 0.1, n)
    return X, y.rename("y")


@pytest.mark.parametrize("npartitions", [1, 4, 9])
def test_linear_regression_matches_sklearn(npartitions):
    X, y = make()
    df = rd.from_pandas(X.assign(y=y), npartitions=npartitions)
    rX, ry = df[["a", "b", "c"]], df.y
    model = LinearRegression().fit(rX, ry)
    ref = sklearn_lm.LinearRegression().fit(X, y)
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=1e-8)
    assert model.intercept_ == pytest.approx(ref.intercept_, rel=1e-8)
    assert model.score(rX, ry) == pytest.approx(ref.score(X, y), rel=1e-10)
    pred = model.predict(rX).compute()
    np.testing.assert_allclose(pred.to_numpy(), ref.predict(X), rtol=1e-9)
    assert model.coef_.dtype == np.float64 and model.coef_.shape == (3,)


def test_no_intercept_and_errors():
    X, y = make(200)
    df = rd.from_pandas(X.assign(y=y), npartitions=3)
    m = LinearRegression(fit_intercept=False).fit(df[["a", "b"]], df.y)
    ref = sklearn_lm.LinearRegression(fit_intercept=False).fit(X[["a", "b"]], y)
    np.testing.assert_allclose(m.coef_, ref.coef_, rtol=1e-8)
    assert m.intercept_ == 0.0
    with pytest.raises(ValueError):
        LinearRegression().predict(df[["a"]])
    with pytest.raises(TypeError):
        LinearRegression().fit(X, y)
    with pytest.raises(ValueError):  # collinear features
        LinearRegression().fit(df.assign(d=df.a * 2.0)[["a", "d"]], df.y)


@pytest.mark.parametrize("npartitions", [1, 5])
def test_train_test_split(npartitions):
    X, y = make(2000)
    pdf = X.assign(y=y, row=np.arange(len(X)))
    df = rd.from_pandas(pdf, npartitions=npartitions)
    X_train, X_test, y_train, y_test = train_test_split(df[["a", "b", "row"]], df.y, test_size=0.2, random_state=3)
    a, b = X_train.compute(), X_test.compute()
    ya, yb = y_train.compute(), y_test.compute()
    assert len(a) + len(b) == len(pdf)
    assert len(a) == len(ya) and len(b) == len(yb)
    assert not set(a.row) & set(b.row)
    assert abs(len(b) / len(pdf) - 0.2) < 0.05
    # The same rows go to the same side in X and y.
    np.testing.assert_array_equal(pdf.y.to_numpy()[b.row.to_numpy()], yb.to_numpy())
    # Deterministic for a seed, different for another.
    again = train_test_split(df[["a", "b", "row"]], df.y, test_size=0.2, random_state=3)[1].compute()
    pd.testing.assert_frame_equal(again, b)
    other = train_test_split(df[["a", "b", "row"]], df.y, test_size=0.2, random_state=4)[1].compute()
    assert set(other.row) != set(b.row)
    with pytest.raises(ValueError):
        train_test_split(df, test_size=1.5)
    # A model fitted on the split scores close to scikit-learn's on the same rows.
    m = LinearRegression().fit(X_train[["a", "b"]], y_train)
    ref = sklearn_lm.LinearRegression().fit(a[["a", "b"]], ya)
    np.testing.assert_allclose(m.coef_, ref.coef_, rtol=1e-8)
    assert m.score(X_test[["a", "b"]], y_test) == pytest.approx(ref.score(b[["a", "b"]], yb), rel=1e-9)
