"""ThingsBoard's REST (user) API on the devserver: authentication, and what its other parts share.

Authentication as ThingsBoard's: JWT login and refresh (HS512; both tokens rotate), both
`X-Authorization: Bearer` and `Authorization: Bearer`, API keys (`X-Authorization: ApiKey
<value>`, ThingsBoard 4.3+, made with POST /api/apiKey), the error body {"status", "message",
"errorCode", "timestamp"} (401 with errorCode 11 once a token expired or its signature is
wrong), GET /api/auth/user. The other REST modules (tb_devices, tb_telemetry, tb_rpc, tb_ota)
register their routes with `srv.rest_api` (a RestApi) for the helpers below.

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

from .core import now_ms
from .web import JSON_BODY, Request, Response, empty, json_response

# The routes whose body ThingsBoard reads as a String (telemetry, attributes, RPC) also take
# text/plain, as its Python client sends them: like every REST route but login, they need the
# X-Authorization header, which no foreign page can send without a preflight.
STRING_BODY = (*JSON_BODY, "text/plain")

if TYPE_CHECKING:
    from .core import DevServer

UNASSIGNED_CUSTOMER = "13814000-1dd2-11b2-8080-808080808080"  # ThingsBoard's "no customer" id

# errorCode values of ThingsboardErrorCode
GENERAL, AUTHENTICATION, JWT_TOKEN_EXPIRED, PERMISSION_DENIED = 2, 10, 11, 20
BAD_REQUEST_PARAMS, ITEM_NOT_FOUND = 31, 32


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
        self.created_ms = now_ms()
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
                          "timestamp": now_ms()}, status)


def bad_request(message: str) -> Response:
    return error(400, message, BAD_REQUEST_PARAMS)


def not_found(message: str) -> Response:
    return error(404, message, ITEM_NOT_FOUND)


def ref(kind: str, ref_id: str | None) -> dict | None:
    """An entity id as ThingsBoard writes it: {"entityType", "id"}, or null."""
    return {"entityType": kind, "id": ref_id} if ref_id else None


def ref_id(value: Any) -> str | None:
    """The UUID out of an {"entityType","id"} (or a bare id string); None for null."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except (ValueError, AttributeError, TypeError):
        return False
    return True


