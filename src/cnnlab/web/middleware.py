"""Pure ASGI middleware: who may ask (Host and Origin), a request body limit enforced before
the body is read whole, and fixed response headers.

The body limit makes two checks, because a client may lie or say nothing: a declared
Content-Length over the limit is refused at once, before a byte of the body is read; a body
sent without one (chunked) or longer than declared is counted as it streams in, and refused as
soon as the count passes the limit. Either way the answer is 413 with a JSON body
`{"error": message}`, the endpoint never holds more than the limit in memory, and the rest of
the body (up to `DRAIN_BYTES`) is read and dropped after the answer, so that a client still
sending reads the 413. A body that stops arriving for `BODY_READ_TIMEOUT_S` gets 408.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 5 * 1024 * 1024  # a phone photo fits; a drawn 280x280 canvas is ~10 KB
BODY_READ_TIMEOUT_S = 10.0  # a client that stalls mid-body longer than this is answered 408
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
DRAIN_BYTES = 32 * 1024 * 1024  # a refused body is read (and discarded) up to this, then cut off


class BodyTooLarge(Exception):
    """Raised inside `receive` when the streamed body passes the limit."""


class BodyReadTimeout(Exception):
    """Raised inside `receive` when the client sends no more of its body for too long."""


class BodyLimitMiddleware:
    """Refuse HTTP request bodies over `max_bytes` with 413 JSON, without reading them whole,
    and bodies that stall for `read_timeout_s` with 408 JSON.

    After a 413 the rest of the body (up to `drain_bytes` in all) is read and thrown away, so
    that a client still sending reads the answer instead of a reset connection.

    Args:
        app: the ASGI app to protect.
        max_bytes: the largest body accepted, in bytes.
        read_timeout_s: the longest wait for the next part of a body, in seconds.
        drain_bytes: the most bytes of a refused body read (and discarded) before closing.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int = MAX_BODY_BYTES,
        read_timeout_s: float = BODY_READ_TIMEOUT_S,
        drain_bytes: int = DRAIN_BYTES,
    ):
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s
        self.drain_bytes = drain_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is None:
            await _send_error(send, 400, "Content-Length is not a whole number of bytes")
            return
        if declared > self.max_bytes:
            # a client waiting for "100 Continue" sends nothing unless asked: do not ask
            drain = declared <= self.drain_bytes and not _header(scope, b"expect")
            await self._refuse(
                send, receive if drain else None, self._message(f"{declared} bytes declared")
            )
            return

        received, body_done, started = 0, False, False

        async def counting_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # the body is complete: what follows is a wait for disconnect
                return await receive()
            message = await self._receive(receive)
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
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
        except (BodyTooLarge, BodyReadTimeout) as e:
            if started:  # too late to answer: let the server drop the connection
                raise
            if isinstance(e, BodyReadTimeout):
                await _send_error(send, 408, self._timeout_message())
            else:
                more = self.drain_bytes - received
                message = self._message(f"more than {self.max_bytes} bytes sent")
                await self._refuse(send, receive if more > 0 else None, message, more)

    async def _receive(self, receive: Receive) -> Message:
        """The next message, or BodyReadTimeout when the client stalls."""
        try:
            async with asyncio.timeout(self.read_timeout_s):
                return await receive()
        except TimeoutError:
            raise BodyReadTimeout from None

    async def _refuse(self, send: Send, receive: Receive | None, message: str, budget: int = 0) -> None:
        """A 413; with `receive`, read and discard the rest of the body before ending it."""
        if receive is None:
            await _send_error(send, 413, message)
            return
        await _send_error(send, 413, message, more_body=True)
        budget = budget or self.drain_bytes
        try:
            while budget > 0:
                got = await self._receive(receive)
                budget -= len(got.get("body", b""))
                if got["type"] != "http.request" or not got.get("more_body", False):
                    break
        except BodyReadTimeout:
            pass
        await send({"type": "http.response.body", "body": b""})

    def _message(self, what: str) -> str:
        mb = self.max_bytes / (1024 * 1024)
        return f"request body too large ({what}); the limit is {self.max_bytes} bytes ({mb:g} MB)"

    def _timeout_message(self) -> str:
        return (
            f"request body incomplete: nothing more received for {self.read_timeout_s:g} s; "
            "send the whole body at once"
        )


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (latin-1), or None when absent."""
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _content_length(scope: Scope) -> int | None:
    """The declared Content-Length (0 when absent), or None when it is not a number."""
    text = _header(scope, b"content-length")
    if text is None:
        return 0
    text = text.strip()
    return int(text) if text.isdigit() else None


async def _send_error(
    send: Send, status: int, message: str, headers: dict[str, str] | None = None, more_body: bool = False
) -> None:
    """A JSON error response; the connection is closed after it."""
    body = json.dumps({"error": message}).encode()
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": more_body})


class HostOriginMiddleware:
    """Refuse with 403 JSON a request whose Host is not a name this server answers to (DNS
    rebinding: a hostile page's own name resolved to this machine), or whose Origin is present
    and is not the server's own (another page posting to it: forms and multipart need no
    preflight). Requests without Origin (curl, scripts) pass.

    Args:
        app: the ASGI app to protect.
        allowed_hosts: host names or IP addresses (any port) besides `LOOPBACK_HOSTS`.
        any_ip: also accept any IP address as Host (a server bound to every interface is
            reached by addresses it cannot list; a rebinding attack always uses a name).
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] = (), any_ip: bool = False):
        self.app = app
        self.allowed = {_bare_host(h) for h in (*LOOPBACK_HOSTS, *allowed_hosts)}
        self.any_ip = any_ip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host, origin = _header(scope, b"host"), _header(scope, b"origin")
        if host is not None and not self._host_allowed(host):
            names = ", ".join(sorted(self.allowed))
            await _send_error(
                send,
                403,
                f"Host {host!r} is not served here (it answers to {names}); "
                "open the page by one of those, or start `cnnlab serve` with --allow-host",
            )
            return
        if origin is not None and (host is None or not _same_origin(origin, scope.get("scheme"), host)):
            await _send_error(
                send,
                403,
                f"cross-origin request from {origin!r} refused: "
                "use the page this server serves, or send no Origin header",
            )
            return
        await self.app(scope, receive, send)

    def _host_allowed(self, host: str) -> bool:
        name = _bare_host(host.rpartition(":")[0] if _has_port(host) else host)
        if _has_port(host) and not host.rpartition(":")[2].isdigit():
            return False
        if name in self.allowed:
            return True
        return self.any_ip and _is_ip(name)


