"""Who may start and stop jobs: the job API's dependencies.

On loopback (the default bind) no token is needed: only this machine's users can reach the
server, and the Host/Origin middleware refuses other sites' pages. On any other `--host`,
`cnnlab serve` makes a token (`secrets.token_urlsafe`) and prints a `/login?token=...` URL
once; the token is accepted as `Authorization: Bearer TOKEN` or as the HttpOnly, SameSite=Strict
cookie that URL sets. Without it the job API answers 401. A POST must be JSON
(`Content-Type: application/json`, else 415), which an HTML form cannot send.
"""

from __future__ import annotations

import secrets

from fastapi import HTTPException, Request

COOKIE = "cnnlab_token"


def job_token(request: Request) -> str | None:
    """The token this server's job API needs, or None (loopback)."""
    return request.app.state.jobs.settings.token


def token_ok(request: Request, token: str) -> bool:
    """Whether the request carries the token, as a Bearer header or the login cookie."""
    header = request.headers.get("authorization", "")
    given = (
        header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
    )
    return same_token(given, token)


def same_token(given: str, token: str) -> bool:
    """Constant-time comparison of a given token with the server's."""
    return bool(given) and secrets.compare_digest(given.encode(), token.encode())


def require_token(request: Request) -> None:
    """401 unless the server needs no token or the request carries it."""
    token = job_token(request)
    if token is not None and not token_ok(request, token):
        raise HTTPException(
            401,
            "this server is not on loopback: open the /login?token=... URL that cnnlab serve printed, "
            "or send Authorization: Bearer TOKEN",
            headers={"WWW-Authenticate": "Bearer"},
        )


def require_json(request: Request) -> None:
    """415 for a POST whose body is not declared JSON (HTML forms cannot declare it)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method == "POST" and kind != "application/json":
        raise HTTPException(
            415, f"send the job as JSON (Content-Type: application/json), not {kind[:60]!r}"
        )
