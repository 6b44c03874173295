"""`cnnlab serve [RUN]`: the draw-a-digit web app and its REST API (FastAPI + uvicorn)."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

DEFAULT_RUN = Path("runs/demo/cnn")  # the CNN run that `cnnlab demo` (`make demo`) writes
KEEP_ALIVE_S = 5  # an idle kept-alive connection is closed after this: idle sockets cost the server


def register(sub, common) -> None:
    p = sub.add_parser(
        "serve",
        parents=[common],
        help="the draw-a-digit web app and REST API",
        description="Serve a page where you draw a digit and watch the prediction, the 28x28 "
        "input the model sees and the first conv layer's feature maps change as you draw; and "
        "a REST API (POST /api/predict, POST /api/explain, GET /api/model; OpenAPI at /docs). "
        "Listens on loopback only unless --host says otherwise.",
    )
    p.add_argument(
        "run",
        nargs="?",
        metavar="RUN",
        help=f"run folder (default: {DEFAULT_RUN}, written by `make demo`)",
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
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    import socket

    import torch
    import uvicorn

    from cnnlab.errors import ConfigError
    from cnnlab.web.app import create_app
    from cnnlab.web.middleware import hosts_for_bind

    run = Path(args.run) if args.run else DEFAULT_RUN
    if args.run is None and not run.is_dir():
        raise ConfigError(
            f"no RUN given and no {DEFAULT_RUN} here: make one with `make demo`, or train one "
            "with `cnnlab train --model cnn --out runs/mine` and run `cnnlab serve runs/mine`"
        )
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0..65535, not {args.port}")
    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, not {args.threads}")
    torch.set_num_threads(args.threads)
    hosts, any_ip = hosts_for_bind(args.host, args.allow_host)
    app = create_app(run, allowed_hosts=hosts, any_ip_host=any_ip)

    sock = _listen(args.host, args.port, socket)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"cnnlab: serving {run} on http://{shown}:{port}/  (API: /docs; Ctrl-C stops)", flush=True)
    if not _is_loopback(host):
        print(
            f"cnnlab: warning: listening on {host}: other machines can reach this server",
            file=sys.stderr,
        )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning" if args.quiet else "info",
        access_log=not args.quiet,
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


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
