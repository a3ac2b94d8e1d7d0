"""ThingsBoard's HTTP device API (/api/v1/...), status codes and quirks as the server's code has them.

From ThingsBoard's DeviceApiController and transport: 401 with an empty body for an unknown
token, 408 (empty) when a long-poll's timer runs out, 503 when a request outlives the async cap,
bodies read as Gson reads them, leniently (lenient.py; 500 with the parser's message for one it
refuses), one message per attribute poll and nothing buffered between polls, unanswered two-way
RPCs delivered again, provisioning answering 200 with a status in the body.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from . import lenient
from .core import now_ms
from .web import Request, Response, empty, json_response, text_response

if TYPE_CHECKING:
    from .core import DevServer

DEFAULT_POLL_MS = 60000  # transport.http.request_timeout
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")
RPC_BODY_LIMIT = 64 * 1024


def typed(value: Any) -> Any:
    """ThingsBoard's key-value typing: numeric-looking strings become numbers."""
    if isinstance(value, str):
        if _INT.fullmatch(value):
            number = int(value)
            if -(2**63) <= number < 2**63:
                return number
        elif _FLOAT.fullmatch(value):
            return float(value)
    return value


def _flat_values(values: dict) -> dict:
    return {k: typed(v) for k, v in values.items()}


def parse_telemetry(payload: Any, server_ts: int) -> list[tuple[int, dict]]:
    """The records of a telemetry body; raises ValueError for a shape the server rejects."""
    items = payload if isinstance(payload, list) else [payload]
    records = []
    for item in items:
        if not isinstance(item, dict):
            raise ValueError("telemetry item is not an object")
        if "ts" in item and "values" in item:
            if not isinstance(item["values"], dict) or isinstance(item["ts"], bool) \
                    or not isinstance(item["ts"], int) or not -(2**63) <= item["ts"] < 2**63:
                raise ValueError("bad ts/values record")  # ThingsBoard's ts is a Java long
            records.append((item["ts"], _flat_values(item["values"])))
        else:
            records.append((server_ts, _flat_values(item)))
    return records


