"""The lab: a FastAPI app serving many run folders, its REST API and the pages that use it.

    GET  /, /network, /shapes  the pages (static/: plain HTML, CSS and JS modules, no CDN)
    GET  /api/runs             the runs offered;  GET /api/model?run=  one run's card
    POST /api/predict?run=     image -> probabilities and the 28x28 input (moved, turned, zoomed)
    POST /api/explain?run=     image -> the prediction and feature maps (layers=every: every
                               layer, its shape, parameters, receptive field: the Network page)
    GET  /api/shift-test?run=  accuracy on test images moved right and down
    GET  /api/shapes/...       the lesson's conv/pool arithmetic (`cnnlab.shapes`)
    GET  /healthz, /docs       liveness; Swagger UI from local files (/openapi.json: the document)

One router per concern (routes_*.py); what they share (the runs registry, the work limiter,
the settings) lives on `app.state` and reaches them through `Depends` (deps.py).

Hardening: a Host the server does not answer to and an Origin other than its own get 403
(`middleware.HostOriginMiddleware`); bodies over 5 MB get 413 before they are read whole and
a stalled body 408 (`middleware.BodyLimitMiddleware`); uploads are decoded with the format
allow-list and web pixel cap of `cnnlab.data.images`; at most a few decodes and inferences
run at once, the others wait briefly, then get 503 (`limits.WorkLimiter`); every error is a
JSON `{"error": message}` (errors.py); static files are a fixed set read at start-up; run
names are looked up among the listed runs, never used as paths (run_registry.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from fastapi import FastAPI

from cnnlab import __version__
from cnnlab.data.images import WEB_MAX_PIXELS
from cnnlab.web import routes_inspect, routes_jobs
from cnnlab.web.limits import BUSY_WAIT_S, WorkLimiter, default_in_flight
from cnnlab.web.middleware import BODY_READ_TIMEOUT_S, MAX_BODY_BYTES

RunPaths = str | os.PathLike | Sequence[str | os.PathLike] | None


def create_app(
    run_dir: RunPaths = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    *,
    runs_dir: str | os.PathLike | None = None,
    cache_size: int = 4,
    data_root: str | os.PathLike | None = None,
    allowed_hosts: Iterable[str] = (),
    any_ip_host: bool = False,
    max_pixels: int = WEB_MAX_PIXELS,
    max_in_flight: int | None = None,
    busy_wait_s: float = BUSY_WAIT_S,
    body_read_timeout_s: float = BODY_READ_TIMEOUT_S,
    jobs=None,
) -> FastAPI:
    """The web app. `run_dir`: one run folder or several (the first is the default run);
    `runs_dir`: a folder whose run folders are offered too; `cache_size`: loaded runs kept;
    `data_root`: where the shift test finds test images. The rest are the limits documented
    in `middleware` and `limits` (`allowed_hosts`/`any_ip_host`: Hosts answered besides
    loopback; `max_pixels`: the upload pixel cap; `max_in_flight`, `busy_wait_s`: the work
    limiter; `max_body_bytes`, `body_read_timeout_s`: the body limit); `jobs`: how training
    jobs run (`cnnlab.web.jobs.JobSettings`; default: loopback, one at a time).

    Raises:
        CheckpointError: the default run cannot be loaded.
        ConfigError: no run to serve, or a bad limit.
    """
    from cnnlab.web import routes_pages, routes_predict, routes_runs, routes_shapes, setup
    from cnnlab.web.deps import Settings
    from cnnlab.web.run_registry import RunRegistry

    given = [] if run_dir is None else [run_dir] if isinstance(run_dir, str | os.PathLike) else run_dir
    registry = RunRegistry(given, runs_dir, cache_size)
    registry.get()  # the default run: a broken one fails at start-up, not at the first request
    app = FastAPI(
        title="cnnlab",
        version=__version__,
        description=setup.DESCRIPTION,
        docs_url=None,  # routes_pages serves /docs from local files: no CDN
        redoc_url=None,
    )
    app.state.registry = registry
    app.state.limiter = WorkLimiter(max_in_flight or default_in_flight(), busy_wait_s)
    app.state.settings = Settings(
        max_pixels, data_root, routes_pages.read_static(), routes_runs.ShiftCache()
    )
    setup.add_middleware(app, max_body_bytes, body_read_timeout_s, allowed_hosts, any_ip_host)
    setup.add_error_handlers(app)
    routes_jobs.install(app, jobs)
    routers = (routes_runs, routes_inspect, routes_jobs, routes_predict, routes_shapes, routes_pages)
    for router in routers:
        app.include_router(router.router)
    return app
