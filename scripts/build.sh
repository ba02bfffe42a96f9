#!/usr/bin/env bash
# Builds the one `rask` binary (scheduler, worker, operator, crdgen, demo).
# The Dockerfile runs exactly these steps, and so does the test suite
# (operator/tests/image.rs, with the dev profile), so CI exercises the
# image's build without a Docker engine.
#
#   scripts/build.sh [--profile release|dev] --out DIR
#       cargo build --locked of package rask-cli, then copies `rask` to DIR.
#   scripts/build.sh recipe DIR
#       The dependency recipe (the cargo-chef idea): the workspace's
#       manifests, Cargo.lock, build scripts and protos, with a stub for every
#       other source file. Its contents change only when dependencies do, so
#       the image's dependency layer stays cached across source edits.
#   scripts/build.sh deps [--profile release|dev]
#       Run inside a recipe: compiles every dependency of rask-cli.
#   scripts/build.sh python [--profile release|dev] --out DIR
#       The Python package (python/): maturin builds the rask wheel (abi3)
#       into DIR/wheels, and pip installs it with its dependencies
#       (cloudpickle, tblib) into DIR/python, a directory for PYTHONPATH,
#       which the image copies. $PYTHON (default python3) needs maturin and
#       pip; the wheel serves every CPython from 3.9 on.
set -euo pipefail

profile=release
out=
mode=build
recipe_dir=
case "${1:-}" in
    recipe) mode=recipe; recipe_dir="${2:?usage: scripts/build.sh recipe DIR}"; shift 2 ;;
    deps) mode=deps; shift ;;
    python) mode=python; shift ;;
esac
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if [ "$mode" = recipe ]; then
    mkdir -p "$recipe_dir"
    # Every manifest of the workspace, the lock file, the toolchain's
    # settings, this script, and what build scripts read (proto/).
    find . -path ./target -prune -o \( -name Cargo.toml -o -name build.rs \) -print \
        | while read -r f; do mkdir -p "$recipe_dir/$(dirname "$f")"; cp "$f" "$recipe_dir/$f"; done
    for f in Cargo.lock rust-toolchain.toml rustfmt.toml clippy.toml scripts/build.sh; do
        [ -f "$f" ] && { mkdir -p "$recipe_dir/$(dirname "$f")"; cp "$f" "$recipe_dir/$f"; }
    done
    find proto -name '*.proto' | while read -r f; do mkdir -p "$recipe_dir/$(dirname "$f")"; cp "$f" "$recipe_dir/$f"; done
    # A stub for each target cargo knows of, so the recipe is a valid workspace.
    cargo metadata --locked --offline --no-deps --format-version 1 \
        | grep -o '"src_path":"[^"]*"' | sed -e 's/^"src_path":"//' -e 's/"$//' \
        | while read -r path; do
            rel="${path#"$root"/}"
            case "$rel" in
                */build.rs | build.rs) continue ;;
                */lib.rs) body='// dependency-cache stub' ;;
                *) body='fn main() {}' ;;
            esac
            mkdir -p "$recipe_dir/$(dirname "$rel")"
            echo "$body" > "$recipe_dir/$rel"
        done
    echo "recipe written to $recipe_dir"
    exit 0
fi

# cargo calls the dev profile's directory "debug".
case "$profile" in
    dev) dir=debug ;;
    *) dir="$profile" ;;
esac
target="${CARGO_TARGET_DIR:-$root/target}"

if [ "$mode" = deps ]; then
    cargo build --locked --profile "$profile" -p rask-cli
    exit 0
fi

[ -n "$out" ] || { echo "build.sh: --out DIR is required" >&2; exit 2; }

if [ "$mode" = python ]; then
    py="${PYTHON:-python3}"
    "$py" -c "import maturin, pip" 2>/dev/null \
        || { echo "build.sh: $py lacks maturin or pip: $py -m pip install 'maturin>=1.9.4,<2'" >&2; exit 2; }
    rm -rf "$out/wheels" "$out/python"
    "$py" -m maturin build --quiet --manifest-path python/Cargo.toml --profile "$profile" \
        --interpreter "$py" --out "$out/wheels"
    "$py" -m pip install --quiet --disable-pip-version-check --target "$out/python" "$out"/wheels/rask-*.whl
    echo "built $out/wheels and $out/python ($profile)"
    exit 0
fi
cargo build --locked --profile "$profile" -p rask-cli --bin rask
mkdir -p "$out"
cp "$target/$dir/rask" "$out/rask"
echo "built $out/rask ($profile)"
