"""The pages (Draw, Shapes) and their static files: a fixed set read from the package
folder at start-up, so no request path ever reaches the file system."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from cnnlab.web.deps import SettingsDep

# name -> media type; every file the pages load
STATIC_FILES = {
    "index.html": "text/html",
    "shapes.html": "text/html",
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
PAGES = {"/": "index.html", "/shapes": "shapes.html", "/train": "train.html", "/runs": "runs.html"}

router = APIRouter(include_in_schema=False)


def read_static() -> dict[str, bytes]:
    """The pages' files, read once from the package's own static folder."""
    folder = resources.files("cnnlab.web") / "static"
    return {name: (folder / name).read_bytes() for name in STATIC_FILES}


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
    return Response(settings.static[name], media_type=STATIC_FILES.get(name, "application/octet-stream"))
