# ThingsBoard HTTP device API (access token in the path), as the server's code behaves. Every
# URL of the API is made here. What the device loop never calls (provisioning, claiming,
# client-side RPC) is in thingsboard_once.py, loaded for one call and unloaded after it.
from micropython import const

from iotlink import http, unload
from iotlink.errors import ProtocolError
from iotlink.http import check
from iotlink.http_transport import transport

# The server cuts every request at 30 s (503); poll for less and read a little longer.
MAX_POLL_MS = const(25000)
_POLL_GRACE_S = const(5)
_POLL_AGAIN = const((408, 503, 504))


class ThingsBoard:
    def __init__(self, server, token, timeout=10, keepalive=False, cadata=None):
        self._server = server.rstrip("/")
        self.use_token(token)
        self.timeout = timeout
        self.transport = transport(server, timeout, keepalive, cadata)  # the clock is set over it too

    def use_token(self, token):
        # Requests from now on go with this token (a new one, after provisioning again).
        self._prefix = self._server + "/api/v1/" + token + "/"

    def call(self, method, path, payload=None, timeout=None, poll=False):
        # One request to the device's API at path (after /api/v1/<token>/): the body of a 2xx
        # reply; else HTTPError. poll: None when the long-poll timer ran out.
        body = payload if payload is None or isinstance(payload, bytes) else http.dumps(payload)
        status, data, _ = self.transport.request(method, self._prefix + path, body, timeout or self.timeout)
        if poll and status in _POLL_AGAIN:
            return None
        check(status, data)
        return data

    def _poll(self, path, timeout_ms):
        # One long-poll: the message, or None when the server's timer ran out.
        timeout_ms = max(1, min(int(timeout_ms), MAX_POLL_MS))
        data = self.call("GET", "%s?timeout=%d" % (path, timeout_ms), timeout=timeout_ms / 1000 + _POLL_GRACE_S,
                          poll=True)
        return http.loads(data) if data else None

    def send_telemetry(self, values, ts=None):
        # values: a dict, or a list of dicts / {"ts", "values"} records (a batch), or that list
        # already encoded as JSON bytes.
        if ts is not None:
            values = {"ts": int(ts), "values": values}
        if not values:
            return  # ThingsBoard never answers a POST of [] (it hangs until 503)
        self.call("POST", "telemetry", values)

    def send_attributes(self, attributes):
        if not isinstance(attributes, dict):
            raise ValueError("attributes must be a dict")
        self.call("POST", "attributes", attributes)

    def request_attributes(self, client_keys=None, shared_keys=None):
        query = []
        for name, keys in (("clientKeys=", client_keys), ("sharedKeys=", shared_keys)):
            if keys:
                query.append(name + ",".join(http.quote(k) for k in keys))
        data = self.call("GET", "attributes" + ("?" + "&".join(query) if query else ""))
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
        if rpc is not None:
            if not (isinstance(rpc, dict) and "id" in rpc and "method" in rpc):
                raise ProtocolError("RPC request without id or method")
            if not isinstance(rpc["id"], int) or isinstance(rpc["id"], bool):  # 1e999 is a float
                raise ProtocolError("RPC request id is not an integer")
        return rpc

    def reply_rpc(self, request_id, result):
        # Id 0 is a valid id: always reply to /rpc/{id}.
        self.call("POST", "rpc/%d" % int(request_id), result)

    def open_package(self, kind, title, version, chunk, size):
        # One chunk of the firmware/software package assigned to the device (kind: "firmware"
        # or "software"), streamed: the caller reads and closes the response.
        url = "%s%s?title=%s&version=%s&size=%d&chunk=%d" % (
            self._prefix, kind, http.quote(title), http.quote(version), size, chunk)
        resp = self.transport.open("GET", url, timeout=self.timeout)
        if resp.status_code != 200:
            check(resp.status_code, http.read_body(resp, 512))
        return resp

    def call_rpc(self, method, params=None, timeout=None):
        # Client-side RPC: the rule chain's reply (the default chain never answers).
        from iotlink import thingsboard_once

        try:
            return thingsboard_once.call_rpc(self, method, params, timeout)
        finally:
            unload("thingsboard_once")

    def claim(self, secret_key=None, duration_ms=None):
        from iotlink import thingsboard_once

        try:
            thingsboard_once.claim(self, secret_key, duration_ms)
        finally:
            unload("thingsboard_once")

    @staticmethod
    def provision(server, device_name, key, secret, timeout=10, cadata=None, token=None):
        # Device self-provisioning: returns the new access token (`token` asks for that one).
        # Cannot be repeated for a name (the server answers FAILURE): save the token at once.
        from iotlink import thingsboard_once

        try:
            return thingsboard_once.provision(server.rstrip("/") + "/api/v1/provision", device_name, key,
                                              secret, timeout, cadata, token)
        finally:
            unload("thingsboard_once")
