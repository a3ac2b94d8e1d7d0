"""ThingsBoard's server-side RPC REST API on the devserver (RpcV2Controller, RpcV1Controller).

POST /api/rpc/{oneway|twoway}/{deviceId} with {"method", "params", "timeout" (ms, default 10000,
at least 5000), "expirationTime" (epoch ms, wins over timeout), "persistent", "additionalInfo"}:
- lightweight (the default): one-way answers 200 once a device poll took the RPC, two-way
  answers the device's reply body (406 if it was not JSON); 504 when that did not happen in
  time, 500 "Request timeout" when the server's async cap ends the request first. The older
  /api/plugins/rpc/... paths answer 408 for an unanswered two-way RPC and 409 for one that no
  device poll took.
- persistent: answers {"rpcId"} at once and keeps the RPC until its expiration time, through
  QUEUED -> DELIVERED (a device poll took it; HTTP delivery is confirmed as the reply is written)
  -> SUCCESSFUL (two-way, answered), or EXPIRED. GET /api/rpc/persistent/{rpcId},
  GET /api/rpc/persistent/device/{deviceId} (paged, `rpcStatus` filter) and DELETE show and drop
  them. A sleeping board gets its commands this way: it polls /api/v1/{token}/rpc when it wakes.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .core import now_ms
from .tb_rest import GENERAL, STRING_BODY, bad_request, error, is_uuid, not_found, ref
from .web import Response, Request, empty, json_response

if TYPE_CHECKING:
    from .core import DevServer

DEFAULT_TIMEOUT_MS = 10000
STATUSES = ("QUEUED", "SENT", "DELIVERED", "SUCCESSFUL", "TIMEOUT", "EXPIRED", "FAILED")


def register(srv: "DevServer") -> None:
    api = srv.rest_api

    def json_or_text(text: str | None):
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return text

    def rpc_json(row: dict) -> dict:
        device, rpc_id = ref("DEVICE", row["device_id"]), row["uuid"]
        info = json_or_text(row["additional_info"])
        request = {"id": rpc_id, "tenantId": ref("TENANT", srv.rest.tenant_id), "deviceId": device,
                   "oneway": bool(row["oneway"]), "expirationTime": row["expires_ms"],
                   "body": {"method": row["method"], "params": row["params"]},
                   "persisted": True, "retries": None, "additionalInfo": info}
        return {"id": ref("RPC", rpc_id), "createdTime": row["created_ms"],
                "tenantId": ref("TENANT", srv.rest.tenant_id), "deviceId": device,
                "expirationTime": row["expires_ms"], "request": request,
                "response": json_or_text(row["response"]), "status": row["status"], "additionalInfo": info}

    def parse(req: Request) -> tuple[dict | None, Response | None]:
        payload, refused = api.body_object(req)
        if refused:
            return None, refused
        if not isinstance(payload.get("method"), str) or "params" not in payload:
            return None, bad_request("Invalid RPC request: 'method' and 'params' are required")
        try:
            timeout_ms = int(payload.get("timeout", DEFAULT_TIMEOUT_MS))
            expires = payload.get("expirationTime")
            expires_ms = int(expires) if expires is not None else \
                now_ms() + max(srv.rest.rpc_min_timeout_ms, timeout_ms)
        except (TypeError, ValueError):
            return None, bad_request("Invalid RPC timeout or expirationTime")
        payload["expires_ms"] = expires_ms
        return payload, None

    def rpc(oneway: bool, timeout_status: int, not_delivered_status: int):
        def handler(req: Request) -> Response:
            dev, refused = api.device(req.params["id"])
            payload, bad = parse(req)
            if refused or bad:
                return refused or bad
            persistent = payload.get("persistent") is True
            rpc_id = srv.queue_rpc(dev["id"], payload["method"], payload["params"], oneway=oneway,
                                   persistent=persistent, expires_ms=payload["expires_ms"],
                                   additional_info=payload.get("additionalInfo"))
            if persistent:
                return json_response({"rpcId": srv.rpc_uuid(dev["id"], rpc_id)})
            done = "DELIVERED" if oneway else "SUCCESSFUL"
            delivered = []

            def finished():
                status = srv.rpc_status(dev["id"], rpc_id)
                if status["status"] == "DELIVERED":
                    delivered.append(True)
                return status if status["status"] == done else None

            wait_ms = payload["expires_ms"] - now_ms()
            capped = wait_ms > srv.async_timeout_ms
            status = srv.wait_for(finished, max(0, min(wait_ms, srv.async_timeout_ms)) / 1000)
            if status is None:
                srv.expire_rpc(dev["id"], rpc_id)  # a lightweight RPC is not kept past its caller
                if capped:  # the server's async cap ends the request before the RPC's own timeout
                    return error(500, "Request timeout", GENERAL)
                return empty(timeout_status if delivered else not_delivered_status)
            if oneway:
                return empty(200)
            try:
                json.loads(status["response"])
            except ValueError:
                return empty(406)
            return Response(200, status["response"].encode(), "application/json")
        return handler

    def persisted(req: Request) -> tuple[dict | None, Response | None]:
        rpc_id = req.params["rpcId"]
        if not is_uuid(rpc_id):
            return None, bad_request(f"Invalid UUID string: {rpc_id}")
        rows = srv.rpc_requests("uuid=? AND persistent=1", (rpc_id,))
        if not rows:
            return None, not_found(f"Rpc with id [{rpc_id}] is not found")
        return rows[0], None

    def get_persisted(req: Request) -> Response:
        row, refused = persisted(req)
        return refused or json_response(rpc_json(row))

    def delete_persisted(req: Request) -> Response:
        row, refused = persisted(req)
        if refused:
            return refused
        srv.sql("DELETE FROM rpc_requests WHERE uuid=?", (row["uuid"],))
        return empty(200)

    def device_persisted(req: Request) -> Response:
        dev, refused = api.device(req.params["id"])
        if refused:
            return refused
        status = req.arg("rpcStatus")
        if status is not None and status not in STATUSES:
            return bad_request(f"RpcStatus: {status}")
        rows = srv.rpc_requests("device_id=? AND persistent=1", (dev["id"],))
        rows = [row for row in rows if status in (None, row["status"])]
        return api.page(req, rows, rpc_json, {"createdTime": lambda r: r["created_ms"],
                                              "expirationTime": lambda r: r["expires_ms"],
                                              "request": lambda r: r["method"],
                                              "response": lambda r: r["response"] or ""},
                        lambda r: r["method"])

    for kind, oneway in (("oneway", True), ("twoway", False)):
        api.add("POST", f"/api/rpc/{kind}/{{id}}", rpc(oneway, 504, 504), body_types=STRING_BODY)
        api.add("POST", f"/api/plugins/rpc/{kind}/{{id}}", rpc(oneway, 408, 409), body_types=STRING_BODY)
    api.add("GET", "/api/rpc/persistent/device/{id}", device_persisted)
    api.add("GET", "/api/rpc/persistent/{rpcId}", get_persisted)
    api.add("DELETE", "/api/rpc/persistent/{rpcId}", delete_persisted)
