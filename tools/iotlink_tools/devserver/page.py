"""The devserver's web page: devices, their latest telemetry, and a switch per allowed pin.

`/` serves static/index.html and `/static/{name}` its script and style: the page's own routes,
the only ones the devserver adds to ThingsBoard's. The page itself talks to ThingsBoard's REST
API (login, devices, latest telemetry, client attributes, two-way RPC) and nothing else.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING

from .web import Request, Response, not_found

if TYPE_CHECKING:
    from .core import DevServer

STATIC = Path(__file__).with_name("static")


def _static(name: str) -> Response:
    # The name is decoded (%2F is a slash): only a file whose real path is in STATIC is served.
    path = (STATIC / name).resolve()
    if name.startswith(".") or not path.is_relative_to(STATIC.resolve()) or not path.is_file():
        return not_found(f"/static/{name}")
    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if ctype.startswith("text/") or ctype.endswith("javascript"):
        ctype += ";charset=UTF-8"
    return Response(200, path.read_bytes(), ctype, {"Cache-Control": "no-cache"})


def register(srv: "DevServer") -> None:
    def index(req: Request) -> Response:
        return _static("index.html")

    def static(req: Request) -> Response:
        return _static(req.params["name"])

    srv.router.add("GET", "/", index, for_browsers=True)
    srv.router.add("GET", "/static/{name}", static, for_browsers=True)
