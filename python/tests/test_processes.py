"""Python on a real cluster: `rask scheduler`, a plain `rask worker` and
`python -m rask worker` processes on 127.0.0.1."""

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from rask import delayed
from rask.distributed import Client, KilledWorker, wait

HERE = os.path.dirname(os.path.abspath(__file__))


def where(x):
    """Which process ran it."""
    return os.getpid(), x


def slow_square(x):
    time.sleep(0.05)
    return x * x


def python_worker_pids(cluster):
    return {p.pid for p in cluster.python}


def memory_keys(metrics_url):
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    m = re.search(r'rask_worker_tasks\{state="memory"\} (\d+)', text)
    return int(m.group(1)) if m else 0


def test_python_tasks_run_only_on_python_workers(cluster):
    plain = cluster.add_plain_worker()
    cluster.add_python_worker()
    cluster.wait_workers(2)
    with Client(cluster.address) as client:
        results = client.gather(client.map(where, range(60)))
        assert [x for _, x in results] == list(range(60))
        assert {pid for pid, _ in results} <= python_worker_pids(cluster)
        # Built-in ops (here: scattered values, the identity op) run on both.
        held = client.scatter(list(range(200)))
        wait(held)
        deadline = time.monotonic() + 10
        while memory_keys(plain.metrics) == 0 and time.monotonic() < deadline:
            time.sleep(0.2)  # the gauge is refreshed with the heartbeat
        assert memory_keys(plain.metrics) > 0
        assert client.gather(held[:3]) == [0, 1, 2]
        # A Python task reads inputs made on the plain worker.
        assert client.submit(sum, held).result() == sum(range(200))


def test_no_python_worker_is_a_clear_error(cluster):
    cluster.add_plain_worker()
    cluster.wait_workers(1)
    with Client(cluster.address) as client:
        f = client.submit(where, 1)
        with pytest.raises(RuntimeError, match=r"python -m rask worker"):
            f.result(timeout=30)
        # Built-in work still runs.
        assert client.gather(client.scatter([1, 2])) == [1, 2]


def test_values_cross_processes_pickled(cluster):
    np = pytest.importorskip("numpy")
    cluster.add_python_worker()
    cluster.add_python_worker()
    cluster.wait_workers(2)
    with Client(cluster.address) as client:
        a = client.submit(np.arange, 300_000, pure=False)
        b = client.submit(lambda v: {"sum": int(v.sum()), "arr": v[:3]}, a)
        out = b.result()
        assert out["sum"] == int(np.arange(300_000).sum())
        assert list(out["arr"]) == [0, 1, 2]

        class Point:  # defined here: only cloudpickle can send it
            def __init__(self, x):
                self.x = x

        p = client.submit(Point, 5).result()
        assert p.x == 5
        with pytest.raises(ZeroDivisionError) as info:
            client.submit(lambda: 1 / 0).result()
        assert "<lambda>" in [e.name for e in info.traceback]


def test_sigkill_of_a_python_worker_mid_graph(cluster):
    victim = cluster.add_python_worker(nthreads=2)
    cluster.add_python_worker(nthreads=2)
    cluster.add_plain_worker()
    cluster.wait_workers(3)
    with Client(cluster.address) as client:
        parts = [delayed(slow_square)(i) for i in range(200)]
        while len(parts) > 1:
            parts = [delayed(lambda a, b: a + b)(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
                     for i in range(0, len(parts), 2)]
        future = client.compute(parts[0])
        time.sleep(1.0)  # some of the graph has run, much is left
        assert not future.done()
        victim.kill(signal.SIGKILL)
        assert future.result(timeout=120) == sum(i * i for i in range(200))


def run_tutorial(env, tmp_path):
    return subprocess.run([sys.executable, os.path.join(HERE, "tutorial_delayed.py"), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)


def test_tutorial_on_embedded_cluster(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RASK_SCHEDULER_ADDRESS", "DASK_SCHEDULER_ADDRESS")}
    r = run_tutorial(env, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "tutorial delayed section: ok on inproc://" in r.stdout
    assert (tmp_path / "prod.png").stat().st_size > 0


def test_tutorial_through_dask_scheduler_address(cluster, tmp_path):
    cluster.add_plain_worker()
    cluster.add_python_worker(nthreads=2)
    cluster.wait_workers(2)
    env = dict(os.environ, DASK_SCHEDULER_ADDRESS=cluster.address)
    env.pop("RASK_SCHEDULER_ADDRESS", None)
    r = run_tutorial(env, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"tutorial delayed section: ok on {cluster.address}" in r.stdout


def test_killed_worker_after_repeated_kills(cluster):
    cluster.add_python_worker(nthreads=1)
    cluster.wait_workers(1)

    def crash():
        os.kill(os.getpid(), signal.SIGKILL)

    with Client(cluster.address) as client:
        f = client.submit(crash, pure=False)
        for _ in range(3):
            # Each death: the task goes to the next Python worker.
            cluster.add_python_worker(nthreads=1)
            if f.done():
                break
            time.sleep(1.0)
        with pytest.raises(KilledWorker):
            f.result(timeout=60)
