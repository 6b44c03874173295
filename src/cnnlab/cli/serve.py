"""`cnnlab serve [RUN ...] [--runs DIR]`: the lab (Draw, Network, Shapes pages) and its REST API
(FastAPI + uvicorn), over every run folder given and every one under DIR."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

DEFAULT_RUN = Path("runs/demo/cnn")  # the CNN run that `cnnlab demo` (`make demo`) writes
DEFAULT_RUNS_DIR = Path("runs")
SHUTDOWN_S = 3  # open event streams are cut after this, then running jobs are stopped and saved
KEEP_ALIVE_S = 5  # an idle kept-alive connection is closed after this: idle sockets cost the server


def register(sub, common) -> None:
    p = sub.add_parser(
        "serve",
        parents=[common],
        help="the lab: draw a digit for several models, every layer, shapes; and the REST API",
        description="Serve the lab: draw a digit and watch two of your runs (an MLP and a CNN) "
        "read it side by side, move or turn it, nudge it until they answer something else "
        "(Draw, /); every layer of a run (Network, /network); the conv/pool shape formula "
        "(Shapes, /shapes); and the REST API (GET /api/runs, POST /api/predict?run=NAME, ...; "
        "OpenAPI at /docs). Listens on loopback only unless --host says otherwise.",
    )
    p.add_argument(
        "run",
        nargs="*",
        metavar="RUN",
        help=f"run folders to serve; the first is the default run (default: {DEFAULT_RUN}, "
        "written by `make demo`, or the first run under --runs)",
    )
    p.add_argument(
        "--runs",
        metavar="DIR",
        default=None,
        help=f"also serve every run folder under DIR, named by its path in DIR, e.g. demo/cnn "
        f"(default: {DEFAULT_RUNS_DIR}/ when it exists)",
    )
    p.add_argument(
        "--cache",
        type=int,
        default=4,
        metavar="N",
        help="runs kept loaded in memory at once; others load on use (default: 4)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; 0.0.0.0 opens it to your network (default: 127.0.0.1)",
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests for this host name (a DNS name or a proxy's); repeatable. "
        "Others get 403, which stops DNS rebinding (default: localhost, 127.0.0.1, ::1, --host)",
    )
    p.add_argument(
        "--port", type=int, default=8000, help="port; 0 picks a free one and prints it (default: 8000)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per request: requests run side by side, each on one "
        "thread, which beats sharing threads for a model this small (default: 1)",
    )
    _add_job_options(p)
    p.set_defaults(func=cmd_serve)


def _add_job_options(p) -> None:
    """The flags of training jobs started from the Train page (/train)."""
    p.add_argument(
        "--max-jobs", type=int, default=1, metavar="N", help="training jobs run at once (default: 1)"
    )
    p.add_argument(
        "--queue", type=int, default=4, metavar="N", help="jobs that may wait; more get 429 (default: 4)"
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="image-folder datasets the Train page may use: the folders in DIR (default: none)",
    )
    p.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="run each job under torchrun with N processes (default: one process)",
    )


def _job_settings(args, host: str):
    """JobSettings from the flags; a token when the server is not on loopback."""
    import secrets

    from cnnlab.errors import ConfigError
    from cnnlab.web.jobs import JobSettings

    if args.max_jobs < 1 or args.queue < 0 or (args.nproc is not None and args.nproc < 1):
        raise ConfigError("--max-jobs and --nproc must be >= 1 and --queue >= 0")
    data_dir = Path(args.data_dir).resolve() if args.data_dir else None
    if data_dir is not None and not data_dir.is_dir():
        raise ConfigError(f"--data-dir {args.data_dir}: no such folder")
    token = None if _is_loopback(host) else secrets.token_urlsafe(24)
    return JobSettings(token, args.max_jobs, args.queue, data_dir, args.nproc, None)


def cmd_serve(args) -> int:
    import socket

    import torch
    import uvicorn

    from cnnlab.errors import ConfigError
    from cnnlab.web.app import create_app
    from cnnlab.web.middleware import hosts_for_bind

    runs, runs_dir = _runs(args)
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0..65535, not {args.port}")
    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, not {args.threads}")
    torch.set_num_threads(args.threads)
    hosts, any_ip = hosts_for_bind(args.host, args.allow_host)
    jobs = _job_settings(args, args.host)
    app = create_app(
        runs,
        runs_dir=runs_dir,
        cache_size=args.cache,
        allowed_hosts=hosts,
        any_ip_host=any_ip,
        jobs=jobs,
    )
    run = app.state.registry.default

    sock = _listen(args.host, args.port, socket)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    count = len(app.state.registry.names())
    print(
        f"cnnlab: serving {count} run{'s' * (count != 1)} (default {run}) on http://{shown}:{port}/  "
        "(API: /docs; Ctrl-C stops)",
        flush=True,
    )
    if not _is_loopback(host):
        print(
            f"cnnlab: warning: listening on {host}: other machines can reach this server",
            file=sys.stderr,
        )
    if jobs.token is not None:  # printed once: whoever holds this URL may train on this machine
        print(
            f"cnnlab: the Train page's URL: http://{shown}:{port}/login?token={jobs.token}", flush=True
        )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning" if args.quiet else "info",
        access_log=not args.quiet,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=SHUTDOWN_S,
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _runs(args) -> tuple[list[Path], Path | None]:
    """The RUN folders and the runs folder to serve; ConfigError when there is nothing."""
    from cnnlab.errors import ConfigError

    runs = [Path(r) for r in args.run]
    runs_dir = (
        Path(args.runs) if args.runs else (DEFAULT_RUNS_DIR if DEFAULT_RUNS_DIR.is_dir() else None)
    )
    if args.runs and not runs_dir.is_dir():
        raise ConfigError(f"--runs {args.runs}: no such folder; give a folder holding run folders")
    if args.cache < 1:
        raise ConfigError(f"--cache must be >= 1, not {args.cache}")
    if not runs and runs_dir is None:
        if not DEFAULT_RUN.is_dir():
            raise ConfigError(
                f"no RUN given and no {DEFAULT_RUN} here: make one with `make demo`, or train one "
                "with `cnnlab train --model cnn --out runs/mine` and run `cnnlab serve runs/mine`"
            )
        runs = [DEFAULT_RUN]
    return runs, runs_dir


def _listen(host: str, port: int, socket):
    """A listening TCP socket on (host, port); port 0 gets a free one from the system."""
    from cnnlab.errors import ConfigError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        raise ConfigError(
            f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --port (0: any free one)"
        ) from None
    sock.setblocking(False)
    return sock


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
