"""Reference results from scipy.ndimage and scikit-image for rask-image's tests.

Reads a JSON list of cases on stdin and writes a JSON list of results: for
each case the result's dtype name, shape and flat values (or an error).
A case names the function (`fn`), the input (`dtype`, `shape`, flat `a`) and
the keyword arguments (`kwargs`); kernels come as flat `weights` + `wshape`.
"""
import json
import sys

import numpy as np
from scipy import ndimage as ndi


def run(case):
    a = np.array(case["a"], dtype=case["dtype"]).reshape(case["shape"])
    fn = case["fn"]
    kw = dict(case.get("kwargs", {}))
    if "footprint" in case:
        kw["footprint"] = np.array(case["footprint"], dtype=bool).reshape(case["fshape"])
    if "weights" in case:
        kw["weights"] = np.array(case["weights"], dtype=np.float64).reshape(case["wshape"])
    if "output" in case:
        kw["output"] = np.dtype(case["output"])
    if fn == "skimage.gaussian":
        from skimage.filters import gaussian
        out = gaussian(a, **kw)
    elif fn == "label":
        structure = ndi.generate_binary_structure(a.ndim, case.get("connectivity", 1))
        labels, count = ndi.label(a, structure=structure)
        return {"count": int(count), "dtype": str(labels.dtype), "shape": list(labels.shape),
                "values": labels.ravel().tolist()}
    elif fn in ("sum_labels", "mean", "maximum", "minimum"):
        labels = np.array(case["labels"]).reshape(case["shape"])
        index = case["index"]
        out = np.asarray(getattr(ndi, fn)(a, labels, index), dtype=np.float64)
    else:
        out = getattr(ndi, fn)(a, **kw)
    out = np.asarray(out)
    values = [None if isinstance(v, float) and v != v else v for v in out.ravel().tolist()]
    return {"dtype": str(out.dtype), "shape": list(out.shape), "values": values}


def main():
    cases = json.load(sys.stdin)
    results = []
    for case in cases:
        try:
            results.append(run(case))
        except Exception as e:  # the Rust side reports which case failed
            results.append({"error": f"{type(e).__name__}: {e}"})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
