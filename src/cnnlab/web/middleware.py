"""Pure ASGI middleware: a request body limit enforced before the body is read whole, and
fixed response headers.

The body limit makes two checks, because a client may lie or say nothing: a declared
Content-Length over the limit is refused at once, before a byte of the body is read; a body
sent without one (chunked) or longer than declared is counted as it streams in, and refused as
soon as the count passes the limit. Either way the answer is 413 with a JSON body
`{"error": message}`, and the endpoint never holds more than the limit in memory.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 5 * 1024 * 1024  # a phone photo fits; a drawn 280x280 canvas is ~10 KB


class BodyTooLarge(Exception):
    """Raised inside `receive` when the streamed body passes the limit."""


class BodyLimitMiddleware:
    """Refuse HTTP request bodies over `max_bytes` with 413 JSON, without reading them whole.

    Args:
        app: the ASGI app to protect.
        max_bytes: the largest body accepted, in bytes.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is None:
            await _send_error(send, 400, "Content-Length is not a whole number of bytes")
            return
        if declared > self.max_bytes:
            await _send_error(send, 413, self._message(f"{declared} bytes declared"))
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:  # too late to answer: let the server drop the connection
                raise
            await _send_error(send, 413, self._message(f"more than {self.max_bytes} bytes sent"))

    def _message(self, what: str) -> str:
        mb = self.max_bytes / (1024 * 1024)
        return f"request body too large ({what}); the limit is {self.max_bytes} bytes ({mb:g} MB)"


def _content_length(scope: Scope) -> int | None:
    """The declared Content-Length (0 when absent), or None when it is not a number."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return 0


async def _send_error(send: Send, status: int, message: str) -> None:
    """A complete JSON error response; the connection is closed after it."""
    body = json.dumps({"error": message}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class HeadersMiddleware:
    """Add fixed response headers: `all_paths` to every response, `page` to those of the page
    (its HTML, scripts and styles), where a Content-Security-Policy belongs."""

    def __init__(self, app: ASGIApp, all_paths: dict[str, str], page: dict[str, str],
                 page_paths: tuple[str, ...] = ("/", "/static/")):  # fmt: skip
        self.app = app
        self.all_paths = [(k.lower().encode(), v.encode()) for k, v in all_paths.items()]
        self.page = [(k.lower().encode(), v.encode()) for k, v in page.items()]
        self.page_paths = page_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        is_page = path == "/" or any(path.startswith(p) for p in self.page_paths if p != "/")
        extra = self.all_paths + (self.page if is_page else [])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k for k, _ in extra}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = dict(message, headers=headers + extra)
            await send(message)

        await self.app(scope, receive, send_with_headers)
