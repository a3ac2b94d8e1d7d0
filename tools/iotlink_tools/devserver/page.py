"""The devserver's web page: devices, their latest telemetry, and a switch per allowed pin.

`/` serves static/index.html; the page polls `GET /ui/devices` every second and sends pin
commands through `POST /ui/devices/{id}/rpc`, a two-way RPC answered with the device's reply
(504 when the device does not answer within the timeout, as ThingsBoard's REST API does).
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING

from .core import DeviceNotFound, now_ms
from .web import Request, Response, json_response, not_found

if TYPE_CHECKING:
    from .core import DevServer

STATIC = Path(__file__).with_name("static")
DEFAULT_RPC_TIMEOUT_MS = 10000  # ThingsBoard's default for REST two-way RPC
MAX_RPC_TIMEOUT_MS = 60000


def _static(name: str) -> Response:
    path = STATIC / name
    if name.startswith(".") or not path.is_file():
        return not_found(f"/static/{name}")
    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if ctype.startswith("text/") or ctype.endswith("javascript"):
        ctype += ";charset=UTF-8"
    return Response(200, path.read_bytes(), ctype, {"Cache-Control": "no-cache"})


def _error(status: int, message: str) -> Response:
    return json_response({"status": status, "message": message}, status)


def device_summary(srv: "DevServer", dev: dict) -> dict:
    """What the page shows of a device: latest value per telemetry key and its allowed pins."""
    latest = srv.latest_telemetry(dev["id"])
    pins = srv.client_attributes(dev["id"]).get("gpio_pins")
    return {
        "id": dev["id"],
        "name": dev["name"],
        "type": dev["type"],
        "telemetry": {key: {"ts": ts, "value": value} for key, (ts, value) in latest.items()},
        "last_ts": max((ts for ts, _ in latest.values()), default=None),
        "gpio_pins": [str(p) for p in pins] if isinstance(pins, list) else [],
    }


def register(srv: "DevServer") -> None:
    def index(req: Request) -> Response:
        return _static("index.html")

    def static(req: Request) -> Response:
        return _static(req.params["name"])

    def devices(req: Request) -> Response:
        return json_response({"now_ms": now_ms(), "devices": [device_summary(srv, d) for d in srv.devices()]})

    def rpc(req: Request) -> Response:
        """Body {"method", "params", "timeout" (ms, optional)} -> {"reply": <device's reply>}."""
        try:
            body = req.json()
        except ValueError:
            return _error(400, "body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("method"), str) or not body["method"]:
            return _error(400, "expected {\"method\": str, \"params\": ...}")
        timeout_ms = body.get("timeout", DEFAULT_RPC_TIMEOUT_MS)
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or not 0 < timeout_ms <= MAX_RPC_TIMEOUT_MS:
            return _error(400, f"timeout must be 1..{MAX_RPC_TIMEOUT_MS} ms")
        try:
            reply = srv.call_rpc(req.params["device_id"], body["method"], body.get("params"), timeout_ms / 1000)
        except DeviceNotFound:
            return _error(404, f"Device with id [{req.params['device_id']}] is not found")
        except TimeoutError:
            return _error(504, f"the device did not answer within {timeout_ms} ms")
        return json_response({"reply": reply})

    srv.router.add("GET", "/", index)
    srv.router.add("GET", "/static/{name}", static)
    srv.router.add("GET", "/ui/devices", devices)
    srv.router.add("POST", "/ui/devices/{device_id}/rpc", rpc)
