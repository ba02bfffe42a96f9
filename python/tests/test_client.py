"""rask.distributed on the embedded local cluster, against dask.distributed's results."""

import asyncio
import os
import threading
import time
from concurrent.futures import CancelledError

import pytest

from rask import delayed
from rask.distributed import Client, LocalCluster, as_completed, progress, wait


def inc(x):
    return x + 1


def add(x, y):
    return x + y


def slow_inc(x, delay=0.3):
    time.sleep(delay)
    return x + 1


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as c:
        yield c


@pytest.fixture
def client():
    for var in ("RASK_SCHEDULER_ADDRESS", "DASK_SCHEDULER_ADDRESS"):
        assert not os.environ.get(var), f"{var} is set: these tests want the embedded cluster"
    with Client(n_workers=2, threads_per_worker=2) as c:
        yield c


def program(c):
    """The same futures program for both clients."""
    x = c.submit(inc, 10)
    ys = c.map(inc, range(20))
    total = c.submit(sum, ys)
    z = c.submit(add, x, total)
    [data] = c.scatter([[1, 2, 3]])
    n = c.submit(len, data)
    return c.gather([x, z, n, {"ys": ys[:3]}])


def test_futures_program_matches_dask(client, dask_client):
    assert program(client) == program(dask_client)


def test_compute_and_persist_match_dask(client, dask_client):
    import dask

    def build(d):
        parts = [d.delayed(inc)(i) for i in range(8)]
        return d.delayed(sum)(parts), parts[0]

    rtotal, rfirst = build(__import__("rask"))
    dtotal, dfirst = build(dask)
    rf = client.compute(rtotal)
    df = dask_client.compute(dtotal)
    assert rf.result() == df.result() == 36
    assert client.compute([rtotal, rfirst], sync=True) == dask_client.compute([dtotal, dfirst], sync=True)
    rp = client.persist(rtotal)
    dp = dask_client.persist(dtotal)
    assert (rp * 2).compute() == (dp * 2).compute()


def test_client_defaults_and_repr(client):
    assert client.dashboard_link is None  # the embedded cluster serves no dashboard
    info = client.scheduler_info()["workers"]
    assert len(info) == 2 and all(w["nthreads"] == 2 for w in info.values())
    assert "threads=4" in repr(client)
    page = client._repr_html_()
    assert "Workers:</strong> 2" in page and "Total threads:</strong> 4" in page
    # rask.compute uses the default client.
    assert delayed(inc)(1).compute() == 2


def test_env_address_is_used(monkeypatch):
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:1")
    with pytest.raises(OSError, match="127.0.0.1:1"):
        Client()


def test_wait_as_completed_progress(client, capsys):
    fs = client.map(slow_inc, [3, 1, 2], delay=0.1)
    fast = client.submit(inc, 0)
    done, not_done = wait(fs + [fast])
    assert len(done) == 4 and not not_done
    assert sorted(f.result() for f in as_completed(fs)) == [2, 3, 4]
    got = sorted(r for _, r in as_completed(client.map(inc, range(5)), with_results=True))
    assert got == [1, 2, 3, 4, 5]
    progress(fs)
    assert "100% Completed" in capsys.readouterr().out
    assert all(f.status == "finished" for f in fs)


def test_cancel(client):
    f = client.submit(slow_inc, 1, delay=2, pure=False)
    client.cancel(f)
    with pytest.raises(CancelledError):
        f.result(timeout=5)
    assert f.status == "cancelled" and f.cancelled()


def test_errors_keep_type_and_traceback(client):
    def boom(x):
        raise ValueError(f"bad value {x}")

    f = client.submit(boom, 7)
    with pytest.raises(ValueError, match="bad value 7") as info:
        f.result()
    assert "boom" in [e.name for e in info.traceback]
    assert isinstance(f.exception(), ValueError)
    assert f.status == "error"
    with pytest.raises(TimeoutError):
        client.submit(slow_inc, 1, delay=2, pure=False).result(timeout=0.05)
    with pytest.raises(FileNotFoundError):
        client.submit(open, "/nonexistent/rask-file").result()


def test_builtin_op_errors_map_to_dask_exception_types():
    from rask._protocol import KilledWorker, make_exception

    cases = {
        "reading s3://b/k: AccessDenied: Access Denied": PermissionError,
        "cannot open data.csv: No such file or directory (os error 2)": FileNotFoundError,
        "s3://b/missing.csv: NoSuchKey": FileNotFoundError,
        "unsupported operand types for +: int and str": TypeError,
        "column \"x\": no column of that name": KeyError,
        "operation timed out": TimeoutError,
        "chunks do not fit the shape": ValueError,
    }
    for message, kind in cases.items():
        exc = make_exception("raised", "t-1", message)
        assert type(exc) is kind, (message, exc)
        assert message in str(exc)
    assert isinstance(make_exception("cancelled", "t-1", ""), CancelledError)
    assert isinstance(make_exception("killed", "t-1", "3 workers died"), KilledWorker)
    assert isinstance(make_exception("timeout", "t-1", "timed out"), TimeoutError)
    assert isinstance(make_exception("invalid", "", "the graph has a cycle"), ValueError)


def test_gil_is_released_while_waiting(client):
    # Python functions on the worker threads make progress while the main
    # thread waits in result(): the wait does not hold the GIL.
    fs = client.map(slow_inc, range(4), delay=0.2)
    start = time.monotonic()
    assert client.gather(fs) == [1, 2, 3, 4]
    assert time.monotonic() - start < 0.75  # 4 tasks of 0.2 s on 4 threads, not 0.8 s serially


def test_restart_and_close():
    c = Client(n_workers=1, threads_per_worker=1)
    f = c.submit(inc, 1)
    assert f.result() == 2
    c.restart()
    assert c.submit(inc, 2).result() == 3
    c.close()
    assert c.status == "closed"
    with pytest.raises(RuntimeError):
        c.submit(inc, 1)


def test_local_cluster_object():
    with LocalCluster(n_workers=1, threads_per_worker=2) as cluster, Client(cluster) as c:
        assert c.submit(add, 1, 2).result() == 3
        assert len(cluster.workers_info()) == 1
        cluster.scale(2)
        assert len(c.scheduler_info()["workers"]) == 2


def test_asyncio():
    async def main():
        async with Client(asynchronous=True, n_workers=1, threads_per_worker=2) as c:
            x = c.submit(slow_inc, 1, delay=0.1)
            y = c.submit(slow_inc, 2, delay=0.1)
            a, b = await asyncio.gather(x, y)
            total = await c.gather(c.map(inc, range(4)))
            z = await c.submit(add, x, y)
            return a, b, total, z

    assert asyncio.run(main()) == (2, 3, [1, 2, 3, 4], 5)
