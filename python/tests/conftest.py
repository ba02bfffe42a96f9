"""Fixtures: real rask processes on 127.0.0.1 for the multi-process tests.

``RASK_BIN`` names the ``rask`` binary (scripts/python.sh builds it);
Python workers run as ``python -m rask worker`` with this interpreter.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def rask_bin():
    path = os.environ.get("RASK_BIN") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/rask/target")), "debug", "rask")
    if not os.path.exists(path):
        raise RuntimeError(f"the rask binary is not at {path}: build it (cargo build -p rask-cli) or set RASK_BIN")
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child process whose output goes to a file, read for its first lines."""

    def __init__(self, args, log, env=None):
        self.log_path = log
        self.log = open(log, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env or os.environ.copy(),
                                     start_new_session=True)

    def wait_for(self, pattern, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path) as f:
                m = re.search(pattern, f.read())
            if m:
                return m
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.log_path}: exited with {self.proc.returncode}:\n{open(self.log_path).read()}")
            time.sleep(0.05)
        raise TimeoutError(f"{self.log_path}: no {pattern!r} after {timeout} s:\n{open(self.log_path).read()}")

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    @property
    def pid(self):
        return self.proc.pid


class Cluster:
    """``rask scheduler``, plain ``rask worker``s and ``python -m rask worker``s."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.port = free_port()
        self.http_port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs = []
        self.scheduler = self._start(
            [rask_bin(), "scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--http-port", str(self.http_port)],
            "scheduler")
        self.scheduler.wait_for(r"rask scheduler at")
        self.plain = []
        self.python = []

    def _start(self, args, name):
        env = os.environ.copy()
        env.setdefault("RUST_LOG", "warn")
        p = Proc(args, str(self.tmp / f"{name}-{len(self.procs)}.log"), env)
        self.procs.append(p)
        return p

    def add_plain_worker(self, nthreads=2):
        p = self._start([rask_bin(), "worker", self.address, "--nthreads", str(nthreads), "--memory-limit", "0",
                         "--listen-host", "127.0.0.1", "--contact-host", "127.0.0.1"], "plain-worker")
        m = p.wait_for(r"rask worker (\S+) at")
        p.name = m.group(1)
        p.metrics = re.search(r"metrics at (\S+)\)", open(p.log_path).read()).group(1)
        self.plain.append(p)
        return p

    def add_python_worker(self, nthreads=2):
        p = self._start([sys.executable, "-m", "rask", "worker", self.address, "--nthreads", str(nthreads),
                         "--memory-limit", "0", "--listen-host", "127.0.0.1", "--contact-host", "127.0.0.1"],
                        "python-worker")
        m = p.wait_for(r"rask worker (\S+) at")
        p.name = m.group(1)
        self.python.append(p)
        return p

    def workers(self):
        import json
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/api/v1/get_workers", timeout=5) as r:
            return json.load(r)["workers"]

    def wait_workers(self, n, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.workers()) >= n:
                return
            time.sleep(0.05)
        raise TimeoutError(f"fewer than {n} workers joined")

    def stop(self):
        for p in reversed(self.procs):
            p.kill(signal.SIGKILL)


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()
