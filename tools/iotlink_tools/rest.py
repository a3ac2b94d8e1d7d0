"""A small ThingsBoard REST client for the host tools: JWT login and refresh, clear errors, retries.

As ThingsBoard's REST API expects: `X-Authorization: Bearer <JWT>`; the token is
refreshed shortly before its `exp` (measured with the server's own `iat`, so a skewed clock does
not matter) and again on a 401 with errorCode 11; a refresh that fails falls back to a new login;
a login that fails raises. 5xx, 429 and network errors are retried with capped exponential
backoff and jitter. One client is shared by many threads. The password never appears in an error.
An https server is verified against the system's CAs and, when given, the server's own CA (a
self-hosted server's), the certificate the boards get too.
"""

from __future__ import annotations

import base64
import json
import random
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.client import HTTPException
from typing import Any, Iterator, NamedTuple
from urllib.parse import quote, urlencode

from .errors import ToolError

JWT_TOKEN_EXPIRED = 11  # ThingsBoard's errorCode for an expired (or badly signed) token
MAX_REPLY = 16 * 1024 * 1024


class RestError(ToolError):
    """A failed REST call: the HTTP status (0 when no reply came), the server's message and errorCode."""

    def __init__(self, status: int, message: str, error_code: int | None = None):
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message
        self.error_code = error_code

    @property
    def retryable(self) -> bool:
        return self.status == 0 or self.status == 429 or self.status >= 500


class RawBody(NamedTuple):
    """A request body that is not JSON (a multipart upload)."""

    data: bytes
    content_type: str


