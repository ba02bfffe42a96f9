#!/usr/bin/env bash
# The Python package (python/): builds the wheel with maturin, installs it
# into the reference virtualenv, builds the `rask` binary the multi-process
# tests start, and runs the pytest suite (python/tests). Called by
# scripts/test.sh after scripts/setup.sh; runs on its own too.
# `scripts/python.sh install` only builds and installs the wheel (test.sh
# runs it before cargo test: the operator's Python DaskJob test runs
# `python -m rask worker` and a script from this virtualenv).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rask/target}"
PYREF="${RASK_PYREF:-$HOME/.cache/rask/pyref}"
[ -x "$PYREF/bin/python" ] || python3 -m venv "$PYREF"
# maturin builds the wheel; cloudpickle, tblib, numpy, pandas and pyarrow are
# the package's own dependencies; pytest runs the suite; dask[distributed,
# dataframe, array], dask-image, scipy, scikit-image and scikit-learn are the
# references; nbclient, nbformat and ipykernel run the tutorial notebook.
if ! "$PYREF/bin/python" -c "import maturin, cloudpickle, tblib, pytest, distributed, numpy, pandas, pyarrow, \
        scipy, skimage, sklearn, dask_image, nbclient, nbformat, ipykernel, tifffile, zarr" >/dev/null 2>&1; then
    echo "python.sh: installing the package's dependencies, references and notebook runner into $PYREF" >&2
    "$PYREF/bin/python" -m pip install -q --disable-pip-version-check "maturin>=1.9.4,<2" "cloudpickle>=2" \
        "tblib>=1.7" "pytest>=7" "dask[distributed,dataframe,array]>=2025.1,<2027" "numpy>=2,<3" "pandas>=2.2,<3" \
        "pyarrow>=15" "scipy>=1.13,<2" "scikit-image>=0.24,<1" "scikit-learn>=1.5,<2" "dask-image>=2024.5" \
        "nbclient>=0.10" "nbformat>=5.10" "ipykernel>=6.29" "tifffile>=2024.1" "zarr>=3,<4"
fi
# A dev-profile wheel shares the dependencies cargo test already built
# (scripts/python.sh bench builds a release wheel for the benchmark).
PROFILE="${RASK_PY_PROFILE:-dev}"
WHEELS="$CARGO_TARGET_DIR/wheels"
rm -f "$WHEELS"/rask-*.whl
"$PYREF/bin/maturin" build --quiet --manifest-path python/Cargo.toml --profile "$PROFILE" \
    --interpreter "$PYREF/bin/python" --out "$WHEELS"
"$PYREF/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$WHEELS"/rask-*.whl
[ "${1:-}" = install ] && exit 0
cargo build -q --locked -p rask-cli
export RASK_BIN="$CARGO_TARGET_DIR/debug/rask"
# Run from python/tests, not python/: the installed wheel is what is tested.
cd python/tests
"$PYREF/bin/python" -m pytest -q -p no:cacheprovider "$@" .
