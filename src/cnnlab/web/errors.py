"""Every error the app answers is one JSON line `{"error": message}` with a 4xx status (a bug is
a 500 of the same shape); never a traceback."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cnnlab.errors import CnnlabError, ConfigError, DatasetNotFoundError, ImageInputError, ShapeError
from cnnlab.web.limits import RETRY_AFTER_S, ServerBusy
from cnnlab.web.run_registry import RunNotFound
from cnnlab.web.schemas import ErrorBody

# ImageInputError.reason -> status: the body is empty (400), is not an image we read (415),
# or is an image we cannot use: truncated, over the pixel cap, blank (422).
IMAGE_ERROR_STATUS = {"empty": 400, "unsupported": 415}
ERRORS = {s: {"model": ErrorBody} for s in (400, 403, 404, 408, 413, 415, 422, 503)}
# a named error -> its status (first match wins; CnnlabError's other kinds are 422)
STATUS_OF = ((RunNotFound, 404), (DatasetNotFoundError, 404), (ConfigError, 400), (ShapeError, 400))


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    """The JSON error answer."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def add_error_handlers(app: FastAPI) -> None:
    """Every error becomes `{"error": message}`; never a traceback."""

    @app.exception_handler(ImageInputError)
    async def image_error(_request: Request, exc: ImageInputError) -> JSONResponse:
        return error(IMAGE_ERROR_STATUS.get(exc.reason, 422), str(exc))

    @app.exception_handler(ServerBusy)
    async def busy_error(_request: Request, exc: ServerBusy) -> JSONResponse:
        return error(503, str(exc), {"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(CnnlabError)
    async def cnnlab_error(_request: Request, exc: CnnlabError) -> JSONResponse:
        status = next((s for kind, s in STATUS_OF if isinstance(exc, kind)), 422)
        return error(status, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return error(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        # A bug, not the client's fault: 500, but still one JSON line and no traceback sent
        # (the server's log has it).
        return error(500, f"internal error ({type(exc).__name__}); the server log has details")
