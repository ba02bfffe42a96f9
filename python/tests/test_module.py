"""The native module and the worker command."""

import os
import subprocess
import sys

from rask import _rask


def test_module_serves_every_builtin_op_and_python():
    ops = set(_rask.registered_ops())
    # A Python worker runs what a `rask worker` runs, plus Python functions.
    for op in ("python.call", "rask.add", "rask.getitem", "array.full", "array.random", "df.read_csv",
               "ml.moments", "image.read", "image.filter", "image.label_block"):
        assert op in ops, f"{op} is not linked into the module"


def test_worker_command_usage():
    env = {k: v for k, v in os.environ.items() if k != "RASK_SCHEDULER_ADDRESS"}
    r = subprocess.run([sys.executable, "-m", "rask", "worker"], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "scheduler address" in r.stderr
    r = subprocess.run([sys.executable, "-m", "rask", "worker", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for option in ("--nthreads", "--memory-limit", "--name", "--nworkers", "--contact-host", "--tls-cert",
                   "--grace-period", "--local-directory"):
        assert option in r.stdout
    r = subprocess.run([sys.executable, "-m", "rask", "worker", "tcp://127.0.0.1:1", "--nthreads", "1"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode != 0 and "127.0.0.1:1" in r.stderr
