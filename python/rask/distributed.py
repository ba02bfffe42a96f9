"""``rask.distributed``: clients, futures and clusters, as ``dask.distributed``.

``Client()`` connects to ``RASK_SCHEDULER_ADDRESS`` or
``DASK_SCHEDULER_ADDRESS`` when either is set, and otherwise starts an
embedded ``LocalCluster``: the scheduler and workers run on threads of this
process, and Python functions run there while holding the GIL only for the
Python code. ``Client("tcp://host:8786")`` connects to ``rask scheduler``;
Python functions then run on workers started with ``python -m rask worker``.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import os
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections import namedtuple
from concurrent.futures import CancelledError

from . import _rask
from ._protocol import KilledWorker
from .base import is_rask_collection
from .delayed import Delayed, _call, _flatten, _node_of, _persisted, _rebuild, _Slot

# The module (the package's attribute `delayed` is the function).
_delayed_module = sys.modules[Delayed.__module__]

__all__ = [
    "Client", "LocalCluster", "Future", "wait", "as_completed", "progress", "default_client",
    "get_client", "KilledWorker", "CancelledError",
]

ENV_ADDRESSES = ("RASK_SCHEDULER_ADDRESS", "DASK_SCHEDULER_ADDRESS")

_lock = threading.RLock()
_default: "Client | None" = None
_embedded: "Client | None" = None


def _format_bytes(n: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("kiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


class LocalCluster:
    """An in-process cluster (Dask's ``LocalCluster(processes=False)``).

    ``n_workers`` workers with ``threads_per_worker`` threads each; by default
    one worker with a thread per core.
    """

    def __init__(self, n_workers=None, threads_per_worker=None, memory_limit=None, processes=False,
                 asynchronous=False, **kwargs):
        cores = os.cpu_count() or 1
        if n_workers is None:
            n_workers = 1
        if threads_per_worker is None:
            threads_per_worker = max(1, cores // max(1, n_workers))
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        limit = _parse_memory(memory_limit, n_workers) if memory_limit not in (None, "auto") else 0
        self._native = _rask.LocalCluster(n_workers, threads_per_worker, limit)
        self.scheduler_address = f"inproc://rask-local-{id(self):x}"
        self.asynchronous = asynchronous

    @property
    def dashboard_link(self):
        """None: the embedded cluster serves no dashboard (``rask scheduler`` does)."""
        return None

    def workers_info(self):
        return [
            {"name": name, "nthreads": nthreads, "memory_limit": limit, "keys": keys, "nbytes": nbytes}
            for name, nthreads, limit, keys, nbytes in self._native.workers()
        ]

    def scale(self, n):
        """Adds workers up to ``n`` (the embedded cluster does not shrink)."""
        have = len(self._native.workers())
        for _ in range(max(0, n - have)):
            self._native.add_worker(self.threads_per_worker)

    def close(self):
        self._native.close()

    @property
    def status(self):
        return "closed" if self._native.is_closed() else "running"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        workers = self.workers_info()
        threads = sum(w["nthreads"] for w in workers)
        return f"LocalCluster({self.scheduler_address!r}, workers={len(workers)}, threads={threads})"


class Future:
    """A remotely running computation (Dask's ``Future``).

    ``result()`` waits (releasing the GIL) and returns the value or raises the
    task's exception; in an asynchronous client, ``await future`` does the same.
    """

    __slots__ = ("_native", "client", "__weakref__")

    def __init__(self, native, client):
        self._native = native
        self.client = client

    @property
    def key(self):
        return self._native.key

    def _rask_node(self):
        return self._native.node()

    def done(self):
        return self._native.done()

    @property
    def status(self):
        if not self._native.done():
            return "pending"
        try:
            self._native.result(0)
            return "finished"
        except CancelledError:
            return "cancelled"
        except BaseException:
            return "error"

    def cancelled(self):
        return self.status == "cancelled"

    def result(self, timeout=None):
        if self.client is not None and self.client.asynchronous:
            return self._result_async(timeout)
        return self._result_now(timeout)

    def _result_now(self, timeout=None):
        return self._native.result(timeout)

    async def _result_async(self, timeout=None):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._result_now, timeout)

    def exception(self, timeout=None):
        try:
            self._native.result(timeout)
        except TimeoutError:
            if not self._native.done():
                raise
            return None
        except BaseException as e:
            return e
        return None

    def traceback(self, timeout=None):
        e = self.exception(timeout)
        return e.__traceback__ if e is not None else None

    def cancel(self):
        self._native.cancel()

    def release(self):
        pass  # the key is released when the last reference goes away

    def add_done_callback(self, fn):
        """Calls ``fn(future)`` from another thread once the future is done."""
        def waiter():
            self._native.wait()
            fn(self)
        threading.Thread(target=waiter, daemon=True, name="rask-future-callback").start()

    def __await__(self):
        loop = asyncio.get_event_loop()
        return loop.run_in_executor(None, self._result_now, None).__await__()

    def __repr__(self):
        return f"<Future: {self.status}, key: {self.key}>"

    def _repr_html_(self):
        return f"<strong>Future: {html.escape(self.key)}</strong> status: {self.status}"


class _CollectionFuture(Future):
    """The future of a collection's computation (``client.compute(array)``):
    its result is the collection's in-memory value (a numpy array, a pandas
    frame), made from the futures of its blocks."""

    __slots__ = ("_collection", "_parts")

    def __init__(self, natives, collection, client):
        super().__init__(natives[-1] if natives else None, client)
        self._collection = collection
        self._parts = natives

    def done(self):
        return all(n.done() for n in self._parts)

    def _result_now(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        for n in self._parts:
            n.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self._collection.__rask_finalize__(self._parts)

    def cancel(self):
        for n in self._parts:
            n.cancel()

    def _rask_node(self):
        raise TypeError("a collection's future cannot be an argument of a delayed call; pass the collection")


def _parse_memory(value, nworkers=1) -> int:
    """Bytes from Dask's spellings: 4GiB, 500MB, 1e9, 0.5 (of the machine), auto, 0."""
    if value is None:
        return 0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if 0 < value <= 1:
            return int(_system_memory() * value)
        return int(value)
    s = str(value).strip()
    if s.lower() == "auto":
        return _system_memory() // max(1, nworkers)
    units = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
             "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
             "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
    i = len(s)
    while i > 0 and s[i - 1].isalpha():
        i -= 1
    number, unit = s[:i].strip(), s[i:].strip().lower()
    if unit not in units:
        raise ValueError(f"cannot parse memory limit {value!r}: unknown unit {unit!r}")
    x = float(number) if number else 1.0
    if not unit and 0 < x <= 1:
        return int(_system_memory() * x)
    return int(x * units[unit])


def _system_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


class Client:
    """A connection to a rask cluster, as ``dask.distributed.Client``.

    ``Client()``: ``RASK_SCHEDULER_ADDRESS`` or ``DASK_SCHEDULER_ADDRESS`` if
    set, else an embedded ``LocalCluster``. ``Client("tcp://host:8786")``:
    a running ``rask scheduler``. ``Client(cluster)``: a ``LocalCluster``.
    """

    def __init__(self, address=None, loop=None, timeout=None, set_as_default=True, asynchronous=False,
                 name=None, n_workers=None, threads_per_worker=None, memory_limit=None, processes=False,
                 token=None, **kwargs):
        self.asynchronous = asynchronous
        self.id = name or f"Client-{uuid.uuid4()}"
        self.cluster = None
        self._owned_cluster = False
        self._closed = False
        self._futures = {}
        if address is None:
            address = next((os.environ[v] for v in ENV_ADDRESSES if os.environ.get(v)), None)
        if isinstance(address, LocalCluster):
            self.cluster = address
        elif address is None:
            self.cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                                        memory_limit=memory_limit)
            self._owned_cluster = True
        if self.cluster is not None:
            self.scheduler_address = self.cluster.scheduler_address
            self._native = _rask.Client.local(self.cluster._native)
        else:
            self.scheduler_address = str(address)
            self._native = _rask.Client.connect(self.scheduler_address, token or os.environ.get("RASK_TOKEN"))
        self._remote = self.cluster is None
        if set_as_default:
            global _default
            with _lock:
                _default = self
                _delayed_module.remote_default = self._remote

    # -- lifecycle -----------------------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()

    def __await__(self):
        async def ready():
            return self
        return ready().__await__()

    def close(self, timeout=None):
        """Disconnects; an embedded cluster this client started stops too."""
        global _default
        if self._closed:
            return
        self._closed = True
        self._native.close()
        if self._owned_cluster:
            self.cluster.close()
        with _lock:
            if _default is self:
                _default = None
                _delayed_module.remote_default = False

    @property
    def status(self):
        return "closed" if self._closed else "running"

    def restart(self, **kwargs):
        """Forgets every computation: futures of this client become invalid,
        an embedded cluster this client owns starts afresh."""
        self._native.close()
        self._futures.clear()
        if self._owned_cluster:
            old = self.cluster
            self.cluster = LocalCluster(n_workers=old.n_workers, threads_per_worker=old.threads_per_worker)
            old.close()
            self.scheduler_address = self.cluster.scheduler_address
            self._native = _rask.Client.local(self.cluster._native)
        elif self.cluster is not None:
            self._native = _rask.Client.local(self.cluster._native)
        else:
            self._native = _rask.Client.connect(self.scheduler_address, os.environ.get("RASK_TOKEN"))
        return self

    # -- information ---------------------------------------------------------------

    @property
    def dashboard_link(self):
        """The scheduler's dashboard (``http://host:8787/status``); None for the embedded cluster."""
        if self.cluster is not None:
            return self.cluster.dashboard_link
        template = os.environ.get("RASK_DASHBOARD_LINK")
        parsed = urllib.parse.urlparse(self.scheduler_address if "://" in self.scheduler_address
                                       else f"tcp://{self.scheduler_address}")
        host = parsed.hostname or "localhost"
        if template:
            return template.format(host=host)
        web = "https" if parsed.scheme == "tls" else "http"
        return f"{web}://{host}:{os.environ.get('RASK_HTTP_PORT', '8787')}/status"

    def scheduler_info(self):
        """Workers with their threads and memory, as Dask's ``scheduler_info()['workers']``."""
        if self.cluster is not None:
            workers = {w["name"]: {"name": w["name"], "nthreads": w["nthreads"], "memory_limit": w["memory_limit"]}
                       for w in self.cluster.workers_info()}
            return {"address": self.scheduler_address, "workers": workers}
        url = self.dashboard_link.replace("/status", "/status.json")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                data = json.load(r)
        except Exception:
            return {"address": self.scheduler_address, "workers": {}}
        workers = {}
        for w in data.get("workers", []):
            name = w.get("name") or w.get("address")
            workers[name] = {"name": name, "nthreads": w.get("nthreads", 0),
                             "memory_limit": (w.get("memory_limit") or 0)}
        return {"address": self.scheduler_address, "workers": workers}

    def _completed_tasks(self):
        """Tasks the cluster has finished (progress bars): the embedded
        cluster's count, or the scheduler's ``rask_scheduler_tasks_completed_total``
        metric from its HTTP port; 0 when neither can be read."""
        if self.cluster is not None:
            return self.cluster._native.completed_tasks()
        link = self.dashboard_link
        if not link:
            return 0
        request = urllib.request.Request(link.replace("/status", "/metrics"))
        token = os.environ.get("RASK_TOKEN")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=1) as r:
                text = r.read().decode()
        except Exception:
            return 0
        total = 0.0
        for line in text.splitlines():
            if line.startswith("rask_scheduler_tasks_completed_total"):
                try:
                    total += float(line.rsplit(" ", 1)[1])
                except ValueError:
                    pass
        return int(total)

    def nthreads(self):
        return {n: w["nthreads"] for n, w in self.scheduler_info()["workers"].items()}

    def _summary(self):
        workers = self.scheduler_info()["workers"].values()
        threads = sum(w["nthreads"] for w in workers)
        memory = sum(w["memory_limit"] or 0 for w in workers)
        return len(workers), threads, memory

    def __repr__(self):
        n, threads, memory = self._summary()
        mem = f", memory={_format_bytes(memory)}" if memory else ""
        return f"<Client: {self.scheduler_address!r} processes={n} threads={threads}{mem}>"

    def _repr_html_(self):
        n, threads, memory = self._summary()
        link = self.dashboard_link
        dash = (f'<a href="{html.escape(link)}" target="_blank">{html.escape(link)}</a>' if link
                else "none (embedded cluster)")
        kind = "LocalCluster (embedded)" if self.cluster is not None else "rask scheduler"
        return (
            '<div class="rask-client"><h3 style="margin-bottom: 0">Client</h3>'
            f'<p style="color: #9D9D9D; margin-bottom: 0">{html.escape(self.id)}</p>'
            "<table>"
            f"<tr><td><strong>Connection:</strong> {html.escape(kind)}</td>"
            f"<td><strong>Scheduler:</strong> {html.escape(self.scheduler_address)}</td></tr>"
            f"<tr><td><strong>Dashboard:</strong> {dash}</td><td></td></tr>"
            f"<tr><td><strong>Workers:</strong> {n}</td><td><strong>Total threads:</strong> {threads}</td></tr>"
            f"<tr><td><strong>Total memory:</strong> {_format_bytes(memory) if memory else 'no limit'}</td>"
            "<td></td></tr></table></div>"
        )

    # -- work ----------------------------------------------------------------------

    def _wrap(self, natives):
        return [Future(n, self) for n in natives]

    def submit(self, func, *args, key=None, pure=True, workers=None, resources=None, retries=None,
               priority=0, allow_other_workers=False, **kwargs):
        """Runs ``func(*args, **kwargs)`` on the cluster; returns a Future at once."""
        if self._closed:
            raise RuntimeError("the client is closed")
        if pure and key is None:
            # A pure call submitted twice is one computation, as in Dask.
            d = _call(func, args, kwargs, pure=True, remote=self._remote)
            existing = self._futures.get(d.key)
            if existing is not None:
                return existing
        else:
            d = _call(func, args, kwargs, pure=pure, key=key, remote=self._remote)
        (future,) = self._wrap(self._native.compute([d._node]))
        self._futures[future.key] = future
        return future

    def map(self, func, *iterables, key=None, pure=True, batch_size=None, **kwargs):
        """``submit`` over the items of the iterables, in one submission."""
        if self._closed:
            raise RuntimeError("the client is closed")
        items = list(zip(*iterables))
        keys = key if isinstance(key, (list, tuple)) else [None] * len(items)
        nodes = []
        for args, k in zip(items, keys):
            nodes.append(_call(func, args, kwargs, pure=pure and k is None, key=k, remote=self._remote)._node)
        futures = self._wrap(self._native.compute(nodes))
        for f in futures:
            self._futures[f.key] = f
        return futures

    def _gather_now(self, futures, errors="raise"):
        futs = []

        def walk(obj):
            if isinstance(obj, Future):
                futs.append(obj)
                return _Slot(len(futs) - 1)
            t = type(obj)
            if t is list:
                return [walk(x) for x in obj]
            if t is tuple:
                return tuple(walk(x) for x in obj)
            if t is dict:
                return {k: walk(v) for k, v in obj.items()}
            return obj

        shape = walk(futures)
        results = []
        for f in futs:
            try:
                results.append(f._result_now(None))
            except Exception as e:
                if errors == "skip":
                    results.append(None)
                else:
                    raise
        return _rebuild(shape, lambda slot: results[slot.start])

    def gather(self, futures, errors="raise", direct=None, asynchronous=None):
        """The results of futures (in lists, tuples and dicts as given)."""
        if asynchronous or (asynchronous is None and self.asynchronous):
            async def gather_async():
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(None, self._gather_now, futures, errors)
            return gather_async()
        return self._gather_now(futures, errors)

    def scatter(self, data, workers=None, broadcast=False, hash=True, direct=None):
        """Puts local data on the cluster; returns futures (a list for a list, a dict for a dict)."""
        from .delayed import delayed

        if isinstance(data, dict):
            keys = list(data)
            futures = self._scatter_values([data[k] for k in keys])
            return dict(zip(keys, futures))
        if isinstance(data, (list, tuple, set)):
            return type(data)(self._scatter_values(list(data))) if not isinstance(data, set) else \
                self._scatter_values(list(data))
        return self._scatter_values([data])[0]

    def _scatter_values(self, values):
        nodes = []
        for v in values:
            key = f"{type(v).__name__}-{uuid.uuid4().hex}"
            nodes.append(_rask.literal_node(key, v))
        futures = self._wrap(self._native.compute(nodes))
        for f in futures:
            self._futures[f.key] = f
        return futures

    def compute(self, collections, sync=False, optimize_graph=True, **kwargs):
        """Starts computing lazy values; returns futures (results with ``sync=True``)."""
        single = not isinstance(collections, (list, tuple))
        items = [collections] if single else list(collections)
        nodes = []
        positions = []
        for i, c in enumerate(items):
            if is_rask_collection(c):
                own = c.__rask_nodes__()
                positions.append((i, len(nodes), len(own), c))
                nodes.extend(own)
                continue
            node = _node_of(c)
            if node is not None:
                positions.append((i, len(nodes), 1, None))
                nodes.append(node)
        natives = self._native.compute(nodes) if nodes else []
        out = list(items)
        for i, start, count, collection in positions:
            if collection is None:
                f = Future(natives[start], self)
                self._futures[f.key] = f
            else:
                f = _CollectionFuture(natives[start:start + count], collection, self)
            out[i] = f
        if sync:
            out = self.gather(out)
        return out[0] if single else out

    def persist(self, collections, **kwargs):
        """Starts computing lazy values and keeps the results on the cluster;
        returns lazy values that refer to them (at once)."""
        single = not isinstance(collections, (list, tuple))
        items = [collections] if single else list(collections)
        nodes: list = []
        shapes = _flatten(items, nodes)
        natives = self._native.compute(nodes) if nodes else []
        out = [_rebuild(s, _persisted(natives)) for s in shapes]
        return out[0] if single else out

    def cancel(self, futures, asynchronous=None, force=False):
        """Cancels futures: waiting for them raises ``CancelledError``."""
        fs = [futures] if isinstance(futures, Future) else list(futures)
        self._native.cancel([f._native for f in fs])

    def get_executor(self, **kwargs):
        raise NotImplementedError("rask's Client is not a concurrent.futures executor yet")