def _has_port(host: str) -> bool:
    """Whether a Host header value ends in :PORT (an IPv6 literal is in brackets)."""
    return ":" in host.rpartition("]")[2]


def _bare_host(name: str) -> str:
    """A host name or address, lower case, without IPv6 brackets."""
    return name.strip().lower().removeprefix("[").removesuffix("]")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _same_origin(origin: str, scheme: str | None, host: str) -> bool:
    """Whether an Origin header names scheme://host as the client reached this server."""
    default = {"http": ":80", "https": ":443"}.get(scheme or "http", "")
    own = f"{scheme or 'http'}://{host.strip().lower()}".removesuffix(default)
    return origin.strip().lower().removesuffix(default) == own


def hosts_for_bind(host: str, extra: Iterable[str] = ()) -> tuple[list[str], bool]:
    """The Host names a server bound to `host` answers to, and whether any IP address is one:
    for a wildcard bind (0.0.0.0, ::) the machine's own names and any address."""
    names = [host, *extra]
    wildcard = _is_ip(host) and ipaddress.ip_address(host).is_unspecified
    if wildcard:
        names += [socket.gethostname(), socket.getfqdn()]
    return names, wildcard


class HeadersMiddleware:
    """Add fixed response headers: `all_paths` to every response, `page` to those of the page
    (its HTML, scripts and styles), where a Content-Security-Policy belongs."""

    def __init__(
        self,
        app: ASGIApp,
        all_paths: dict[str, str],
        page: dict[str, str],
        page_paths: tuple[str, ...] = ("/", "/static/"),
    ):
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
