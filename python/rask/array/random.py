"""``rask.array.random``: random arrays as ``dask.array.random``.

rask's generators are counter-based: each element depends only on the seed
and its position, so the values do not depend on the chunking (they are not
numpy's streams: the same seed gives other numbers than numpy or Dask).
"""

from __future__ import annotations

import numbers
import secrets

import numpy as np

from .. import _rask
from .core import Array, _native_chunks, _shape, normalize_chunks

__all__ = ["random", "random_sample", "randint", "normal", "standard_normal", "uniform", "RandomState",
           "default_rng", "Generator", "seed"]


def _size(size):
    if size is None:
        return ()
    return _shape(size)


class RandomState:
    """``da.random.RandomState(seed)``: successive calls give new arrays;
    the same seed gives the same sequence of arrays."""

    def __init__(self, seed=None):
        self._seed(seed)

    def _seed(self, seed):
        if seed is None:
            seed = secrets.randbits(63)
        if not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"Seed must be a non-negative integer, got {seed!r}")
        self._base = int(seed)
        self._calls = 0

    seed = _seed

    def _next(self):
        self._calls += 1
        # splitmix64 of (seed, call): distinct streams per call.
        z = (self._base * 0x9E3779B97F4A7C15 + self._calls * 0xBF58476D1CE4E5B9) & (2**64 - 1)
        z ^= z >> 31
        z = (z * 0x94D049BB133111EB) & (2**64 - 1)
        return z ^ (z >> 29)

    def _make(self, kind, size, a, b, chunks, dtype):
        shape = _size(size)
        c = normalize_chunks(chunks, shape, dtype=dtype)
        return Array(_rask.Array.random(kind, list(shape), self._next(), float(a), float(b), _native_chunks(c)))

    def random_sample(self, size=None, chunks="auto", **kwargs):
        return self._make("uniform", size, 0.0, 1.0, chunks, np.float64)

    random = random_sample

    def uniform(self, low=0.0, high=1.0, size=None, chunks="auto", **kwargs):
        x = self._make("uniform", size, 0.0, 1.0, chunks, np.float64)
        return x * (high - low) + low if (low, high) != (0.0, 1.0) else x

    def normal(self, loc=0.0, scale=1.0, size=None, chunks="auto", **kwargs):
        if scale < 0:
            raise ValueError("scale < 0")
        return self._make("normal", size, loc, scale, chunks, np.float64)

    def standard_normal(self, size=None, chunks="auto", **kwargs):
        return self.normal(0.0, 1.0, size, chunks)

    def randint(self, low, high=None, size=None, chunks="auto", dtype=int, **kwargs):
        if high is None:
            low, high = 0, low
        if high <= low:
            raise ValueError("low >= high")
        x = self._make("randint", size, low, high, chunks, np.int64)
        return x if np.dtype(dtype) == np.int64 else x.astype(dtype)


class Generator(RandomState):
    """``da.random.default_rng(seed)``: numpy's Generator method names."""

    def random(self, size=None, dtype=np.float64, chunks="auto", **kwargs):
        x = self.random_sample(size, chunks)
        return x if np.dtype(dtype) == np.float64 else x.astype(dtype)

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False, chunks="auto", **kwargs):
        if high is None:
            low, high = 0, low
        return self.randint(low, high + 1 if endpoint else high, size, chunks, dtype)


def default_rng(seed=None):
    if isinstance(seed, Generator):
        return seed
    return Generator(seed)


_global = RandomState()


def seed(s=None):
    _global.seed(s)


def random(size=None, chunks="auto", **kwargs):
    return _global.random_sample(size, chunks)


random_sample = random


def uniform(low=0.0, high=1.0, size=None, chunks="auto", **kwargs):
    return _global.uniform(low, high, size, chunks)


def normal(loc=0.0, scale=1.0, size=None, chunks="auto", **kwargs):
    return _global.normal(loc, scale, size, chunks)


def standard_normal(size=None, chunks="auto", **kwargs):
    return _global.standard_normal(size, chunks)


def randint(low, high=None, size=None, chunks="auto", dtype=int, **kwargs):
    return _global.randint(low, high, size, chunks, dtype)
