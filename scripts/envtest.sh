#!/usr/bin/env bash
# Builds the control plane that the operator's integration tests run against:
# kube-apiserver and kube-controller-manager (garbage collection and namespace
# deletion) from k8s.io/kubernetes source, through the Go module proxy, once
# per version into $RASK_ENVTEST_DIR (default ~/.cache/rask/envtest/<version>/).
# When the binaries are there, nothing is done. etcd comes from the
# etcd-bin-vendored crate (a dev-dependency of rask-operator), and kubectl from
# the machine, or from the same build when it is missing.
#
# Why a wrapper module: k8s.io/kubernetes's go.mod replaces every staging
# module (k8s.io/api, k8s.io/apiserver, ...) with ./staging paths that the
# module zip lacks, so `go install k8s.io/kubernetes/cmd/...@v` is refused.
# The wrapper requires k8s.io/kubernetes and replaces each staging module with
# its published v0.X.Y tag instead; the list is read from the go.mod the proxy
# serves rather than typed here.
set -euo pipefail

VERSION="${RASK_ENVTEST_K8S_VERSION:-v1.34.4}"
OUT="${RASK_ENVTEST_DIR:-$HOME/.cache/rask/envtest/$VERSION}"
STAGING_VERSION="v0.${VERSION#v1.}"
MINOR="$(echo "$VERSION" | cut -d. -f2)"

binaries=(kube-apiserver kube-controller-manager)
command -v kubectl >/dev/null 2>&1 || binaries+=(kubectl)

missing=()
for b in "${binaries[@]}"; do
    [ -x "$OUT/$b" ] || missing+=("$b")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

command -v go >/dev/null 2>&1 || { echo "envtest: go is needed to build ${missing[*]}" >&2; exit 1; }
echo "envtest: building ${missing[*]} $VERSION into $OUT (once; a cold build takes 10-20 minutes)" >&2
mkdir -p "$OUT"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

upstream_gomod="$(go mod download -json "k8s.io/kubernetes@$VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
[ -f "$upstream_gomod" ] || { echo "envtest: no go.mod for k8s.io/kubernetes@$VERSION" >&2; exit 1; }

{
    echo "module rask.dev/envtest"
    echo
    echo "go 1.24.0"
    echo
    # Keep Go 1.24's TLS and x509 defaults, which this Kubernetes was built for.
    echo "godebug default=go1.24"
    echo
    echo "require k8s.io/kubernetes $VERSION"
    echo
    # Each `k8s.io/x => ./staging/src/k8s.io/x` becomes `k8s.io/x => k8s.io/x v0.X.Y`.
    grep -E '^[[:space:]]*k8s\.io/[^ ]+ => \./staging/' "$upstream_gomod" \
        | awk -v v="$STAGING_VERSION" '{ print "replace " $1 " => " $1 " " v }'
} >"$WORK/go.mod"

{
    echo "//go:build tools"
    echo
    echo "package tools"
    echo
    echo "import ("
    for b in "${missing[@]}"; do
        echo "	_ \"k8s.io/kubernetes/cmd/$b\""
    done
    echo ")"
} >"$WORK/tools.go"

cd "$WORK"
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export CGO_ENABLED=0
go mod tidy >/dev/null 2>&1 || go mod tidy
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$MINOR"
for b in "${missing[@]}"; do
    echo "envtest: go build $b" >&2
    go build -trimpath -ldflags "$ldflags" -o "$OUT/$b.tmp" "k8s.io/kubernetes/cmd/$b"
    mv "$OUT/$b.tmp" "$OUT/$b"
done
echo "envtest: $VERSION ready in $OUT" >&2