def multipart(fields: dict[str, str], name: str, file_name: str, data: bytes, content_type: str) -> RawBody:
    """A multipart/form-data body: text fields, then one file part."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
             for key, value in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{file_name}"\r\n'
                 f"Content-Type: {content_type}\r\n\r\n".encode() + data + b"\r\n")
    return RawBody(b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}")


def jwt_claims(token: str) -> dict:
    """The payload of a JWT, unverified (the client only needs `iat` and `exp`)."""
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as exc:
        raise RestError(0, "the server's token is not a JWT") from exc


def _error_from_reply(status: int, body: bytes, reason: str) -> RestError:
    try:
        reply = json.loads(body)
        return RestError(status, str(reply.get("message") or reason), reply.get("errorCode"))
    except (ValueError, AttributeError):
        text = body.decode("utf-8", "replace").strip()[:200]
        return RestError(status, text or reason)


class ThingsBoardREST:
    """A tenant's session with a ThingsBoard server's REST API."""

    def __init__(self, url: str, username: str, password: str, *, timeout: float = 10.0,
                 retries: int = 4, backoff_s: float = 0.5, max_backoff_s: float = 8.0, ca: bytes | None = None):
        self.url = url.rstrip("/")
        self.username = username
        self._password = password
        self.timeout = timeout
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._tls = ssl.create_default_context()
        if ca:
            self._tls.load_verify_locations(cadata=ca)  # DER, as certs.read_ca gives it
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_token: str | None = None
        self._renew_at = 0.0       # time.monotonic() at which to refresh ahead of expiry
        self._skew_ms = 0.0        # the server's clock minus ours

    def __repr__(self) -> str:
        return f"ThingsBoardREST({self.url!r}, {self.username!r})"

    # ---- the wire --------------------------------------------------------------------
    def _send(self, method: str, path: str, body: Any, query: dict | None, token: str | None) -> Any:
        url = self.url + path + ("?" + urlencode(query) if query else "")
        headers = {"Accept": "application/json"}
        data = None
        if isinstance(body, RawBody):
            data, headers["Content-Type"] = body
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["X-Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._tls) as reply:
                raw = reply.read(MAX_REPLY + 1)
        except urllib.error.HTTPError as exc:
            with exc:
                raise _error_from_reply(exc.code, exc.read(64 * 1024), exc.reason) from None
        except (urllib.error.URLError, HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RestError(0, f"cannot reach {self.url}: {reason}") from None
        if len(raw) > MAX_REPLY:
            raise RestError(0, f"{method} {path}: reply larger than {MAX_REPLY} bytes")
        try:
            return json.loads(raw) if raw.strip() else None
        except ValueError:
            raise RestError(0, f"{method} {path}: reply is not JSON") from None

    def _send_retrying(self, method: str, path: str, body: Any = None, query: dict | None = None,
                       token: str | None = None, retries: int | None = None) -> Any:
        retries = self.retries if retries is None else retries
        for attempt in range(retries + 1):
            try:
                return self._send(method, path, body, query, token)
            except RestError as exc:
                if not exc.retryable or attempt == retries:
                    raise
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** attempt)
                time.sleep(delay * random.uniform(0.5, 1.0))

    # ---- authentication --------------------------------------------------------------
    def login(self) -> None:
        """Log in with the tenant's user and password; raises RestError when refused."""
        with self._lock:
            self._login()

    def _login(self) -> None:
        reply = self._send_retrying("POST", "/api/auth/login",
                                    {"username": self.username, "password": self._password})
        if not isinstance(reply, dict) or "token" not in reply:
            raise RestError(200, "login gave no token")
        if reply.get("scope") == "PRE_VERIFICATION_TOKEN":
            raise RestError(200, f"{self.username} has two-factor authentication: use an account without it")
        self._keep(reply)

    def _keep(self, reply: dict) -> None:
        claims = jwt_claims(reply["token"])
        lifetime = claims["exp"] - claims["iat"]
        self._token, self._refresh_token = reply["token"], reply.get("refreshToken")
        self._renew_at = time.monotonic() + lifetime - min(30.0, lifetime / 10)
        self._skew_ms = claims["iat"] * 1000 - time.time() * 1000

    def _renew(self, stale: str | None = None) -> None:
        """Refresh the tokens (both rotate); log in again if the refresh token is refused."""
        if stale is not None and stale != self._token:
            return  # another thread renewed it already
        if self._refresh_token is None:
            self._login()
            return
        try:
            reply = self._send_retrying("POST", "/api/auth/token", {"refreshToken": self._refresh_token})
        except RestError as exc:
            if exc.status != 401:
                raise
            self._login()
            return
        self._keep(reply)

    def _current_token(self) -> str:
        with self._lock:
            if self._token is None:
                self._login()
            elif time.monotonic() >= self._renew_at:
                self._renew()
            return self._token

    def server_time_ms(self) -> int:
        """Now on the server's clock (as far as the tokens' `iat` tell), to the second."""
        return int(time.time() * 1000 + self._skew_ms)

    def request(self, method: str, path: str, body: Any = None, query: dict | None = None,
                retry: bool = True) -> Any:
        """One authenticated call; the reply's JSON (None for an empty body).

        retry=False: a call that must not be repeated (an RPC) is sent once, 5xx or not.
        """
        retries = None if retry else 0
        token = self._current_token()
        try:
            return self._send_retrying(method, path, body, query, token, retries)
        except RestError as exc:
            if exc.status != 401 or exc.error_code != JWT_TOKEN_EXPIRED:
                raise
        with self._lock:
            self._renew(stale=token)
            token = self._token
        return self._send_retrying(method, path, body, query, token, retries)

    # ---- devices ---------------------------------------------------------------------
    def find_device(self, name: str) -> dict | None:
        """The tenant's device of that name, or None."""
        try:
            return self.request("GET", "/api/tenant/devices", query={"deviceName": name})
        except RestError as exc:
            if exc.status == 404:
                return None
            raise

    def create_device(self, name: str, type: str = "default", label: str | None = None,
                      token: str | None = None) -> dict:
        """Create a device with the access token given (the server makes one up without)."""
        body = {"name": name, "type": type}
        if label:
            body["label"] = label
        return self.request("POST", "/api/device", body, {"accessToken": token} if token else None)

    def device(self, device_id: str) -> dict:
        return self.request("GET", f"/api/device/{quote(device_id)}")

    def delete_device(self, device_id: str) -> None:
        self.request("DELETE", f"/api/device/{quote(device_id)}")

    def access_token(self, device_id: str) -> str:
        credentials = self.request("GET", f"/api/device/{quote(device_id)}/credentials")
        if credentials.get("credentialsType") != "ACCESS_TOKEN":
            raise RestError(200, f"device {device_id} uses {credentials.get('credentialsType')}, not an access token")
        return credentials["credentialsId"]

    def devices(self, page_size: int = 100, text_search: str | None = None,
                profile: str | None = None) -> Iterator[dict]:
        """Every device of the tenant (of one device profile, by name), page after page."""
        query = {"textSearch": text_search, "type": profile}
        return self._pages("/api/tenant/devices", page_size, {k: v for k, v in query.items() if v})

    def _pages(self, path: str, page_size: int, query: dict) -> Iterator[dict]:
        page = 0
        while True:
            reply = self.request("GET", path, query={**query, "pageSize": page_size, "page": page})
            yield from reply["data"]
            if not reply["hasNext"]:
                return
            page += 1

    # ---- telemetry, attributes, RPC --------------------------------------------------
    def latest_telemetry(self, device_id: str, keys: list[str]) -> dict[str, tuple[int, Any]]:
        """key -> (ts, value) of the keys that have data, in their JSON types."""
        reply = self.request("GET", f"/api/plugins/telemetry/DEVICE/{quote(device_id)}/values/timeseries",
                             query={"keys": ",".join(keys), "useStrictDataTypes": "true"})
        latest = {}
        for key, points in (reply or {}).items():
            # A requested key without data comes back as one null value stamped "now".
            if points and points[0].get("value") is not None:
                latest[key] = (points[0]["ts"], points[0]["value"])
        return latest

    def save_attributes(self, device_id: str, scope: str, values: dict) -> None:
        """Save attributes of a scope: SHARED_SCOPE (the device hears them) or SERVER_SCOPE."""
        self.request("POST", f"/api/plugins/telemetry/DEVICE/{quote(device_id)}/attributes/{scope}", values)

    def attributes(self, device_id: str, scope: str, keys: list[str] | None = None) -> dict:
        reply = self.request("GET", f"/api/plugins/telemetry/DEVICE/{quote(device_id)}/values/attributes/{scope}",
                             query={"keys": ",".join(keys)} if keys else None)
        return {item["key"]: item["value"] for item in reply}

    def save_shared_attributes(self, device_id: str, values: dict) -> None:
        self.save_attributes(device_id, "SHARED_SCOPE", values)

    def shared_attributes(self, device_id: str, keys: list[str] | None = None) -> dict:
        return self.attributes(device_id, "SHARED_SCOPE", keys)

    def delete_shared_attributes(self, device_id: str, keys: list[str]) -> None:
        self.request("DELETE", f"/api/plugins/telemetry/DEVICE/{quote(device_id)}/SHARED_SCOPE",
                     query={"keys": ",".join(keys)})

    def rpc(self, device_id: str, method: str, params: Any = None, timeout_ms: int = 10000,
            oneway: bool = False) -> Any:
        """Server-side RPC; the device's reply (two-way) or None. 504: the device did not answer."""
        kind = "oneway" if oneway else "twoway"
        return self.request("POST", f"/api/rpc/{kind}/{quote(device_id)}",
                            {"method": method, "params": {} if params is None else params, "timeout": timeout_ms},
                            retry=False)

    # ---- device profiles and OTA packages --------------------------------------------
    def default_profile_id(self) -> str:
        return self.request("GET", "/api/deviceProfileInfo/default")["id"]["id"]

    def find_device_profile(self, name: str) -> dict | None:
        """The tenant's device profile of that name, or None."""
        found = self._pages("/api/deviceProfiles", 100, {"textSearch": name})
        return next((profile for profile in found if profile["name"] == name), None)

    def create_ota_package(self, title: str, version: str, kind: str = "FIRMWARE", profile_id: str | None = None,
                           tag: str | None = None) -> dict:
        """An OTA package (its info; no file yet) of the device profile (default: the default one)."""
        body = {"title": title, "version": version, "type": kind, "tag": tag,
                "deviceProfileId": {"entityType": "DEVICE_PROFILE", "id": profile_id or self.default_profile_id()}}
        return self.request("POST", "/api/otaPackage", body)

    def find_ota_package(self, title: str, version: str) -> dict | None:
        """The tenant's OTA package of that title and version (they are unique together), or None."""
        found = self._pages("/api/otaPackages", 100, {"textSearch": title})
        return next((info for info in found if info["title"] == title and info["version"] == version), None)

    def upload_ota_package(self, package_id: str, data: bytes, algorithm: str = "SHA256",
                           file_name: str = "package.bin", content_type: str = "application/octet-stream",
                           checksum: str | None = None) -> dict:
        """The package's file; the server computes its checksum with `algorithm` (and refuses the
        upload if it differs from `checksum`, when given: a file damaged on the way)."""
        body = multipart({}, "file", file_name, data, content_type)
        query = {"checksumAlgorithm": algorithm, **({"checksum": checksum} if checksum else {})}
        return self.request("POST", f"/api/otaPackage/{quote(package_id)}", body, query)

    def assign_ota_package(self, device_id: str, package_id: str | None, kind: str = "FIRMWARE") -> dict:
        """Set (or, with None, clear) the device's firmware or software package."""
        return self._assign(f"/api/device/{quote(device_id)}", "/api/device", package_id, kind)

    def assign_profile_ota_package(self, profile_id: str, package_id: str | None, kind: str = "FIRMWARE") -> dict:
        """Set (or clear) the package of a device profile: its devices without their own follow it."""
        return self._assign(f"/api/deviceProfile/{quote(profile_id)}", "/api/deviceProfile", package_id, kind)

    def _assign(self, entity: str, save: str, package_id: str | None, kind: str) -> dict:
        # ThingsBoard saves a device or profile whole: read it, set the field, post it back.
        body = self.request("GET", entity)
        body["firmwareId" if kind == "FIRMWARE" else "softwareId"] = (
            {"entityType": "OTA_PACKAGE", "id": package_id} if package_id else None)
        return self.request("POST", save, body)