def register(srv: "DevServer") -> None:
    r = srv.router

    def for_device(handler):
        """handler(req, dev): 401 with an empty body first, for a token no device has."""
        def wrapped(req: Request) -> Response:
            dev = srv.device_by_token(req.params["token"])
            return empty(401) if dev is None else handler(req, dev)
        return wrapped

    def with_json(handler):
        """handler(req, dev, payload): also 500 with the parser's message for bad JSON."""
        def wrapped(req: Request, dev: dict) -> Response:
            payload, error = body_json(req)
            return error or handler(req, dev, payload)
        return for_device(wrapped)

    def body_json(req: Request):
        """(payload, None) or (None, error response) for a body even Gson's lenient parser refuses."""
        try:
            return lenient.parse(req.text()), None
        except ValueError as exc:
            return None, text_response(f"Invalid JSON: {exc}", 500)

    def async_cap_s() -> float:
        return srv.async_timeout_ms / 1000

    @with_json
    def post_telemetry(req: Request, dev: dict, payload) -> Response:
        if payload == []:
            # The server never completes an empty array: the request dies at the async cap.
            srv.wait_for(lambda: False, async_cap_s())
            return empty(503)
        try:
            records = parse_telemetry(payload, now_ms())
        except ValueError:
            return empty(500)
        for ts, values in records:
            srv.store_telemetry(dev["id"], ts, values)
        return empty(200)

    @with_json
    def post_attributes(req: Request, dev: dict, payload) -> Response:
        if not isinstance(payload, dict):
            return empty(500)
        srv.save_attributes(dev["id"], "CLIENT_SCOPE", _flat_values(payload))
        return empty(200)

    def keys_arg(req: Request, name: str) -> list[str] | None:
        values = req.query.get(name)
        if values is None:
            return None
        # Split on commas with no trimming; repeated parameters also work.
        return [k for v in values for k in v.split(",") if k]

    @for_device
    def get_attributes(req: Request, dev: dict) -> Response:
        client_keys, shared_keys = keys_arg(req, "clientKeys"), keys_arg(req, "sharedKeys")
        reply = {}
        sections = []
        if client_keys is None and shared_keys is None:
            sections = [("client", "CLIENT_SCOPE", None), ("shared", "SHARED_SCOPE", None)]
        else:
            if client_keys is not None:
                sections.append(("client", "CLIENT_SCOPE", client_keys))
            if shared_keys is not None:
                sections.append(("shared", "SHARED_SCOPE", shared_keys))
        for name, scope, keys in sections:
            stored = srv.attributes(dev["id"], scope)
            found = {k: v for k, v in stored.items() if keys is None or k in keys}
            if found:  # a section is present only when non-empty
                reply[name] = found
        return json_response(reply)

    def poll_timeout(req: Request) -> tuple[float, Response | None]:
        raw = req.arg("timeout")
        try:
            ms = int(raw) if raw not in (None, "") else 0
        except ValueError:
            return 0, json_response({"status": 400, "message": "Invalid timeout", "errorCode": 31}, 400)
        return (ms or DEFAULT_POLL_MS) / 1000, None

    def long_poll(req: Request, dev: dict, wait) -> Response:
        timeout_s, error = poll_timeout(req)
        if error:
            return error
        capped = timeout_s > async_cap_s()
        result = wait(dev["id"], min(timeout_s, async_cap_s()))
        if srv.sql("SELECT 1 FROM devices WHERE id=?", (dev["id"],)) == []:
            return text_response("Device was deleted!", 403)
        if result is None:
            return empty(503 if capped else 408)
        return json_response(result)

    @for_device
    def attribute_updates(req: Request, dev: dict) -> Response:
        return long_poll(req, dev, srv.wait_attribute_update)

    @for_device
    def get_rpc(req: Request, dev: dict) -> Response:
        return long_poll(req, dev, lambda dev_id, t: srv.wait_for(lambda: srv.next_rpc(dev_id), t))

    @for_device
    def reply_rpc(req: Request, dev: dict) -> Response:
        if len(req.body) > RPC_BODY_LIMIT:
            return text_response('"Payload too large"', 413, "application/json")
        if not req.body:
            return json_response({"status": 400, "message": "Required request body is missing",
                                  "errorCode": 31}, 400)
        try:
            rpc_id = int(req.params["id"])
        except ValueError:
            return json_response({"status": 400, "message": "Invalid request id", "errorCode": 31}, 400)
        srv.answer_rpc(dev["id"], rpc_id, req.body)  # unknown or stale ids are dropped
        return empty(200)

    @with_json
    def client_rpc(req: Request, dev: dict, payload) -> Response:
        if not isinstance(payload, dict) or "method" not in payload or "params" not in payload:
            return empty(500)
        handler = srv.client_rpc_handlers.get(payload["method"])
        if handler is None:
            # The default root rule chain never replies: the request dies at the async cap.
            srv.wait_for(lambda: False, async_cap_s())
            return empty(503)
        return text_response(json.dumps(handler(dev, payload["params"])), 200)

    @for_device
    def claim(req: Request, dev: dict) -> Response:
        payload = {}
        if req.body:
            payload, error = body_json(req)
            if error:
                return error
        if not isinstance(payload, dict):
            return empty(500)
        if srv.claim_request(dev["id"]) is None:  # a repeat does not replace a pending secret
            srv.sql("INSERT INTO claims VALUES (?,?,?)",
                    (dev["id"], str(payload.get("secretKey", "")),
                     now_ms() + int(payload.get("durationMs", 86400000))))
        return empty(200)

    def provision(req: Request) -> Response:
        payload, error = body_json(req)
        if error:
            return error
        if not isinstance(payload, dict) or "provisionDeviceKey" not in payload \
                or "provisionDeviceSecret" not in payload:
            return empty(500)
        not_found = {"errorMsg": "Provision data was not found!", "status": "NOT_FOUND"}
        failure = {"errorMsg": "Failed to provision device!", "status": "FAILURE"}
        rows = srv.sql("SELECT * FROM device_profiles WHERE provision_key=?", (payload["provisionDeviceKey"],))
        if not rows or rows[0]["provision_secret"] != payload["provisionDeviceSecret"] \
                or rows[0]["provision_type"] == "DISABLED":
            return text_response(json.dumps(not_found), 200)
        profile = rows[0]
        name = str(payload.get("deviceName") or f"device-{now_ms()}").strip()
        if payload.get("credentialsType", "ACCESS_TOKEN") != "ACCESS_TOKEN":
            return text_response(json.dumps(failure), 200)
        try:
            if profile["provision_type"] == "CHECK_PRE_PROVISIONED_DEVICES":
                dev = srv.device(name)
                if srv.sql("SELECT 1 FROM attributes WHERE device_id=? AND key='provisionState'",
                           (dev["id"],)):
                    return text_response(json.dumps(failure), 200)
            else:
                dev = srv.add_device(name, payload.get("token"), type=profile["name"])
        except (KeyError, ValueError):
            return text_response(json.dumps(failure), 200)
        srv.save_attributes(dev["id"], "SERVER_SCOPE", {"provisionState": "provisioned"})
        return text_response(json.dumps({"credentialsValue": dev["token"],
                                         "credentialsType": "ACCESS_TOKEN", "status": "SUCCESS"}), 200)

    def package_chunk(kind: str):
        @for_device
        def handler(req: Request, dev: dict) -> Response:
            pkg = srv.assigned_package(dev["id"], kind)
            if pkg is None or pkg["data"] is None:  # none assigned, or one given by URL
                return empty(404)
            if req.arg("title") != pkg["title"] or req.arg("version") != pkg["version"]:
                return empty(400)
            try:
                size = int(req.arg("size") or 0)
                chunk = int(req.arg("chunk") or 0)
            except ValueError:
                return json_response({"status": 400, "message": "Invalid size or chunk",
                                      "errorCode": 31}, 400)
            data = pkg["data"]
            if size > 0:
                data = data[chunk * size:(chunk + 1) * size]
            headers = {"Content-Disposition": f"attachment;filename={pkg['file_name']}",
                       "x-filename": pkg["file_name"]}
            return Response(200, bytes(data), pkg["content_type"], headers)
        return handler

    base = "/api/v1/{token}"
    r.add("GET", base + "/firmware", package_chunk("FIRMWARE"))
    r.add("GET", base + "/software", package_chunk("SOFTWARE"))
    r.add("POST", base + "/telemetry", post_telemetry)
    r.add("POST", base + "/attributes", post_attributes)
    r.add("GET", base + "/attributes", get_attributes)
    r.add("GET", base + "/attributes/updates", attribute_updates)
    r.add("GET", base + "/rpc", get_rpc)
    r.add("POST", base + "/rpc/{id}", reply_rpc)
    r.add("POST", base + "/rpc", client_rpc)
    r.add("POST", base + "/claim", claim)
    r.add("POST", "/api/v1/provision", provision)
