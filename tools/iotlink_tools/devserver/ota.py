"""Chunk faults for tests: one firmware/software chunk answers an error status, as a loaded
ThingsBoard does mid-download (packages themselves come through tb_ota.py's REST API or the
DevServer Python API, and devices download them through tb_device.py's routes):

    fail_chunk(server, "FIRMWARE", 2, status=500)           # every request for chunk 2
    fail_chunk(server, "FIRMWARE", 1, status=503, times=1)   # only the first one
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .web import Request, Response, empty

if TYPE_CHECKING:
    from .core import DevServer

_PATHS = {"/firmware": "FIRMWARE", "/software": "SOFTWARE"}


def fail_chunk(srv: "DevServer", kind: str, chunk: int, status: int = 500,
               times: int | None = None) -> None:
    """Answer `status` to requests for `chunk` of the assigned `kind` package (times=None: always)."""
    srv.chunk_faults[(kind, chunk)] = [status, times]


def _with_faults(srv: "DevServer", kind: str, handler):
    def serve(req: Request) -> Response:
        try:
            key = (kind, int(req.arg("chunk") or 0))
        except ValueError:
            return handler(req)
        with srv.cond:
            fault = srv.chunk_faults.get(key)
            if fault is None:
                return handler(req)
            status, times = fault
            if times is not None:
                fault[1] -= 1
                if fault[1] <= 0:
                    del srv.chunk_faults[key]
        return empty(status)
    return serve


def register(srv: "DevServer") -> None:
    srv.chunk_faults = {}  # (kind, chunk) -> [status, requests left or None]
    match = srv.router.match

    def match_with_faults(method: str, path: str):
        route, params, known = match(method, path)
        for suffix, kind in _PATHS.items():
            if route is not None and method == "GET" and path.endswith(suffix):
                return route.with_handler(_with_faults(srv, kind, route.handler)), params, known
        return route, params, known

    srv.router.match = match_with_faults
