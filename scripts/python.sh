#!/usr/bin/env bash
# The Python package (python/): builds the wheel with maturin, installs it
# into the reference virtualenv, builds the `rask` binary the multi-process
# tests start, and runs the pytest suite (python/tests). Called by
# scripts/test.sh after scripts/setup.sh; runs on its own too.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rask/target}"
PYREF="${RASK_PYREF:-$HOME/.cache/rask/pyref}"
[ -x "$PYREF/bin/python" ] || python3 -m venv "$PYREF"
# maturin builds the wheel; cloudpickle and tblib are the package's own
# dependencies; pytest runs the suite; dask[distributed] is the reference.
if ! "$PYREF/bin/python" -c "import maturin, cloudpickle, tblib, pytest, distributed, numpy" >/dev/null 2>&1; then
    echo "python.sh: installing maturin, cloudpickle, tblib, pytest, dask[distributed], numpy into $PYREF" >&2
    "$PYREF/bin/python" -m pip install -q --disable-pip-version-check "maturin>=1.9.4,<2" "cloudpickle>=2" \
        "tblib>=1.7" "pytest>=7" "dask[distributed]>=2025.1,<2027" "numpy>=2,<3"
fi
# A dev-profile wheel shares the dependencies cargo test already built
# (scripts/python.sh bench builds a release wheel for the benchmark).
PROFILE="${RASK_PY_PROFILE:-dev}"
WHEELS="$CARGO_TARGET_DIR/wheels"
rm -f "$WHEELS"/rask-*.whl
"$PYREF/bin/maturin" build --quiet --manifest-path python/Cargo.toml --profile "$PROFILE" \
    --interpreter "$PYREF/bin/python" --out "$WHEELS"
"$PYREF/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$WHEELS"/rask-*.whl
cargo build -q --locked -p rask-cli
export RASK_BIN="$CARGO_TARGET_DIR/debug/rask"
# Run from python/tests, not python/: the installed wheel is what is tested.
cd python/tests
"$PYREF/bin/python" -m pytest -q -p no:cacheprovider "$@" .
