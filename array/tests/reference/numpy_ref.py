"""Computes reference results with numpy for the array reference tests.

Reads a JSON list of cases on stdin, writes a JSON list of results: for each
case the result's dtype name, shape and flat values (or an error message).
"""
import json
import sys

import numpy as np


def run(case):
    # JSON null stands for NaN (serde_json writes NaN as null).
    raw = [np.nan if v is None else v for v in case["a"]]
    a = np.array(raw, dtype=case["dtype"]).reshape(case["shape"])
    op = case["op"]
    if op == "reduce":
        axis = None if case["axis"] is None else (case["axis"] if case.get("scalar_axis") else tuple(case["axis"]))
        extra = {"ddof": case["ddof"]} if "ddof" in case else {}
        out = getattr(np, case["fn"])(a, axis=axis, keepdims=case["keepdims"], **extra)
    elif op == "binary":
        b = np.array(case["b"], dtype=case["b_dtype"]).reshape(case.get("b_shape", case["shape"]))
        out = getattr(np, case["fn"])(a, b)
    elif op == "scalar":
        s = case["scalar"]
        fn = getattr(np, case["fn"])
        out = fn(s, a) if case["scalar_first"] else fn(a, s)
    elif op == "getitem":
        parts = []
        for p in case["index"]:
            if p[0] == "slice":
                parts.append(slice(p[1], p[2], p[3]))
            elif p[0] == "int":
                parts.append(p[1])
            elif p[0] == "newaxis":
                parts.append(np.newaxis)
            else:
                parts.append(Ellipsis)
        out = a[tuple(parts)]
    elif op == "dot":
        b = np.array(case["b"], dtype=case["b_dtype"]).reshape(case["b_shape"])
        out = np.dot(a, b)
    elif op == "xxt":
        out = a + a.T
    elif op == "unary":
        fn = case["fn"]
        if fn == "round":
            out = np.round(a, case["decimals"])
        elif fn == "clip":
            out = np.clip(a, case["low"], case["high"])
        else:
            out = getattr(np, fn)(a)
    elif op == "where":
        b = np.array(case["b"], dtype=case["b_dtype"]).reshape(case["shape"])
        out = np.where(a > 0, a, b)
    elif op == "expr":
        # A numpy expression over `a` (and `b`), written by the Rust test.
        b = None
        if "b" in case:
            b = np.array(case["b"], dtype=case["b_dtype"]).reshape(case["b_shape"])
        out = eval(case["expr"], {"np": np, "a": a, "b": b})
    elif op == "histogram":
        counts, edges = np.histogram(a, bins=case["bins"], range=tuple(case["range"]))
        return {"counts": counts.tolist(), "edges": edges.tolist()}
    elif op == "astype":
        with np.errstate(all="ignore"):
            out = a.astype(case["to"])
    else:
        raise ValueError(op)
    out = np.asarray(out)
    # JSON has no NaN or infinity: those travel as strings ("nan", "inf").
    values = [v if not isinstance(v, float) or np.isfinite(v) else str(v) for v in out.ravel().tolist()]
    return {"dtype": str(out.dtype), "shape": list(out.shape), "values": values}


def main():
    cases = json.load(sys.stdin)
    results = []
    for c in cases:
        with np.errstate(all="ignore"):
            try:
                results.append(run(c))
            except Exception as e:  # reported to the Rust side, which fails the test
                results.append({"error": repr(e)})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
