# syntax=docker/dockerfile:1
# The rask image: one binary, `rask`, with the scheduler, worker, operator
# and crdgen subcommands, and Python with the rask package (`import rask`,
# `python -m rask worker`, which the operator's workers run by default).
# Every build step is scripts/build.sh, which the test suite also runs
# (operator/tests/image.rs), so CI exercises the same commands without a
# Docker engine.
#
#   docker build -t rask:dev .
#
# No HEALTHCHECK: Kubernetes probes the HTTP endpoints instead (/healthz and
# /readyz of the operator, /health of workers, the scheduler's dashboard port).

ARG RUST_IMAGE=rust:1.95-slim-bookworm
# distroless's Python image is its cc image (glibc, libgcc, libstdc++: what
# `rask` needs) plus Debian 12's Python 3.11, still without a shell.
ARG RUNTIME_IMAGE=gcr.io/distroless/python3-debian12:nonroot

# The toolchain plus protoc (proto/build.rs compiles the wire protocol), and
# Debian 12's Python 3.11 (the runtime's) with maturin, for the wheel.
FROM ${RUST_IMAGE} AS toolchain
RUN apt-get update \
    && apt-get install -y --no-install-recommends protobuf-compiler python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/maturin \
    && /opt/maturin/bin/pip install --no-cache-dir "maturin>=1.9.4,<2"
ENV CARGO_TARGET_DIR=/build/target \
    PYTHON=/opt/maturin/bin/python
WORKDIR /src

# The dependency recipe: manifests, Cargo.lock, build scripts and stubs. It
# changes only when dependencies do, so the next stage's dependency layer is
# reused across source edits (the cargo-chef idea).
FROM toolchain AS planner
COPY . .
RUN scripts/build.sh recipe /recipe

FROM toolchain AS builder
COPY --from=planner /recipe/ ./
RUN scripts/build.sh deps --profile release
COPY . .
RUN scripts/build.sh --profile release --out /out
RUN scripts/build.sh python --profile release --out /out

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="rask" \
      org.opencontainers.image.description="Dask-style parallel computing in Rust: scheduler, worker, Kubernetes operator and the Python package" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/rask"
COPY --from=builder /out/rask /usr/local/bin/rask
# The rask package and its dependencies, compiled to bytecode at build time:
# nothing is written at run time, so the root filesystem may be read-only.
COPY --from=builder /out/python /opt/rask/python
ENV PYTHONPATH=/opt/rask/python \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The tutorial's data, where `rask demo dataframe` looks beside its binary.
COPY data/Birthdays.csv.xz /usr/local/share/rask/Birthdays.csv.xz
# distroless's "nonroot" user, by number so runAsNonRoot can verify it.
USER 65532:65532
# Scheduler gRPC and HTTP, worker data and HTTP, operator metrics.
EXPOSE 8786 8787 8788 8789 8080
ENTRYPOINT ["/usr/local/bin/rask"]
CMD ["--help"]
