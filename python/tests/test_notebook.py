"""The tutorial as a notebook (examples/tutorial.ipynb), executed headless by
Jupyter's nbclient with ipykernel: once on the embedded local cluster, once
against a ``rask scheduler`` with Python workers through
``DASK_SCHEDULER_ADDRESS``. Cells tagged ``check`` names give the key outputs.
"""

import os
import re

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from conftest import ROOT, Cluster

NOTEBOOK = os.path.join(ROOT, "examples", "tutorial.ipynb")
BIRTHDAYS = os.path.join(ROOT, "data", "Birthdays.csv.xz")


def run_notebook():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}})
    client.execute()
    outputs = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                pytest.fail(f"cell {cell.source[:60]!r} raised {output.ename}: {output.evalue}")
        for tag in cell.metadata.get("tags", []):
            if tag.startswith("display-"):
                outputs[tag] = [o["data"]["text/html"] for o in cell.outputs
                                if o.get("output_type") == "display_data" and "text/html" in o.get("data", {})]
                continue
            texts = [o["data"]["text/plain"] for o in cell.outputs
                     if o.get("output_type") == "execute_result" and "text/plain" in o.get("data", {})]
            assert texts, f"the cell tagged {tag} has no result"
            outputs[tag] = texts[-1]
    return outputs


def numbers(text):
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", text)]


def check_outputs(out, workers_after_scale):
    assert out["delayed-z"].strip() == "5"
    assert out["delayed-total"].strip() == "(10, 10, 10)"
    assert 378000.0 in numbers(out["prod"])  # (4 * 9 * 2 * 5 * 3 * 10 * 5 * 7)
    assert out["images-delayed-check"].strip() == "True"
    assert out["cluster-async"].strip() == "(True, 3)"
    assert out["array-max"].strip() == "(True, 'int64')"
    assert numbers(out["array-from-numpy"]) == [40.0]
    # The mean of 1e8 uniform integers in [0, 100): 49.5, standard error 0.003.
    assert abs(numbers(out["array-mean"])[-1] - 49.5) < 0.05
    assert out["array-mask"].strip() == "(True, True)"
    assert out["array-dot"].strip() == "True"
    assert out["array-histogram"].strip() == "(True, True)"

    births = pd.read_csv(BIRTHDAYS)
    assert numbers(out["frame-len"]) == [float(len(births))] == [372864.0]
    ak = births[births.state == "AK"]
    assert numbers(out["frame-ak-rows"]) == [float(len(ak))] == [7306.0]
    assert out["frame-ak-mean"].strip() == "25.37435"
    top = births.groupby("state").births.mean().nlargest(5)
    shown = re.findall(r"^([A-Z]{2})\s", out["frame-nlargest"], re.M)
    assert shown == list(top.index), out["frame-nlargest"]
    for state in births.state.unique():
        assert re.search(rf"\b{state}\b", out["frame-unique"]), state

    assert out["multiple-outputs"].strip() == "((500, 500), True)"
    coef, intercept, good = out["ml-fit"].strip("()").split(", ")
    assert abs(float(coef) - 0.0125) < 2e-4 and abs(float(intercept) - 3.25) < 0.2 and good == "True"
    assert out["image-shape"].strip() == "((4, 87, 130), dtype('uint8'))"
    assert out["image-check"].strip() == "True"
    assert abs(numbers(out["scaling"])[-1] - 49.5) < 0.05
    assert numbers(out["scaling-workers"]) == [float(workers_after_scale)]
    # Progress in the notebook: HTML bars that ended at 100 %.
    # ProgressBar blocks until done: its bar ends at 100 %. progress() returns
    # at once in a notebook (as Dask's), so its bar may be caught mid-way.
    bars = out["display-progressbar"]
    assert bars and "<progress" in bars[-1] and "100% Completed" in bars[-1], bars
    assert out["display-progress"] and "<progress" in out["display-progress"][-1], out["display-progress"]


def test_the_tutorial_notebook_runs_on_the_embedded_cluster(monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    monkeypatch.delenv("RASK_SCHEDULER_ADDRESS", raising=False)
    check_outputs(run_notebook(), 4)


def test_the_tutorial_notebook_runs_against_a_scheduler_and_worker_processes(tmp_path, monkeypatch):
    cluster = Cluster(tmp_path)
    try:
        cluster.add_python_worker(nthreads=2)
        cluster.add_python_worker(nthreads=2)
        cluster.wait_workers(2)
        monkeypatch.delenv("RASK_SCHEDULER_ADDRESS", raising=False)
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.address)
        before = completed_tasks(cluster)
        check_outputs(run_notebook(), 4)
        # The delayed, array, dataframe, ml and image sections ran on the
        # scheduler's worker processes: hundreds of tasks, not a handful.
        assert completed_tasks(cluster) - before > 150
    finally:
        cluster.stop()


def completed_tasks(cluster):
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.http_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(v) for v in re.findall(r"^rask_scheduler_tasks_completed_total(?:\{[^}]*\})? (\S+)$", text, re.M))
