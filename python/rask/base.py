"""``rask.base``: what makes an object a rask collection.

A collection (``rask.array.Array``, ``rask.dataframe.DataFrame``, ...)
is a graph built in Rust whose result is made of several blocks. It takes
part in ``rask.compute``, ``rask.persist`` and ``Client.compute`` through
three methods, Dask's ``__dask_graph__``/``__dask_postcompute__`` in a form
that keeps the graph in Rust:

``__rask_nodes__()``
    the native nodes (``rask._rask.Node``) whose values make the result, in
    a fixed order (an array's blocks in C order, a frame's partitions);
``__rask_finalize__(futures)``
    the in-memory result (a numpy array, a pandas object) from the native
    futures of those nodes, in the same order; it waits for them;
``__rask_persist__(futures)``
    the same collection over the computed futures (``persist``).

Computing several collections and ``Delayed`` values together submits all
their nodes at once, so shared inputs run once.
"""

from __future__ import annotations

__all__ = ["is_rask_collection", "RaskCollection"]


def is_rask_collection(obj) -> bool:
    """True for objects that follow the collection protocol above."""
    return hasattr(type(obj), "__rask_nodes__")


class RaskCollection:
    """A base for collections: ``compute``, ``persist`` and ``visualize``
    through the module-level functions (on the default client, or an
    embedded local cluster when there is none)."""

    __slots__ = ()

    def __rask_nodes__(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def __rask_finalize__(self, futures):  # pragma: no cover - abstract
        raise NotImplementedError

    def __rask_persist__(self, futures):  # pragma: no cover - abstract
        raise NotImplementedError

    def compute(self, **kwargs):
        """The in-memory result (``rask.compute(self)[0]``)."""
        from .delayed import compute

        return compute(self, **kwargs)[0]

    def persist(self, **kwargs):
        """The same collection, computed and kept on the cluster."""
        from .delayed import persist

        return persist(self, **kwargs)[0]

    def visualize(self, filename="mydask", format=None, **kwargs):
        """Writes a drawing of the task graph (see ``rask.visualize``)."""
        from .delayed import visualize

        return visualize(self, filename=filename, format=format, **kwargs)
