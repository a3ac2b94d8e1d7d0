# ThingsBoard HTTP device API (access token in the path), as the server's code behaves.
from iotlink import http
from iotlink.errors import ProtocolError, ProvisionError
from iotlink.http import check, transport

# The server cuts every request at 30 s (503); poll for less and read a little longer.
MAX_POLL_MS = 25000
POLL_GRACE_S = 5
_POLL_AGAIN = (408, 503, 504)


class ThingsBoard:
    def __init__(self, server, token, timeout=10, keepalive=False, cadata=None):
        self._server = server.rstrip("/")
        self.use_token(token)
        self.timeout = timeout
        self.transport = transport(server, timeout, keepalive, cadata)  # the clock is set over it too

    def use_token(self, token):
        # Requests from now on go with this token (a new one, after provisioning again).
        self._prefix = self._server + "/api/v1/" + token + "/"

    def _url(self, path):
        return self._prefix + path

    def _call(self, method, path, payload=None, timeout=None, limit=http.MAX_BODY):
        body = None if payload is None else http.dumps(payload)
        status, data, _ = self.transport.request(
            method, self._url(path), body, timeout or self.timeout, limit
        )
        return status, data

    def _post(self, path, payload):
        status, data = self._call("POST", path, payload)
        check(status, data)
        return data

    def _poll(self, path, timeout_ms):
        # One long-poll: the message, or None when the server's timer ran out.
        timeout_ms = max(1, min(int(timeout_ms), MAX_POLL_MS))
        status, data = self._call(
            "GET", "%s?timeout=%d" % (path, timeout_ms), timeout=timeout_ms / 1000 + POLL_GRACE_S
        )
        if status in _POLL_AGAIN:
            return None
        check(status, data)
        return http.loads(data) if data else None

    def send_telemetry(self, values, ts=None):
        # values: a dict, or a list of dicts / {"ts", "values"} records (a batch).
        if ts is not None:
            values = {"ts": int(ts), "values": values}
        if not values:
            return  # ThingsBoard never answers a POST of [] (it hangs until 503)
        self._post("telemetry", values)

    def send_attributes(self, attributes):
        if not isinstance(attributes, dict):
            raise ValueError("attributes must be a dict")
        self._post("attributes", attributes)

    def request_attributes(self, client_keys=None, shared_keys=None):
        query = []
        if client_keys:
            query.append("clientKeys=" + ",".join(http.quote(k) for k in client_keys))
        if shared_keys:
            query.append("sharedKeys=" + ",".join(http.quote(k) for k in shared_keys))
        path = "attributes" + ("?" + "&".join(query) if query else "")
        status, data = self._call("GET", path)
        check(status, data)
        reply = http.loads(data) if data else {}
        if not isinstance(reply, dict):
            raise ProtocolError("attributes reply is not an object")
        # The server leaves out empty sections; callers always get both.
        return {"client": reply.get("client") or {}, "shared": reply.get("shared") or {}}

    def wait_attributes(self, timeout_ms=20000):
        # A flat dict of changed shared attributes ({"deleted": [...]} for removals), or None.
        return self._poll("attributes/updates", timeout_ms)

    def wait_rpc(self, timeout_ms=20000):
        # {"id": int, "method": str, "params": any}, or None when no RPC came in time.
        rpc = self._poll("rpc", timeout_ms)
        if rpc is not None and not (isinstance(rpc, dict) and "id" in rpc and "method" in rpc):
            raise ProtocolError("RPC request without id or method")
        return rpc

    def reply_rpc(self, request_id, result):
        # Id 0 is a valid id: always reply to /rpc/{id}.
        self._post("rpc/%d" % int(request_id), result)

    def call_rpc(self, method, params=None, timeout=None):
        # Client-side RPC: the rule chain's reply (the default chain never answers).
        status, data = self._call(
            "POST", "rpc", {"method": method, "params": {} if params is None else params}, timeout
        )
        check(status, data)
        return http.loads(data) if data else None

    def claim(self, secret_key=None, duration_ms=None):
        body = {}
        if secret_key is not None:
            body["secretKey"] = secret_key
        if duration_ms is not None:
            body["durationMs"] = int(duration_ms)
        self._post("claim", body)

    def open_package(self, kind, title, version, chunk, size):
        # Stream one chunk of the assigned firmware/software package; the caller closes it.
        url = self._url(
            "%s?title=%s&version=%s&size=%d&chunk=%d"
            % (kind, http.quote(title), http.quote(version), size, chunk)
        )
        resp = self.transport.open("GET", url, timeout=self.timeout)
        if resp.status_code != 200:
            check(resp.status_code, http.read_body(resp, 512))
        return resp

    @staticmethod
    def provision(server, device_name, key, secret, timeout=10, cadata=None, token=None):
        # Device self-provisioning: returns the new access token (`token` asks for that one).
        # Cannot be repeated for a name (the server answers FAILURE): save the token at once.
        body = {"provisionDeviceKey": key, "provisionDeviceSecret": secret}
        if device_name:
            body["deviceName"] = device_name
        if token:
            body["credentialsType"] = "ACCESS_TOKEN"
            body["token"] = token
        status, data, _ = transport(server, timeout, False, cadata).request(
            "POST", server.rstrip("/") + "/api/v1/provision", http.dumps(body), timeout
        )
        check(status, data)
        reply = http.loads(data)
        if not isinstance(reply, dict):
            raise ProtocolError("provision reply is not an object")
        state = reply.get("status") or reply.get("provisionDeviceStatus")
        if state != "SUCCESS":
            raise ProvisionError(state or "FAILURE", reply.get("errorMsg", ""))
        if reply.get("credentialsType", "ACCESS_TOKEN") != "ACCESS_TOKEN":
            raise ProvisionError("FAILURE", "credentials are not an access token")
        token = reply.get("credentialsValue") or reply.get("accessToken") or reply.get("credentialsId")
        if not token:
            raise ProvisionError("FAILURE", "no access token in the reply")
        return token