def java_string(value: Any) -> str:
    """A stored value as ThingsBoard prints it without useStrictDataTypes (Java's toString)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e7:
            return repr(value)
        if value != value or value in (float("inf"), float("-inf")):
            return {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[repr(value)]
        sign, digits, exponent = Decimal(repr(value)).as_tuple()
        point = exponent + len(digits) - 1
        mantissa = "".join(map(str, digits)).rstrip("0") or "0"
        return f"{'-' if sign else ''}{mantissa[0]}.{mantissa[1:] or '0'}E{point}"
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


class RestApi:
    """What the REST modules share: routes behind authentication, request parsing, paging."""

    def __init__(self, srv: "DevServer"):
        self.srv = srv
        self.api_keys: dict[str, dict] = {}  # value -> ApiKey as ThingsBoard returns it

    def add(self, method: str, pattern: str, handler: Callable[[Request], Response], public: bool = False,
            **options) -> None:
        """A route only a valid access token or API key gets through, in either header (any
        request for a public one). A browser may call it from the server's own page only, and
        a body must be JSON (options: web.Route's, e.g. another body_types or max_body)."""
        options = {"for_browsers": True, "body_types": JSON_BODY, **options}
        if public:
            self.srv.router.add(method, pattern, handler, **options)
            return

        def guarded(req: Request) -> Response:
            header = req.headers.get("x-authorization") or req.headers.get("authorization") or ""
            scheme, _, credential = header.partition(" ")
            credential = credential.strip()
            if scheme == "Bearer" and credential:
                refused = self.srv.rest.check(credential, "TENANT_ADMIN")
            elif scheme == "ApiKey" and credential:
                refused = None if self.api_key_valid(credential) else \
                    error(401, "Authentication failed", AUTHENTICATION)
            else:
                refused = error(401, "Authentication failed", AUTHENTICATION)
            return refused or handler(req)
        self.srv.router.add(method, pattern, guarded, **options)

    def api_key_valid(self, value: str) -> bool:
        key = self.api_keys.get(value)
        return bool(key and key["enabled"] and (not key["expirationTime"] or key["expirationTime"] > now_ms()))

    @staticmethod
    def body(req: Request) -> tuple[Any, Response | None]:
        """(the JSON body, None), or (None, the 400 ThingsBoard answers for unparseable JSON)."""
        try:
            return req.json(), None
        except ValueError:
            return None, bad_request("Invalid request body")

    @staticmethod
    def body_object(req: Request) -> tuple[dict, Response | None]:
        payload, refused = RestApi.body(req)
        if refused is None and not isinstance(payload, dict):
            refused = bad_request("Invalid request body")
        return payload, refused

    def device(self, device_id: str) -> tuple[dict | None, Response | None]:
        """(the device row, None) or (None, 400 for a malformed id / 404 for an unknown one)."""
        if not is_uuid(device_id):
            return None, bad_request(f"Invalid UUID string: {device_id}")
        rows = self.srv.sql("SELECT * FROM devices WHERE id=?", (device_id,))
        if not rows:
            return None, not_found(f"Device with id [{device_id}] is not found")
        return dict(rows[0]), None

    @staticmethod
    def page(req: Request, rows: list, to_json: Callable[[Any], dict], sortable: dict[str, Callable],
             text: Callable[[Any], str]) -> Response:
        """A PageData reply: pageSize/page required, textSearch (case-insensitive, in `text`),
        sortProperty (a key of `sortable`; default createdTime) and sortOrder."""
        try:
            size, page = int(req.arg("pageSize", "")), int(req.arg("page", ""))
        except ValueError:
            return bad_request("Required request parameters 'pageSize' and 'page' are not present or not numbers")
        if size < 1 or page < 0:
            return bad_request("Incorrect page link page size or page number")
        search = (req.arg("textSearch") or "").lower()
        rows = [row for row in rows if search in text(row).lower()]
        key = sortable.get(req.arg("sortProperty") or "createdTime", sortable["createdTime"])
        descending = (req.arg("sortOrder") or "").upper() == "DESC"
        rows.sort(key=lambda row: (key(row) is None, key(row) or 0), reverse=descending)
        chunk = rows[page * size:(page + 1) * size]
        return json_response({"data": [to_json(row) for row in chunk], "totalPages": -(-len(rows) // size),
                              "totalElements": len(rows), "hasNext": (page + 1) * size < len(rows)})


def register(srv: "DevServer") -> None:
    srv.rest = RestSettings()
    api = srv.rest_api = RestApi(srv)

    def login(req: Request) -> Response:
        payload, _ = api.body_object(req)
        payload = payload or {}
        if payload.get("username") != srv.rest.username or payload.get("password") != srv.rest.password:
            return error(401, "Invalid username or password", AUTHENTICATION)
        return json_response(srv.rest.issue())

    def refresh(req: Request) -> Response:
        payload, _ = api.body_object(req)
        token = (payload or {}).get("refreshToken")
        if not isinstance(token, str):
            return error(401, "Refresh token is not provided", AUTHENTICATION)
        return srv.rest.check(token, "REFRESH_TOKEN") or json_response(srv.rest.issue())

    def user_json() -> dict:
        settings = srv.rest
        return {"id": ref("USER", settings.user_id), "createdTime": settings.created_ms,
                "tenantId": ref("TENANT", settings.tenant_id), "customerId": ref("CUSTOMER", UNASSIGNED_CUSTOMER),
                "email": settings.username, "name": settings.username, "authority": "TENANT_ADMIN",
                "firstName": None, "lastName": None, "phone": None, "additionalInfo": {}, "version": 1}

    # ---- API keys (ThingsBoard 4.3+) ---------------------------------------------------
    def api_key_info(key: dict) -> dict:
        return {k: v for k, v in key.items() if k != "value"}

    def api_key(key_id: str) -> tuple[dict | None, Response | None]:
        for key in api.api_keys.values():
            if key["id"]["id"] == key_id:
                return key, None
        return None, not_found(f"Api key with id [{key_id}] is not found")

    def save_api_key(req: Request) -> Response:
        payload, refused = api.body_object(req)
        if refused:
            return refused
        if ref_id(payload.get("userId")) not in (None, srv.rest.user_id):
            return not_found(f"User with id [{ref_id(payload.get('userId'))}] is not found")
        if not isinstance(payload.get("description"), str):
            return bad_request("description must not be null")
        expiration = payload.get("expirationTime") or 0
        if not isinstance(expiration, int):
            return bad_request("Invalid expirationTime")
        value = "tb_" + secrets.token_urlsafe(30)
        key = {"id": ref("API_KEY", str(uuid.uuid4())), "createdTime": now_ms(),
               "tenantId": ref("TENANT", srv.rest.tenant_id), "userId": ref("USER", srv.rest.user_id),
               "expirationTime": expiration, "description": payload["description"],
               "enabled": payload.get("enabled", True) is not False, "expired": False, "value": value}
        api.api_keys[value] = key
        return json_response(key)

    def user_api_keys(req: Request) -> Response:
        if req.params["userId"] != srv.rest.user_id:
            return not_found(f"User with id [{req.params['userId']}] is not found")
        keys = list(api.api_keys.values())
        return api.page(req, keys, api_key_info, {"createdTime": lambda k: k["createdTime"],
                                                  "expirationTime": lambda k: k["expirationTime"],
                                                  "description": lambda k: k["description"],
                                                  "enabled": lambda k: k["enabled"]},
                        lambda k: k["description"])

    def enable_api_key(req: Request) -> Response:
        key, refused = api_key(req.params["id"])
        if refused:
            return refused
        key["enabled"] = req.params["enabled"].lower() == "true"
        return json_response(api_key_info(key))

    def describe_api_key(req: Request) -> Response:
        key, refused = api_key(req.params["id"])
        if refused:
            return refused
        key["description"] = req.text() or None
        return json_response(api_key_info(key))

    def delete_api_key(req: Request) -> Response:
        key, refused = api_key(req.params["id"])
        if refused:
            return refused
        del api.api_keys[key["value"]]
        return empty(200)

    api.add("POST", "/api/auth/login", login, public=True)
    api.add("POST", "/api/auth/token", refresh, public=True)
    api.add("POST", "/api/auth/logout", lambda req: empty(200))
    api.add("GET", "/api/auth/user", lambda req: json_response(user_json()))
    api.add("POST", "/api/apiKey", save_api_key)
    api.add("GET", "/api/apiKeys/{userId}", user_api_keys)
    api.add("PUT", "/api/apiKey/{id}/enabled/{enabled}", enable_api_key)
    api.add("PUT", "/api/apiKey/{id}/description", describe_api_key)
    api.add("DELETE", "/api/apiKey/{id}", delete_api_key)