def default_client(c=None):
    """The client most recently created (Dask's ``default_client``)."""
    with _lock:
        if c is not None:
            return c
        if _default is None or _default._closed:
            raise ValueError("No clients found\nStart a client and point it to the scheduler address\n"
                             "  from rask.distributed import Client\n  client = Client('ip-addr-of-scheduler:8786')\n")
        return _default


def get_client(address=None, timeout=None, resolve_address=True):
    try:
        return default_client()
    except ValueError:
        return Client(address)


def _default_or_embedded_client():
    """The default client, or an embedded local cluster kept for the process
    (what ``rask.compute`` uses without a client, like Dask's threaded scheduler)."""
    global _embedded
    with _lock:
        if _default is not None and not _default._closed:
            return _default
        if _embedded is None:
            _embedded = Client(set_as_default=False, address=LocalCluster())
            _embedded._owned_cluster = True
        return _embedded


DoneAndNotDoneFutures = namedtuple("DoneAndNotDoneFutures", ["done", "not_done"])


def wait(fs, timeout=None, return_when="ALL_COMPLETED"):
    """Waits until futures are done (``ALL_COMPLETED``, ``FIRST_COMPLETED`` or ``FIRST_EXCEPTION``)."""
    if isinstance(fs, Future):
        fs = [fs]
    fs = list(fs)
    deadline = None if timeout is None else time.monotonic() + timeout
    if return_when == "ALL_COMPLETED":
        for f in fs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not f._native.wait(left):
                raise TimeoutError(f"wait: {sum(not g.done() for g in fs)} futures not done after {timeout} s")
    else:
        while True:
            done = [f for f in fs if f.done()]
            if return_when == "FIRST_COMPLETED" and done:
                break
            if return_when == "FIRST_EXCEPTION" and (len(done) == len(fs) or any(f.status == "error" for f in done)):
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"wait: nothing done after {timeout} s")
            time.sleep(0.001)
    done = {f for f in fs if f.done()}
    return DoneAndNotDoneFutures(done, {f for f in fs if f not in done})


