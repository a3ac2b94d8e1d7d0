"""OTA packages on the devserver: an upload route for the host tools, and chunk faults for tests.

Packages are stored and assigned through the DevServer API (`add_package`, `assign_package`) and
served by tb_device.py's `/firmware` and `/software` routes. Host tools (`iotlink bundle
--server`) upload with a devserver-only route, the raw package as the body (ThingsBoard itself
takes packages through its UI or its multipart OtaPackage REST API):

    POST /api/iotlink/package?title=T&version=V[&kind=FIRMWARE|SOFTWARE][&algorithm=SHA256][&device=REF]
    -> {"id", "title", "version", "kind", "size", "checksum_algorithm", "checksum"}

Tests make one chunk answer an error status, as a loaded ThingsBoard does mid-download:

    fail_chunk(server, "FIRMWARE", 2, status=500)           # every request for chunk 2
    fail_chunk(server, "FIRMWARE", 1, status=503, times=1)   # only the first one
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from .checksums import ALGORITHMS
from .web import Request, Response, empty, json_response

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


def _bad_request(message: str) -> Response:
    return json_response({"status": 400, "message": message, "errorCode": 31}, 400)


def register(srv: "DevServer") -> None:
    def upload(req: Request) -> Response:
        title, version = req.arg("title"), req.arg("version")
        kind, algorithm = req.arg("kind", "FIRMWARE"), req.arg("algorithm", "SHA256")
        if not title or not version or not req.body:
            return _bad_request("title, version and a non-empty body are required")
        if kind not in ("FIRMWARE", "SOFTWARE") or algorithm not in ALGORITHMS:
            return _bad_request(f"kind must be FIRMWARE or SOFTWARE, algorithm one of {', '.join(ALGORITHMS)}")
        ref = req.arg("device")
        if ref:
            try:
                srv.device(ref)
            except KeyError:
                return json_response({"status": 404, "message": f"no device {ref}", "errorCode": 32}, 404)
        try:
            pkg_id = srv.add_package(title, version, req.body, kind, algorithm)
        except sqlite3.IntegrityError:
            return _bad_request(f"{kind.lower()} {title} {version} already exists")
        if ref:
            srv.assign_package(ref, pkg_id)
        pkg = srv.package(pkg_id)
        return json_response({"id": pkg_id, "title": title, "version": version, "kind": kind,
                              "size": len(req.body), "checksum_algorithm": algorithm,
                              "checksum": pkg["checksum"]})

    srv.router.add("POST", "/api/iotlink/package", upload)
    srv.chunk_faults = {}  # (kind, chunk) -> [status, requests left or None]
    match = srv.router.match

    def match_with_faults(method: str, path: str):
        handler, params, known = match(method, path)
        for suffix, kind in _PATHS.items():
            if handler is not None and method == "GET" and path.endswith(suffix):
                return _with_faults(srv, kind, handler), params, known
        return handler, params, known

    srv.router.match = match_with_faults
