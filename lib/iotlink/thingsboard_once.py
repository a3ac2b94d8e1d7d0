# The ThingsBoard device API calls the device loop never makes: self-provisioning, claiming,
# client-side RPC. ThingsBoard's methods of the same names load this module for one call and
# pass what it needs (the client itself, or the provisioning URL).
from iotlink import http
from iotlink.errors import ProtocolError, ProvisionError
from iotlink.http import check
from iotlink.http_transport import transport


def call_rpc(tb, method, params, timeout):
    data = tb.call("POST", "rpc", {"method": method, "params": {} if params is None else params}, timeout)
    return http.loads(data) if data else None


def claim(tb, secret_key, duration_ms):
    body = {}
    if secret_key is not None:
        body["secretKey"] = secret_key
    if duration_ms is not None:
        body["durationMs"] = int(duration_ms)
    tb.call("POST", "claim", body)


def provision(url, device_name, key, secret, timeout, cadata, token):
    body = {"provisionDeviceKey": key, "provisionDeviceSecret": secret}
    if device_name:
        body["deviceName"] = device_name
    if token:
        body["credentialsType"] = "ACCESS_TOKEN"
        body["token"] = token
    # On the connection code the loop uses anyway, closed after: a board provisioning at start
    # keeps no other transport in RAM for the months the loop runs.
    conn = transport(url, timeout, True, cadata)
    try:
        status, data, _ = conn.request("POST", url, http.dumps(body), timeout)
    finally:
        conn.close()
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
