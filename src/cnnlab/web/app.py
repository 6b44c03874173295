"""The draw-a-digit web app: a FastAPI REST API over one run folder, and the page that uses it.

    GET  /                 the page (static/index.html, app.js, style.css: no build step, no CDN)
    POST /api/predict      image -> top class, every class's probability, the 28x28 input
    POST /api/explain      image -> the prediction and the first conv layer's feature maps
    GET  /api/model        the model card: model, dataset, test accuracy, parameters
    GET  /healthz          liveness
    GET  /docs             OpenAPI (Swagger UI; /openapi.json is the document itself)

Preprocessing and inference are `cnnlab.predict.Predictor` and `cnnlab.explain.feature_maps`,
as for `cnnlab predict` and `cnnlab explain`: the page sees exactly what the CLI sees.

Hardening: a Host the server does not answer to and an Origin other than its own get 403
(`middleware.HostOriginMiddleware`: DNS rebinding, other pages posting); request bodies over
5 MB are refused with 413 before they are read whole, and a body that stalls gets 408
(`middleware.BodyLimitMiddleware`); what an upload is gets decided by decoding it, with the
format allow-list of `cnnlab.data.images` and its lower web pixel cap (`WEB_MAX_PIXELS`); at
most a few decodes and inferences run at once, the others wait briefly, then get 503
(`limits.WorkLimiter`); every error is a JSON `{"error": message}`
with a 4xx status (a bug would be a 500 with the same shape, never a traceback); static files
are a fixed set read from the package folder at start-up, so no request path reaches the file
system; the predictor is immutable and explain hooks a private copy of the model, so requests
run concurrently in the thread pool without sharing mutable state.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from importlib import resources
from typing import Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from cnnlab import __version__
from cnnlab.data.images import WEB_MAX_PIXELS, open_image
from cnnlab.errors import CnnlabError, ConfigError, ImageInputError
from cnnlab.web.limits import BUSY_WAIT_S, RETRY_AFTER_S, ServerBusy, WorkLimiter, default_in_flight
from cnnlab.web.middleware import (
    BODY_READ_TIMEOUT_S,
    MAX_BODY_BYTES,
    BodyLimitMiddleware,
    HeadersMiddleware,
    HostOriginMiddleware,
)
from cnnlab.web.payload import REQUEST_BODY, feature_map_urls, input_data_url, read_image_bytes
from cnnlab.web.schemas import ErrorBody, ExplainResponse, Health, ModelCard, PredictResponse

STATIC_FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
# The page loads only its own files and the data: URLs the API answers with.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
# ImageInputError.reason -> status: the body is empty (400), is not an image we read (415),
# or is an image we cannot use: truncated, over the pixel cap, blank (422).
IMAGE_ERROR_STATUS = {"empty": 400, "unsupported": 415}
ERRORS = {s: {"model": ErrorBody} for s in (400, 403, 408, 413, 415, 422, 503)}


def create_app(
    run_dir: str | os.PathLike,
    max_body_bytes: int = MAX_BODY_BYTES,
    *,
    allowed_hosts: Iterable[str] = (),
    any_ip_host: bool = False,
    max_pixels: int = WEB_MAX_PIXELS,
    max_in_flight: int | None = None,
    busy_wait_s: float = BUSY_WAIT_S,
    body_read_timeout_s: float = BODY_READ_TIMEOUT_S,
) -> FastAPI:
    """The web app serving one run folder.

    Args:
        run_dir: a run folder (from `cnnlab train --out`), loaded once at start-up.
        max_body_bytes: the largest request body accepted (default: 5 MB).
        allowed_hosts: Host names it answers to besides localhost, 127.0.0.1 and ::1 (any
            port); other Hosts get 403.
        any_ip_host: also answer to any IP address as Host (for a 0.0.0.0 or :: bind).
        max_pixels: the largest upload decoded, in pixels (default: 2048x2048; a larger JPEG
            is decoded at a reduced scale when that fits).
        max_in_flight: image decodes + inferences at once (default: two per core, at most 8).
        busy_wait_s: how long a request waits for one of those before 503 (default: 5 s).
        body_read_timeout_s: a body that stalls this long gets 408 (default: 10 s).

    Raises:
        CheckpointError: the run folder cannot be loaded.
        ConfigError: max_in_flight below 1 or a negative busy_wait_s.
    """
    from cnnlab.explain import conv_and_pool_layers
    from cnnlab.models import count_parameters
    from cnnlab.predict import Predictor
    from cnnlab.runs import load_run

    run = load_run(run_dir)
    predictor = Predictor(run)
    layers = conv_and_pool_layers(predictor.model)
    convs = [ly for ly in layers if ly.kind == "conv"]
    card = _model_card(run, count_parameters(predictor.model), [ly.name for ly in convs])
    static = _read_static()
    limiter = WorkLimiter(max_in_flight or default_in_flight(), busy_wait_s)

    app = FastAPI(
        title="cnnlab",
        version=__version__,
        description=f"Draw a digit, see what a {run.model_name} trained on {run.dataset} makes "
        "of it: probabilities, the 28x28 input it saw, and its feature maps.",
    )
    _add_middleware(app, max_body_bytes, body_read_timeout_s, allowed_hosts, any_ip_host)
    _add_error_handlers(app)
    _add_page_routes(app, card, run.model_name, static)

    def decode_and_predict(data: bytes, name: str):
        # All classes, so that `probabilities` has every one; `top` is cut from them.
        img = open_image(data, name, max_pixels=max_pixels)
        (pred,) = predictor.predict([img], top=len(predictor.classes), names=[name])
        return pred

    def predict_dict(data: bytes, name: str, top: int) -> dict:
        pred = decode_and_predict(data, name)
        return _prediction_json(pred, predictor.classes, top)

    @app.post(
        "/api/predict",
        response_model=PredictResponse,
        responses=ERRORS,
        openapi_extra={"requestBody": REQUEST_BODY},
        summary="Classify an image",
    )
    async def predict(
        request: Request, top: int = Query(3, ge=1, le=1000, description="classes in `top`")
    ) -> dict:
        """Preprocess the image as the run's dataset was made (for MNIST: white ink on black,
        fitted into 20x20, centred by mass in 28x28) and classify it."""
        data, name = await read_image_bytes(request)
        return await limiter.run(predict_dict, data, name, top)

    def explain_dict(data: bytes, name: str, which: str, top: int) -> dict:
        from cnnlab.explain import feature_maps
        from cnnlab.preprocess import to_model_input

        pred = decode_and_predict(data, name)
        chosen = convs[:1] if which == "first" else layers
        out = {"prediction": _prediction_json(pred, predictor.classes, top), "layers": [], "note": None}
        if not chosen:
            out["note"] = f"{run.model_name} has no convolution layers: no feature maps to show"
            return out
        x = to_model_input(pred.input, predictor.mean, predictor.std)  # (1, C, H, W)
        maps = feature_maps(predictor.model, x, [ly.name for ly in chosen])
        for ly in chosen:
            m = maps[ly.name][0]  # (channels, h, w)
            urls, (lo, hi) = feature_map_urls(m)
            out["layers"].append(
                {
                    "name": ly.name,
                    "kind": ly.kind,
                    "description": ly.description,
                    "shape": list(m.shape),
                    "range": [lo, hi],
                    "maps": urls,
                }
            )
        return out

    @app.post(
        "/api/explain",
        response_model=ExplainResponse,
        responses=ERRORS,
        openapi_extra={"requestBody": REQUEST_BODY},
        summary="Feature maps for an image",
    )
    async def explain(
        request: Request,
        layers: Literal["first", "all"] = Query(
            "first", description="first conv layer, or all conv and pooling layers"
        ),
        top: int = Query(3, ge=1, le=1000, description="classes in `prediction.top`"),
    ) -> dict:
        """The prediction plus what the convolutions computed: each channel of the chosen
        layers' outputs as a small grey PNG (one brightness scale per layer)."""
        data, name = await read_image_bytes(request)
        return await limiter.run(explain_dict, data, name, layers, top)

    return app


