"""``rask.delayed``: lazy calls of Python functions, as ``dask.delayed``.

A ``Delayed`` holds a node of rask's graph (``rask._rask.Node``); calling a
delayed function adds a task of the op ``python.call`` that carries the
cloudpickled function and its arguments. Lazy inputs, including those inside
lists, tuples, dicts and sets, become the task's dependencies.
"""

from __future__ import annotations

import hashlib
import operator
import uuid
import weakref

from . import _protocol, _rask
from .base import is_rask_collection
from .diagnostics import _active_bar

__all__ = ["Delayed", "delayed", "compute", "persist", "visualize"]

_COLLECTIONS = (list, tuple, dict, set)


def _funcname(func) -> str:
    while hasattr(func, "func") and callable(getattr(func, "func")):  # functools.partial
        func = func.func
    name = getattr(func, "__name__", None) or type(func).__name__
    return "lambda" if name == "<lambda>" else name


def _tokenize(*parts) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(p if isinstance(p, bytes) else _protocol.pickle_bytes(p))
    return h.hexdigest()[:32]


_function_pickles: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _function_bytes(func) -> bytes:
    """The function's pickle, made once per function object."""
    try:
        return _function_pickles[func]
    except (KeyError, TypeError):
        pass
    data = _protocol.pickle_bytes(func)
    try:
        _function_pickles[func] = data
    except TypeError:  # not weakly referenceable (a bound method, a builtin)
        pass
    return data


def _node_of(obj):
    """The graph node of a lazy value or a client future, else None."""
    if isinstance(obj, Delayed):
        return obj._node
    node = getattr(obj, "_rask_node", None)
    return node() if node is not None else None


def _has_lazy(obj) -> bool:
    if _node_of(obj) is not None:
        return True
    if type(obj) in _COLLECTIONS:
        items = obj.values() if type(obj) is dict else obj
        return any(_has_lazy(x) for x in items)
    return False


def _keys_of(obj):
    """``obj`` with its lazy values replaced by their keys, for tokens."""
    node = _node_of(obj)
    if node is not None:
        return ("__rask_key__", node.key)
    t = type(obj)
    if t in (list, tuple):
        return t(_keys_of(x) for x in obj)
    if t is dict:
        return {k: _keys_of(v) for k, v in obj.items()}
    if t is set:
        return sorted((_keys_of(x) for x in obj), key=repr)
    return obj


def _template(obj, deps):
    """Replaces lazy values in nested arguments with placeholders."""
    node = _node_of(obj)
    if node is not None:
        deps.append(node)
        return _protocol.Dep(len(deps) - 1)
    t = type(obj)
    if t is list:
        return [_template(x, deps) for x in obj]
    if t is tuple:
        return tuple(_template(x, deps) for x in obj)
    if t is dict:
        return {k: _template(v, deps) for k, v in obj.items()}
    if t is set:
        return {_template(x, deps) for x in obj}
    return obj


#: Whether calls refer to their function as a task of its own (for a remote
#: cluster: the pickle then crosses once per worker, not once per task, and
#: a large graph stays within the gRPC message limit). Set by
#: rask.distributed when the default client is remote.
remote_default = False
_function_nodes: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _function_arg(func, fbytes, remote):
    if not (remote_default if remote is None else remote):
        return fbytes
    try:
        return _function_nodes[func]
    except (KeyError, TypeError):
        pass
    node = _rask.function_node(f"function-{_funcname(func)}-{_tokenize(fbytes)}", fbytes)
    try:
        _function_nodes[func] = node
    except TypeError:
        pass
    return node


# Nodes of pure calls by key: the same pure call twice is one task.
_pure_nodes: "weakref.WeakValueDictionary" = weakref.WeakValueDictionary()


def _call(func, args, kwargs, *, name=None, pure=False, key=None, nout=None, remote=None):
    fbytes = _function_bytes(func)
    simple = not kwargs and not any(type(a) in _COLLECTIONS and _has_lazy(a) for a in args)
    if key is None:
        prefix = name or _funcname(func)
        if pure:
            key = f"{prefix}-{_tokenize(fbytes, _keys_of(args), _keys_of(sorted(kwargs.items())))}"
        else:
            key = f"{prefix}-{uuid.uuid4().hex}"
        if pure:
            existing = _pure_nodes.get(key)
            if existing is not None:
                return Delayed(existing._node, length=nout)
    if simple:
        values = [(_node_of(a) if _node_of(a) is not None else a) for a in args]
        node = _rask.call_node(key, _function_arg(func, fbytes, remote), None, values)
    else:
        deps: list = []
        template = _template((tuple(args), dict(kwargs)), deps)
        node = _rask.call_node(key, _function_arg(func, fbytes, remote), _protocol.pickle_bytes(template), deps)
    out = Delayed(node, length=nout)
    if pure:
        _pure_nodes[key] = out
    return out


def _apply(func, args, kwargs):
    return func(*args, **kwargs)


