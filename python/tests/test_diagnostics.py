"""Progress: rask.diagnostics.ProgressBar around compute, and
rask.distributed.progress over futures (the terminal forms; the notebook
forms are checked by test_notebook.py)."""

import io
import re
import time

import rask
from rask import delayed
from rask.diagnostics import ProgressBar
from rask.distributed import Client, LocalCluster, progress


def slow(i):
    time.sleep(0.05)
    return i


def test_a_progress_bar_counts_the_graphs_tasks_to_completion():
    with LocalCluster(n_workers=1, threads_per_worker=2) as cluster, Client(cluster) as client:
        total = delayed(sum)([delayed(slow)(i) for i in range(40)])
        out = io.StringIO()
        with ProgressBar(out=out, dt=0.02):
            assert total.compute() == sum(range(40))
        text = out.getvalue()
        shown = [int(p) for p in re.findall(r"\|\s*(\d+)% Completed", text)]
        assert shown[-1] == 100 and text.endswith("\n")
        # It moved through intermediate values: 41 tasks at 2 at a time take ~1 s.
        assert any(0 < p < 100 for p in shown), text
        assert shown == sorted(shown), shown
        # Outside the block nothing is drawn.
        out2 = io.StringIO()
        bar = ProgressBar(out=out2)
        assert delayed(slow)(1).compute() == 1
        assert out2.getvalue() == ""
        bar.register()
        try:
            rask.compute(delayed(slow)(2))
        finally:
            bar.unregister()
        assert "100% Completed" in out2.getvalue()
        client.close()


def test_a_progress_bar_waits_for_its_minimum():
    out = io.StringIO()
    with ProgressBar(minimum=10, out=out):
        assert delayed(slow)(3).compute() == 3
    assert out.getvalue() == ""


def test_progress_draws_futures_until_done(capsys):
    with LocalCluster(n_workers=1, threads_per_worker=2) as cluster, Client(cluster) as client:
        futures = client.map(slow, range(20))
        progress(futures)
        assert all(f.done() for f in futures)
        text = capsys.readouterr().out
        assert "100% Completed" in text
