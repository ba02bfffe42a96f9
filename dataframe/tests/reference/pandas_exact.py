"""pandas' answers for rask's exactness tests (dataframe/tests/pandas_exact.rs).

Reads {"frames": {name: {column: {"dtype": ..., "values": [...]}}}, "cases":
[python expression over the frames]} on stdin; writes for each case either
{"columns", "dtypes", "data"} or {"error": "Type: message"}.
"""
import json
import math
import sys

import numpy as np
import pandas as pd


def frame(spec):
    cols = {}
    for name, c in spec.items():
        values = [np.nan if v is None and c["dtype"].startswith("float") else v for v in c["values"]]
        cols[name] = pd.Series(values, dtype=c["dtype"] if c["dtype"] != "object" else object)
    return pd.DataFrame(cols)


def value(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else str(v)
    return str(v)


def table(out):
    if isinstance(out, pd.Series):
        out = out.to_frame()
    out = out.reset_index(drop=True)
    return {
        "columns": [str(c) for c in out.columns],
        "dtypes": [str(t) for t in out.dtypes],
        "data": {str(c): [value(v) for v in out[c].tolist()] for c in out.columns},
    }


def main():
    spec = json.load(sys.stdin)
    env = {"pd": pd, "np": np}
    for name, f in spec["frames"].items():
        env[name] = frame(f)
    results = []
    for case in spec["cases"]:
        try:
            with np.errstate(all="ignore"):
                results.append(table(eval(case, env)))
        except Exception as e:  # the Rust side compares the message
            results.append({"error": f"{type(e).__name__}: {e}"})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