def _add_middleware(
    app: FastAPI, max_bytes: int, read_timeout_s: float, hosts: Iterable[str], any_ip: bool
) -> None:
    """Response headers outermost (403s and 413s get them too), then Host/Origin, then body limit."""
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_bytes, read_timeout_s=read_timeout_s)
    app.add_middleware(HostOriginMiddleware, allowed_hosts=hosts, any_ip=any_ip)
    app.add_middleware(
        HeadersMiddleware,
        all_paths={"X-Content-Type-Options": "nosniff"},
        page={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"},
    )


def _add_page_routes(app: FastAPI, card: dict, model_name: str, static: dict[str, bytes]) -> None:
    """The model card, liveness, the page and its static files (GET and HEAD)."""

    @app.get("/api/model", response_model=ModelCard, summary="The model card")
    async def model_card() -> dict:
        return card

    @app.get("/healthz", response_model=Health, summary="Liveness")
    async def healthz() -> dict:
        return {"status": "ok", "model": model_name}

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def index() -> Response:
        return Response(static["index.html"], media_type=STATIC_FILES["index.html"])

    @app.api_route("/static/{name}", methods=["GET", "HEAD"], include_in_schema=False)
    async def static_file(name: str) -> Response:
        if name not in static:  # a fixed set: no request path ever reaches the file system
            raise HTTPException(404, f"no static file {name!r}")
        return Response(static[name], media_type=STATIC_FILES[name])


def _read_static() -> dict[str, bytes]:
    """The page's files, read once from the package's own static folder."""
    folder = resources.files("cnnlab.web") / "static"
    return {name: (folder / name).read_bytes() for name in STATIC_FILES}


def _prediction_json(pred, classes: tuple[str, ...], top: int) -> dict:
    """A `predict.Prediction` (made with every class in `top`) as the API's JSON."""
    probabilities = dict(pred.top)
    pre = pred.preprocessed
    return {
        "label": pred.label,
        "probability": pred.probability,
        "top": [{"class": c, "probability": p} for c, p in pred.top[:top]],
        "probabilities": {c: probabilities[c] for c in classes},
        "input": input_data_url(pred.input),
        "inverted": bool(pre.inverted) if pre else False,
        "thickened": int(pre.thickened) if pre else 0,
    }


def _model_card(run, parameters: int, conv_layers: list[str]) -> dict:
    metrics = run.metrics if isinstance(run.metrics, list) else []
    last = metrics[-1] if metrics and isinstance(metrics[-1], dict) else {}
    acc = last.get("test_acc")
    return {
        "run": run.path.name,
        "model": run.model_name,
        "model_kwargs": run.model_kwargs,
        "dataset": run.dataset,
        "classes": list(run.classes),
        "input_shape": list(run.input_shape),
        "parameters": parameters,
        "test_accuracy": float(acc) if isinstance(acc, int | float) else None,
        "epochs": len(metrics) or None,
        "conv_layers": conv_layers,
    }


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    """Every error becomes `{"error": message}`; never a traceback."""

    @app.exception_handler(ImageInputError)
    async def image_error(_request: Request, exc: ImageInputError) -> JSONResponse:
        return _error(IMAGE_ERROR_STATUS.get(exc.reason, 422), str(exc))

    @app.exception_handler(ServerBusy)
    async def busy_error(_request: Request, exc: ServerBusy) -> JSONResponse:
        return _error(503, str(exc), {"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(ConfigError)
    async def config_error(_request: Request, exc: ConfigError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(CnnlabError)
    async def cnnlab_error(_request: Request, exc: CnnlabError) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return _error(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        # A bug, not the client's fault: 500, but still one JSON line and no traceback sent
        # (the server's log has it).
        return _error(500, f"internal error ({type(exc).__name__}); the server log has details")
