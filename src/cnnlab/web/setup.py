"""The app's middleware stack and error handlers, in the order they must wrap it."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import FastAPI

from cnnlab.web.errors import add_error_handlers
from cnnlab.web.middleware import BodyLimitMiddleware, HeadersMiddleware, HostOriginMiddleware
from cnnlab.web.routes_pages import PAGES

__all__ = ["DESCRIPTION", "add_error_handlers", "add_middleware"]

DESCRIPTION = (
    "Draw a digit and watch your own trained models read it: probabilities, the 28x28 input "
    "each sees, every layer's feature maps, the shift test, the smallest nudge that fools "
    "them, and the lesson's conv/pool shape arithmetic."
)
# The pages load only their own files and the data: URLs the API answers with.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def add_middleware(
    app: FastAPI, max_bytes: int, read_timeout_s: float, hosts: Iterable[str], any_ip: bool
) -> None:
    """Response headers outermost (403s and 413s get them too), then Host/Origin, then body limit."""
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_bytes, read_timeout_s=read_timeout_s)
    app.add_middleware(HostOriginMiddleware, allowed_hosts=hosts, any_ip=any_ip)
    app.add_middleware(
        HeadersMiddleware,
        all_paths={"X-Content-Type-Options": "nosniff"},
        page={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"},
        page_paths=("/", "/static/", *[p for p in PAGES if p != "/"]),
    )
