"""The subset of ThingsBoard's REST (user) API the host tools use, with the server's shapes.

See ../shared/reference/thingsboard-rest-api.md: JWT login and refresh (both tokens rotate),
both auth header forms, the error body {"status","message","errorCode","timestamp"} (401 with
errorCode 11 once a token expired), devices with a chosen access token (duplicate token or
name: 400), lookup by name and paged listing with hasNext, credentials, latest telemetry (string
values unless useStrictDataTypes=true, a null entry for a requested key without data), shared
attributes, and RPC answered 504 when the device does not answer within `timeout`.

Tests tune `srv.rest` (a RestSettings): the tenant account, token lifetimes, the token clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable

from .tb_device import typed
from .web import Request, Response, empty, json_response

if TYPE_CHECKING:
    from .core import DevServer

UNASSIGNED_CUSTOMER = "13814000-1dd2-11b2-8080-808080808080"  # ThingsBoard's "no customer" id
PROFILE_NAMESPACE = uuid.UUID("6f1c6f0e-7b0a-4c55-9f56-0a5d8c1e2b3a")
WRITABLE_SCOPES = ("SERVER_SCOPE", "SHARED_SCOPE")
READABLE_SCOPES = ("CLIENT_SCOPE",) + WRITABLE_SCOPES
SORTABLE = {"name": "name", "type": "type", "label": "label", "createdTime": "created_ms"}

# errorCode values of ThingsboardErrorCode
GENERAL, AUTHENTICATION, JWT_TOKEN_EXPIRED, BAD_REQUEST_PARAMS, ITEM_NOT_FOUND = 2, 10, 11, 31, 32


class RestSettings:
    """The tenant account and token rules of the emulated REST API."""

    def __init__(self, username: str = "tenant@thingsboard.org", password: str = "tenant",
                 access_lifetime_s: float = 9000, refresh_lifetime_s: float = 604800,
                 rpc_min_timeout_ms: int = 5000):
        self.username = username
        self.password = password
        self.access_lifetime_s = access_lifetime_s
        self.refresh_lifetime_s = refresh_lifetime_s
        self.rpc_min_timeout_ms = rpc_min_timeout_ms
        # The clock tokens are issued and checked against; a test moves it to expire them.
        self.clock: Callable[[], float] = time.time
        self.tenant_id = str(uuid.uuid4())
        self.user_id = str(uuid.uuid4())
        self._key = secrets.token_bytes(32)

    # ---- JWT (HS512, as ThingsBoard signs them) ---------------------------------------
    def _sign(self, data: bytes) -> str:
        return _b64(hmac.new(self._key, data, hashlib.sha512).digest())

    def _token(self, claims: dict) -> str:
        head = _b64(json.dumps({"alg": "HS512"}).encode()) + "." + _b64(json.dumps(claims).encode())
        return head + "." + self._sign(head.encode())

    def issue(self) -> dict:
        """A fresh token pair, as login and refresh answer."""
        now = self.clock()
        session = str(uuid.uuid4())
        common = {"sub": self.username, "userId": self.user_id, "sessionId": session,
                  "iss": "thingsboard.io", "iat": int(now), "isPublic": False}
        access = dict(common, scopes=["TENANT_ADMIN"], enabled=True, tenantId=self.tenant_id,
                      customerId=UNASSIGNED_CUSTOMER, exp=int(now + self.access_lifetime_s))
        refresh = dict(common, scopes=["REFRESH_TOKEN"], jti=str(uuid.uuid4()),
                       exp=int(now + self.refresh_lifetime_s))
        return {"token": self._token(access), "refreshToken": self._token(refresh)}

    def check(self, token: str, scope: str) -> Response | None:
        """None if token is a valid, unexpired token of scope; else the 401 to answer."""
        parts = token.split(".")
        if len(parts) != 3:
            return error(401, "Authentication failed", AUTHENTICATION)
        # ThingsBoard answers a bad signature like an expired token.
        if not hmac.compare_digest(self._sign(f"{parts[0]}.{parts[1]}".encode()), parts[2]):
            return error(401, "Token has expired", JWT_TOKEN_EXPIRED)
        claims = json.loads(_unb64(parts[1]))
        if self.clock() >= claims["exp"]:
            return error(401, "Token has expired", JWT_TOKEN_EXPIRED)
        if scope not in claims["scopes"]:
            return error(401, "Authentication failed", AUTHENTICATION)
        return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def error(status: int, message: str, code: int) -> Response:
    return json_response({"status": status, "message": message, "errorCode": code,
                          "timestamp": int(time.time() * 1000)}, status)


def java_string(value: Any) -> str:
    """A stored value as ThingsBoard prints it without useStrictDataTypes (Java's toString)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e7:
            return repr(value)
        sign, digits, exponent = Decimal(repr(value)).as_tuple()
        point = exponent + len(digits) - 1
        mantissa = "".join(map(str, digits)).rstrip("0") or "0"
        return f"{'-' if sign else ''}{mantissa[0]}.{mantissa[1:] or '0'}E{point}"
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def register(srv: "DevServer") -> None:
    r = srv.router
    srv.rest = RestSettings()

    def authed(handler: Callable[..., Response]) -> Callable[[Request], Response]:
        """Only a valid access token gets through, from either header form."""
        def wrapper(req: Request) -> Response:
            header = req.headers.get("x-authorization") or req.headers.get("authorization") or ""
            scheme, _, token = header.partition(" ")
            if scheme != "Bearer" or not token:
                return error(401, "Authentication failed", AUTHENTICATION)
            refused = srv.rest.check(token.strip(), "TENANT_ADMIN")
            return refused or handler(req)
        return wrapper

    def body_object(req: Request) -> dict | None:
        try:
            payload = req.json()
        except ValueError:
            return None
        return payload if isinstance(payload, dict) else None

    def device_row(device_id: str) -> tuple[dict | None, Response | None]:
        try:
            uuid.UUID(device_id)
        except ValueError:
            return None, error(400, f"Invalid UUID string: {device_id}", BAD_REQUEST_PARAMS)
        rows = srv.sql("SELECT * FROM devices WHERE id=?", (device_id,))
        if not rows:
            return None, error(404, f"Device with id [{device_id}] is not found", ITEM_NOT_FOUND)
        return dict(rows[0]), None

    def device_json(row: dict) -> dict:
        def ref(kind, ref_id):
            return {"entityType": kind, "id": ref_id} if ref_id else None

        return {"id": ref("DEVICE", row["id"]), "createdTime": row["created_ms"],
                "tenantId": ref("TENANT", srv.rest.tenant_id), "customerId": ref("CUSTOMER", UNASSIGNED_CUSTOMER),
                "name": row["name"], "type": row["type"], "label": row["label"],
                "deviceProfileId": ref("DEVICE_PROFILE", str(uuid.uuid5(PROFILE_NAMESPACE, row["type"]))),
                "firmwareId": ref("OTA_PACKAGE", row["firmware_id"]),
                "softwareId": ref("OTA_PACKAGE", row["software_id"]),
                "additionalInfo": None, "version": 1}

    def keys_arg(req: Request) -> list[str] | None:
        raw = req.arg("keys")
        return None if raw is None else [k.strip() for k in raw.split(",") if k.strip()]

    # ---- authentication --------------------------------------------------------------
    def login(req: Request) -> Response:
        payload = body_object(req) or {}
        if payload.get("username") != srv.rest.username or payload.get("password") != srv.rest.password:
            return error(401, "Invalid username or password", AUTHENTICATION)
        return json_response(srv.rest.issue())

    def refresh(req: Request) -> Response:
        token = (body_object(req) or {}).get("refreshToken")
        if not isinstance(token, str):
            return error(401, "Refresh token is not provided", AUTHENTICATION)
        return srv.rest.check(token, "REFRESH_TOKEN") or json_response(srv.rest.issue())

    # ---- devices ---------------------------------------------------------------------
    def save_device(req: Request) -> Response:
        payload = body_object(req)
        if payload is None:
            return error(400, "Invalid request body", BAD_REQUEST_PARAMS)
        if payload.get("id") is not None:
            return error(400, "The devserver creates devices; it does not update them", BAD_REQUEST_PARAMS)
        name = payload.get("name")
        if not isinstance(name, str) or not name.strip():
            return error(400, "Device name should be specified!", BAD_REQUEST_PARAMS)
        try:
            dev = srv.add_device(name, req.arg("accessToken") or None, type=payload.get("type") or "default",
                                 label=payload.get("label"))
        except ValueError as exc:  # a taken token or name; nothing is created
            return error(400, str(exc), BAD_REQUEST_PARAMS)
        return json_response(device_json(dev))

    def get_device(req: Request) -> Response:
        row, refused = device_row(req.params["id"])
        return refused or json_response(device_json(row))

    def delete_device(req: Request) -> Response:
        row, refused = device_row(req.params["id"])
        if refused:
            return refused
        srv.delete_device(row["id"])
        return empty(200)

    def credentials(req: Request) -> Response:
        row, refused = device_row(req.params["id"])
        if refused:
            return refused
        return json_response({"id": {"id": str(uuid.uuid5(PROFILE_NAMESPACE, row["token"]))},
                              "createdTime": row["created_ms"],
                              "deviceId": {"entityType": "DEVICE", "id": row["id"]},
                              "credentialsType": "ACCESS_TOKEN", "credentialsId": row["token"],
                              "credentialsValue": None})

    def by_name(req: Request) -> Response:
        name = req.arg("deviceName", "")
        rows = srv.sql("SELECT * FROM devices WHERE name=?", (name,))
        if not rows:
            return error(404, f"Device with name [{name}] is not found", ITEM_NOT_FOUND)
        return json_response(device_json(dict(rows[0])))

    def tenant_devices(req: Request) -> Response:
        if req.arg("deviceName") is not None:
            return by_name(req)
        try:
            size, page = int(req.arg("pageSize", "")), int(req.arg("page", ""))
        except ValueError:
            return error(400, "Required request parameters 'pageSize' and 'page' are not present "
                              "or not numbers", BAD_REQUEST_PARAMS)
        if size < 1 or page < 0:
            return error(400, "Incorrect page link page size or page number", BAD_REQUEST_PARAMS)
        column = SORTABLE.get(req.arg("sortProperty") or "createdTime", "created_ms")
        order = "DESC" if (req.arg("sortOrder") or "ASC").upper() == "DESC" else "ASC"
        query, args = "SELECT * FROM devices WHERE 1=1", ()
        if req.arg("type"):
            query, args = query + " AND type=?", args + (req.arg("type"),)
        if req.arg("textSearch"):
            query, args = query + " AND instr(lower(name), ?) > 0", args + (req.arg("textSearch").lower(),)
        rows = srv.sql(f"{query} ORDER BY {column} {order}, id", args)
        chunk = rows[page * size:(page + 1) * size]
        return json_response({"data": [device_json(dict(row)) for row in chunk],
                              "totalPages": -(-len(rows) // size), "totalElements": len(rows),
                              "hasNext": (page + 1) * size < len(rows)})

    # ---- telemetry and attributes ----------------------------------------------------
    def latest_timeseries(req: Request) -> Response:
        row, refused = device_row(req.params["id"])
        if refused:
            return refused
        strict = (req.arg("useStrictDataTypes") or "false").lower() == "true"
        latest = srv.latest_telemetry(row["id"])
        keys = keys_arg(req)
        reply = {}
        for key in (sorted(latest) if keys is None else keys):
            if key in latest:
                ts, value = latest[key]
                reply[key] = [{"ts": ts, "value": value if strict else java_string(value)}]
            else:  # a requested key without data: a null value stamped "now" (issue #4324)
                reply[key] = [{"ts": int(time.time() * 1000), "value": None}]
        return json_response(reply)

    def device_and_scope(req: Request, allowed: tuple) -> tuple[dict | None, str, Response | None]:
        row, refused = device_row(req.params["id"])
        scope = req.params["scope"]
        if refused is None and scope not in allowed:
            refused = error(400, f"Invalid scope: {scope}", BAD_REQUEST_PARAMS)
        return row, scope, refused

    def save_attributes(req: Request) -> Response:
        row, scope, refused = device_and_scope(req, WRITABLE_SCOPES)
        if refused:
            return refused
        payload = body_object(req)
        if not payload:
            return error(400, "No attributes data found in request body!", BAD_REQUEST_PARAMS)
        if any(value is None for value in payload.values()):
            return error(500, "Attribute value can't be null", GENERAL)
        srv.save_attributes(row["id"], scope, {k: typed(v) for k, v in payload.items()})
        return empty(200)

    def read_attributes(req: Request) -> Response:
        row, scope, refused = device_and_scope(req, READABLE_SCOPES)
        if refused:
            return refused
        keys = keys_arg(req)
        rows = srv.sql("SELECT key, value, last_update_ts FROM attributes WHERE device_id=? AND scope=? "
                       "ORDER BY key", (row["id"], scope))
        return json_response([{"key": r["key"], "value": json.loads(r["value"]), "lastUpdateTs": r["last_update_ts"]}
                              for r in rows if keys is None or r["key"] in keys])

    def delete_attributes(req: Request) -> Response:
        row, scope, refused = device_and_scope(req, READABLE_SCOPES)
        if refused:
            return refused
        keys = keys_arg(req)
        if not keys:
            return error(400, "Required request parameter 'keys' is not present", BAD_REQUEST_PARAMS)
        if scope == "SHARED_SCOPE":  # the device hears {"deleted": [...]}
            srv.delete_shared_attributes(row["id"], keys)
        else:
            for key in keys:
                srv.sql("DELETE FROM attributes WHERE device_id=? AND scope=? AND key=?", (row["id"], scope, key))
        return empty(200)

    # ---- RPC -------------------------------------------------------------------------
    def rpc(oneway: bool):
        def handler(req: Request) -> Response:
            row, refused = device_row(req.params["id"])
            if refused:
                return refused
            payload = body_object(req)
            if payload is None or not isinstance(payload.get("method"), str) or "params" not in payload:
                return error(400, "Invalid RPC request: 'method' and 'params' are required", BAD_REQUEST_PARAMS)
            try:
                timeout_ms = max(srv.rest.rpc_min_timeout_ms, int(payload.get("timeout", 10000)))
            except (TypeError, ValueError):
                return error(400, "Invalid RPC timeout", BAD_REQUEST_PARAMS)
            rpc_id = srv.queue_rpc(row["id"], payload["method"], payload["params"], timeout_ms, oneway)
            done = ("DELIVERED",) if oneway else ("SUCCESSFUL",)

            def finished():
                status = srv.rpc_status(row["id"], rpc_id)
                return status if status["status"] in done else None

            capped = timeout_ms > srv.async_timeout_ms
            status = srv.wait_for(finished, min(timeout_ms, srv.async_timeout_ms) / 1000)
            if status is None:
                # The server's async cap ends the request before the RPC's own timeout does.
                return error(500, "Request timeout", GENERAL) if capped else empty(504)
            if oneway:
                return empty(200)
            try:
                json.loads(status["response"])
            except ValueError:
                return empty(406)
            return Response(200, status["response"].encode(), "application/json")
        return handler

    r.add("POST", "/api/auth/login", login)
    r.add("POST", "/api/auth/token", refresh)
    r.add("POST", "/api/auth/logout", authed(lambda req: empty(200)))
    r.add("POST", "/api/device", authed(save_device))
    r.add("GET", "/api/device/{id}", authed(get_device))
    r.add("DELETE", "/api/device/{id}", authed(delete_device))
    r.add("GET", "/api/device/{id}/credentials", authed(credentials))
    r.add("GET", "/api/tenant/devices", authed(tenant_devices))
    r.add("GET", "/api/tenant/device", authed(by_name))
    telemetry = "/api/plugins/telemetry/DEVICE/{id}"
    r.add("GET", telemetry + "/values/timeseries", authed(latest_timeseries))
    r.add("POST", telemetry + "/attributes/{scope}", authed(save_attributes))
    r.add("POST", telemetry + "/{scope:[A-Z_]+_SCOPE}", authed(save_attributes))
    r.add("GET", telemetry + "/values/attributes/{scope}", authed(read_attributes))
    r.add("DELETE", telemetry + "/{scope:[A-Z_]+_SCOPE}", authed(delete_attributes))
    r.add("POST", "/api/rpc/oneway/{id}", authed(rpc(oneway=True)))
    r.add("POST", "/api/rpc/twoway/{id}", authed(rpc(oneway=False)))
