"""The devserver's web page: devices, their telemetry as charts, their pins and shared attributes.

`/` serves static/index.html, `/static/{name}` its own files and `/static/vendor/{name}` the
chart library (uPlot), which `npm ci` installs into static/node_modules from the pinned
static/package-lock.json: the page loads nothing from the internet. These are the only routes
the devserver adds to ThingsBoard's; the page itself talks to ThingsBoard's REST API only.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING

from .web import Request, Response, not_found

if TYPE_CHECKING:
    from .core import DevServer

STATIC = Path(__file__).with_name("static")
PAGE_FILES = ("index.html", "app.js", "style.css", "favicon.svg")
# The third-party files the page uses, by the name it asks for: a fixed list, read-only.
VENDOR = {
    "uPlot.iife.min.js": STATIC / "node_modules" / "uplot" / "dist" / "uPlot.iife.min.js",
    "uPlot.min.css": STATIC / "node_modules" / "uplot" / "dist" / "uPlot.min.css",
}


def _file(path: Path, url: str) -> Response:
    if not path.is_file():
        return not_found(url)
    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if ctype.startswith("text/") or ctype.endswith("javascript") or ctype.endswith("+xml"):
        ctype += ";charset=UTF-8"
    return Response(200, path.read_bytes(), ctype, {"Cache-Control": "no-cache"})


def register(srv: "DevServer") -> None:
    def index(req: Request) -> Response:
        return _file(STATIC / "index.html", "/")

    def static(req: Request) -> Response:
        name = req.params["name"]
        return _file(STATIC / name, req.path) if name in PAGE_FILES else not_found(req.path)

    def vendor(req: Request) -> Response:
        path = VENDOR.get(req.params["name"])
        return _file(path, req.path) if path else not_found(req.path)

    # Only names on the fixed lists are served: no part of a request's path reaches the disk.
    srv.router.add("GET", "/", index, for_browsers=True)
    srv.router.add("GET", "/static/{name}", static, for_browsers=True)
    srv.router.add("GET", "/static/vendor/{name}", vendor, for_browsers=True)