def _collect(obj):
    """Builds a collection from computed parts (``delayed([a, b])``)."""
    return obj


class Delayed:
    """A lazy value: ``compute()`` runs the graph behind it."""

    __slots__ = ("_node", "_length", "__weakref__")

    def __init__(self, node, length=None):
        self._node = node
        self._length = length

    @property
    def key(self) -> str:
        return self._node.key

    def __dask_keys__(self):
        return [self.key]

    def compute(self, **kwargs):
        """Computes the value on the default client (or the embedded local cluster)."""
        return compute(self, **kwargs)[0]

    def persist(self, **kwargs):
        """Computes the value and keeps it on the cluster; returns a lazy value that refers to it."""
        return persist(self, **kwargs)[0]

    def visualize(self, filename="mydask", format=None, **kwargs):
        """Draws the task graph with Graphviz (``.png`` unless the name says otherwise)."""
        return visualize(self, filename=filename, format=format, **kwargs)

    def __repr__(self):
        return f"Delayed('{self.key}')"

    def __hash__(self):
        return hash(self.key)

    def __bool__(self):
        raise TypeError("Truth of Delayed objects is not supported")

    def __len__(self):
        if self._length is None:
            raise TypeError("Delayed objects of unspecified length have no len()")
        return self._length

    def __iter__(self):
        if self._length is None:
            raise TypeError("Delayed objects of unspecified length are not iterable")
        return iter([self[i] for i in range(self._length)])

    def __getattr__(self, attr):
        if attr.startswith("_"):
            raise AttributeError(f"Attribute {attr} not found")
        return _call(getattr, (self, attr), {}, name="getattr", pure=True)

    def __setattr__(self, attr, value):
        if attr in Delayed.__slots__:
            object.__setattr__(self, attr, value)
        else:
            raise TypeError("Delayed objects are immutable")

    def __getitem__(self, index):
        return _call(operator.getitem, (self, index), {}, name="getitem", pure=True)

    def __call__(self, *args, dask_key_name=None, **kwargs):
        return _call(_apply, (self, list(args), kwargs), {}, name="apply", key=dask_key_name)

    def __dir__(self):
        return dir(type(self))


def _binary(op, name, reflected=False):
    if reflected:
        def method(self, other):
            return _call(op, (other, self), {}, name=name, pure=True)
    else:
        def method(self, other):
            return _call(op, (self, other), {}, name=name, pure=True)
    return method


def _unary(op, name):
    def method(self):
        return _call(op, (self,), {}, name=name, pure=True)
    return method


for _name, _op in [
    ("add", operator.add), ("sub", operator.sub), ("mul", operator.mul), ("truediv", operator.truediv),
    ("floordiv", operator.floordiv), ("mod", operator.mod), ("pow", operator.pow), ("matmul", operator.matmul),
    ("and", operator.and_), ("or", operator.or_), ("xor", operator.xor), ("lshift", operator.lshift),
    ("rshift", operator.rshift),
]:
    setattr(Delayed, f"__{_name}__", _binary(_op, _name))
    setattr(Delayed, f"__r{_name}__", _binary(_op, _name, reflected=True))
for _name, _op in [("lt", operator.lt), ("le", operator.le), ("gt", operator.gt), ("ge", operator.ge),
                   ("eq", operator.eq), ("ne", operator.ne)]:
    setattr(Delayed, f"__{_name}__", _binary(_op, _name))
for _name, _op in [("neg", operator.neg), ("pos", operator.pos), ("abs", operator.abs), ("invert", operator.invert)]:
    setattr(Delayed, f"__{_name}__", _unary(_op, _name))


class DelayedFunction:
    """``delayed(f)``: calling it builds a lazy call of ``f``."""

    __slots__ = ("_func", "_name", "_pure", "_nout", "__weakref__")

    def __init__(self, func, name=None, pure=None, nout=None):
        self._func = func
        self._name = name
        self._pure = pure
        self._nout = nout

    def __call__(self, *args, dask_key_name=None, pure=None, **kwargs):
        pure = self._pure if pure is None else pure
        return _call(self._func, args, kwargs, name=self._name, pure=bool(pure), key=dask_key_name, nout=self._nout)

    @property
    def __name__(self):
        return _funcname(self._func)

    @property
    def __wrapped__(self):
        return self._func

    @property
    def key(self):
        return f"{_funcname(self._func)}-{_tokenize(_function_bytes(self._func))}"

    def __repr__(self):
        return f"Delayed('{self.key}')"


