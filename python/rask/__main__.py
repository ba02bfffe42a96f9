"""``python -m rask worker SCHEDULER``: a worker that runs Python functions.

It takes the same options as ``rask worker`` (and the same environment
variables), runs rask's worker node with this interpreter inside, and serves
every built-in op as well as Python functions.
"""

from __future__ import annotations

import argparse
import os
import sys


def _env(name, default=None):
    value = os.environ.get(name)
    return value if value else default


def worker_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rask worker",
                                description="Runs a rask worker that hosts Python and joins a scheduler.")
    p.add_argument("scheduler", nargs="?", default=_env("RASK_SCHEDULER_ADDRESS"),
                   help="the scheduler, e.g. tcp://127.0.0.1:8786 [env: RASK_SCHEDULER_ADDRESS]")
    p.add_argument("--nthreads", type=int, default=None,
                   help="threads per worker (default: one per core, split among --nworkers)")
    p.add_argument("--memory-limit", default="auto",
                   help='bytes, a size such as 4GiB or 500MB, a fraction such as 0.5, or "auto"')
    p.add_argument("--name", default=_env("RASK_WORKER_NAME"), help="worker name [env: RASK_WORKER_NAME]")
    p.add_argument("--group", default=_env("RASK_WORKER_GROUP"), help="worker group [env: RASK_WORKER_GROUP]")
    p.add_argument("--nworkers", type=int, default=1, help="workers to start in this process")
    p.add_argument("--listen-host", default="0.0.0.0", help="address to bind the data and HTTP ports on")
    p.add_argument("--contact-host", default=_env("RASK_CONTACT_HOST"),
                   help="host peers and the scheduler use to reach this worker [env: RASK_CONTACT_HOST]")
    p.add_argument("--data-port", type=int, default=0, help="port of the data service (0: any free port)")
    p.add_argument("--http-port", type=int, default=0, help="port of /health and /metrics (0: any free port)")
    p.add_argument("--token", default=_env("RASK_TOKEN"), help="the scheduler's shared token [env: RASK_TOKEN]")
    p.add_argument("--tls-ca-file", default=_env("RASK_TLS_CA_FILE"))
    p.add_argument("--tls-cert", default=_env("RASK_TLS_CERT"))
    p.add_argument("--tls-key", default=_env("RASK_TLS_KEY"))
    p.add_argument("--tls-server-name", default=_env("RASK_TLS_SERVER_NAME"))
    p.add_argument("--grace-period", type=float, default=30.0,
                   help="seconds a graceful shutdown (SIGTERM) may take to hand data to peers")
    p.add_argument("--local-directory", default=_env("RASK_LOCAL_DIRECTORY"),
                   help="directory for spilled values [env: RASK_LOCAL_DIRECTORY]")
    return p


def worker(argv) -> int:
    from . import _rask
    from .distributed import _parse_memory

    args = worker_parser().parse_args(argv)
    if not args.scheduler:
        print("python -m rask worker: give the scheduler address (or set RASK_SCHEDULER_ADDRESS)",
              file=sys.stderr)
        return 2
    if bool(args.tls_cert) != bool(args.tls_key):
        print("python -m rask worker: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    nworkers = max(1, args.nworkers)
    nthreads = args.nthreads or max(1, (os.cpu_count() or 1) // nworkers)
    _rask.run_worker(
        args.scheduler,
        nthreads=nthreads,
        memory_limit=_parse_memory(args.memory_limit, nworkers),
        nworkers=nworkers,
        name=args.name,
        group=args.group,
        listen_host=args.listen_host,
        contact_host=args.contact_host,
        data_port=args.data_port,
        http_port=args.http_port,
        token=args.token,
        tls_ca_file=args.tls_ca_file,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_server_name=args.tls_server_name,
        grace_period=args.grace_period,
        local_directory=args.local_directory,
    )
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m rask worker SCHEDULER [options]   (see python -m rask worker --help)")
        return 0 if argv else 2
    if argv[0] != "worker":
        print(f"python -m rask: unknown command {argv[0]!r}; the command is `worker`", file=sys.stderr)
        return 2
    return worker(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