class as_completed:
    """Iterates over futures in the order they finish (``with_results=True``
    yields ``(future, result)``). More futures can be ``add``-ed while iterating."""

    def __init__(self, futures=None, loop=None, with_results=False, raise_errors=True):
        self._pending = list(futures or [])
        self.with_results = with_results
        self.raise_errors = raise_errors

    def add(self, future):
        self._pending.append(future)

    def update(self, futures):
        self._pending.extend(futures)

    def count(self):
        return len(self._pending)

    def is_empty(self):
        return not self._pending

    def __iter__(self):
        return self

    def __next__(self):
        delay = 0.0001
        while self._pending:
            for i, f in enumerate(self._pending):
                if f.done():
                    del self._pending[i]
                    if self.with_results:
                        try:
                            return f, f._native.result(None)
                        except Exception as e:
                            if self.raise_errors:
                                raise
                            return f, e
                    return f
            time.sleep(delay)
            delay = min(delay * 2, 0.01)
        raise StopIteration

    def __aiter__(self):
        return self

    async def __anext__(self):
        while self._pending:
            for i, f in enumerate(self._pending):
                if f.done():
                    del self._pending[i]
                    if self.with_results:
                        return f, f._native.result(None)
                    return f
            await asyncio.sleep(0.001)
        raise StopAsyncIteration

    def next_batch(self, block=True):
        return [next(self)]

    def batches(self):
        while self._pending:
            yield self.next_batch()


def progress(*futures, notebook=None, multi=False, complete=True, **kwargs):
    """A progress bar until the futures (or persisted values) are done.

    In a terminal it blocks, drawing a text bar; in a notebook it returns at
    once and an HTML bar updates in place from a background thread (as
    Dask's widget does)."""
    from .diagnostics import _Bar, _in_notebook

    fs: list = []
    for f in futures:
        if isinstance(f, (list, tuple, set)):
            fs.extend(f)
        else:
            fs.append(f)
    fs = [f for f in fs if isinstance(f, Future)]
    in_notebook = _in_notebook() if notebook is None else bool(notebook)
    bar = _Bar(notebook=in_notebook)

    def run():
        total = len(fs)
        while True:
            done = sum(f.done() for f in fs)
            if done == total:
                break
            bar.show(done, total)
            time.sleep(0.1)
        bar.finish(total, total)

    if in_notebook:
        bar.show(sum(f.done() for f in fs), len(fs))
        threading.Thread(target=run, daemon=True, name="rask-progress").start()
    else:
        run()