def delayed(obj=None, name=None, pure=None, nout=None, traverse=True, dask_key_name=None):
    """Wraps a function (``delayed(f)(x)`` is a lazy call) or a value, as ``dask.delayed``.

    Also a decorator: ``@delayed`` or ``@delayed(pure=True)``.
    """
    if obj is None:
        return lambda f: delayed(f, name=name, pure=pure, nout=nout, traverse=traverse, dask_key_name=dask_key_name)
    if isinstance(obj, (Delayed, DelayedFunction)):
        return obj
    if callable(obj):
        return DelayedFunction(obj, name=name, pure=pure, nout=nout)
    if traverse and _has_lazy(obj):
        return _call(_collect, (obj,), {}, name=name or type(obj).__name__, pure=False, key=dask_key_name, nout=nout)
    key = dask_key_name or f"{name or type(obj).__name__}-{_tokenize(obj) if pure is not False else uuid.uuid4().hex}"
    return Delayed(_rask.literal_node(key, obj), length=nout)


class _Slot:
    """Where a computed value goes back in ``_rebuild``: ``count`` futures from
    ``start`` on, finished by ``finish`` (a collection), or one plain value."""

    __slots__ = ("start", "count", "finish")

    def __init__(self, start, count=1, finish=None):
        self.start, self.count, self.finish = start, count, finish


def _flatten(args, nodes):
    """Finds the lazy values in ``args`` (inside lists, tuples, dicts): each
    ``Delayed`` adds its node, each collection (``rask.base``) its nodes."""
    def walk(obj):
        if isinstance(obj, Delayed):
            nodes.append(obj._node)
            return _Slot(len(nodes) - 1)
        if is_rask_collection(obj):
            own = obj.__rask_nodes__()
            nodes.extend(own)
            return _Slot(len(nodes) - len(own), len(own), obj)
        t = type(obj)
        if t is list:
            return [walk(x) for x in obj]
        if t is tuple:
            return tuple(walk(x) for x in obj)
        if t is dict:
            return {k: walk(v) for k, v in obj.items()}
        return obj
    return [walk(a) for a in args]


def _rebuild(obj, take):
    """Puts values back where ``_flatten`` found lazy ones: ``take(slot)``
    gives each slot's value."""
    t = type(obj)
    if t is _Slot:
        return take(obj)
    if t is list:
        return [_rebuild(x, take) for x in obj]
    if t is tuple:
        return tuple(_rebuild(x, take) for x in obj)
    if t is dict:
        return {k: _rebuild(v, take) for k, v in obj.items()}
    return obj


def _results(futures):
    """``take`` for ``_rebuild`` from native futures: a plain slot's result,
    or the collection's ``__rask_finalize__`` of its futures."""
    def take(slot):
        own = futures[slot.start:slot.start + slot.count]
        return slot.finish.__rask_finalize__(own) if slot.finish is not None else own[0].result()
    return take


def _persisted(futures):
    """``take`` for ``_rebuild``: lazy values that refer to computed futures
    (the collection's ``__rask_persist__`` for a collection)."""
    def take(slot):
        own = futures[slot.start:slot.start + slot.count]
        return slot.finish.__rask_persist__(own) if slot.finish is not None else Delayed(own[0].node())
    return take


def _client(kwargs=None):
    from .distributed import _default_or_embedded_client

    return _default_or_embedded_client()


def compute(*args, traverse=True, scheduler=None, get=None, optimize_graph=True, **kwargs):
    """Computes several lazy values together, sharing their intermediates.

    Returns a tuple with one result per argument, as ``dask.compute``.
    """
    nodes: list = []
    shapes = _flatten(args, nodes)
    if not nodes:
        return tuple(args)
    client = _client(kwargs)
    futures = client._native.compute(nodes)
    bar = _active_bar()
    if bar is not None:
        bar._watch(_rask.task_count(nodes), client._completed_tasks, futures)
    return tuple(_rebuild(s, _results(futures)) for s in shapes)


def persist(*args, **kwargs):
    """Computes lazy values and keeps the results on the cluster.

    Returns lazy values of the same kind that refer to the stored results.
    """
    nodes: list = []
    shapes = _flatten(args, nodes)
    if not nodes:
        return tuple(args)
    client = _client(kwargs)
    futures = client._native.compute(nodes)
    for f in futures:
        f.wait()
    return tuple(_rebuild(s, _persisted(futures)) for s in shapes)


def visualize(*args, filename="mydask", format=None, **kwargs):
    """Writes a drawing of the task graph behind the lazy values.

    ``filename`` without an extension gets ``.png`` (or ``format``); ``.dot``
    writes the Graphviz source. Returns the file name.
    """
    nodes: list = []
    _flatten(args, nodes)
    if filename is None:
        return _rask.dot_source(nodes)
    filename = str(filename)
    if "." not in filename.rsplit("/", 1)[-1]:
        filename = f"{filename}.{format or 'png'}"
    _rask.write_drawing(nodes, filename)
    from .diagnostics import _in_notebook

    if _in_notebook():
        # In a notebook the drawing shows in the cell, as Dask's does.
        from IPython.display import SVG, Image

        if filename.endswith(".svg"):
            return SVG(filename=filename)
        if filename.endswith(".png"):
            return Image(filename=filename)
    return filename
