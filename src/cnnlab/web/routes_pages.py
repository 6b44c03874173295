"""The pages (Draw, Network, Shapes, the API's /docs) and their static files: a fixed set read
from the package folders at start-up, so no request path ever reaches the file system.

/docs is Swagger UI from the `fastapi-offline` package's copy of its files, served among the
fixed static files: the page needs no internet. Its one inline script is allowed by its hash.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from cnnlab.web.deps import SettingsDep

# name -> media type; every file the pages load
STATIC_FILES = {
    "index.html": "text/html",
    "shapes.html": "text/html",
    "network.html": "text/html",
    "network.js": "text/javascript",
    "common.js": "text/javascript",
    "app.js": "text/javascript",
    "shapes.js": "text/javascript",
    "train.html": "text/html",
    "runs.html": "text/html",
    "charts.js": "text/javascript",
    "train.js": "text/javascript",
    "runs.js": "text/javascript",
    "style.css": "text/css",
}
PAGES = {
    "/": "index.html",
    "/network": "network.html",
    "/shapes": "shapes.html",
    "/train": "train.html",
    "/runs": "runs.html",
}
# Swagger UI's files, from the fastapi_offline package
DOCS_FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon.png": "image/png",
}
MEDIA_TYPES = {**STATIC_FILES, **DOCS_FILES}

router = APIRouter(include_in_schema=False)


def read_static() -> dict[str, bytes]:
    """The pages' files, read once from the package's own static folder."""
    folder = resources.files("cnnlab.web") / "static"
    docs = resources.files("fastapi_offline") / "static"
    return {
        **{name: (folder / name).read_bytes() for name in STATIC_FILES},
        **{name: (docs / name).read_bytes() for name in DOCS_FILES},
    }


@cache
def docs_page() -> tuple[bytes, str]:
    """The Swagger UI page over /openapi.json and its Content-Security-Policy."""
    from fastapi.openapi.docs import get_swagger_ui_html

    html = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="cnnlab API",
        swagger_js_url="/static/swagger-ui-bundle.js",
        swagger_css_url="/static/swagger-ui.css",
        swagger_favicon_url="/static/favicon.png",
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from swagger.io
    ).body
    inline = re.findall(rb"<script>(.*?)</script>", html, re.S)
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'" for s in inline
    )
    csp = (  # Swagger UI sets inline styles and draws data: images
        f"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        f"script-src 'self' {hashes}; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )
    return html, csp


@router.api_route("/docs", methods=["GET", "HEAD"])
async def docs() -> Response:
    """Swagger UI, served from the fixed static files."""
    html, csp = docs_page()
    return Response(html, media_type="text/html", headers={"Content-Security-Policy": csp})


def _page_route(path: str, file: str) -> None:
    """GET and HEAD of one page."""

    async def page(settings: SettingsDep) -> Response:
        return Response(settings.static[file], media_type=STATIC_FILES[file])

    router.add_api_route(path, page, methods=["GET", "HEAD"], name=f"page {file}")


for _path, _file in PAGES.items():
    _page_route(_path, _file)


@router.api_route("/static/{name}", methods=["GET", "HEAD"])
async def static_file(name: str, settings: SettingsDep) -> Response:
    """One of the fixed static files, or 404."""
    if name not in settings.static:  # a fixed set: no request path ever reaches the file system
        raise HTTPException(404, f"no static file {name!r}")
    return Response(settings.static[name], media_type=MEDIA_TYPES.get(name, "application/octet-stream"))
