"""The devserver's ThingsBoard REST subset: every endpoint the tools use, with the reference's shapes."""

import threading

import pytest
from support import TENANT, call


@pytest.fixture
def jwt(server):
    status, reply = call(server, "POST", "/api/auth/login", TENANT)
    assert status == 200
    return reply["token"]


def claims(token):
    from iotlink_tools.rest import jwt_claims
    return jwt_claims(token)


def assert_error(reply, status, code):
    assert set(reply) == {"status", "message", "errorCode", "timestamp"}
    assert reply["status"] == status and reply["errorCode"] == code
    assert isinstance(reply["timestamp"], int) and reply["message"]


def test_login_gives_jwt_pair_with_exp(server):
    status, reply = call(server, "POST", "/api/auth/login", TENANT)
    assert status == 200 and set(reply) == {"token", "refreshToken"}
    access, refresh = claims(reply["token"]), claims(reply["refreshToken"])
    assert access["sub"] == "tenant@thingsboard.org" and access["scopes"] == ["TENANT_ADMIN"]
    assert access["exp"] - access["iat"] == 9000
    assert refresh["scopes"] == ["REFRESH_TOKEN"] and refresh["exp"] - refresh["iat"] == 604800


@pytest.mark.parametrize("body", [{"username": "tenant@thingsboard.org", "password": "nope"},
                                  {"username": "someone", "password": "tenant"}, b"not json"])
def test_login_refused_with_error_body(server, body):
    status, reply = call(server, "POST", "/api/auth/login", body)
    assert status == 401
    assert_error(reply, 401, 10)
    assert reply["message"] == "Invalid username or password"


def test_tenant_account_is_configurable(server):
    server.rest.username, server.rest.password = "ops@example.com", "s3cret"
    assert call(server, "POST", "/api/auth/login", TENANT)[0] == 401
    status, reply = call(server, "POST", "/api/auth/login", {"username": "ops@example.com", "password": "s3cret"})
    assert status == 200 and claims(reply["token"])["sub"] == "ops@example.com"


def test_refresh_rotates_both_tokens(server):
    first = call(server, "POST", "/api/auth/login", TENANT)[1]
    server.rest.clock = lambda: claims(first["token"])["iat"] + 5.0  # a later second: new tokens
    status, second = call(server, "POST", "/api/auth/token", {"refreshToken": first["refreshToken"]})
    assert status == 200 and set(second) == {"token", "refreshToken"}
    assert second["token"] != first["token"] and second["refreshToken"] != first["refreshToken"]
    assert call(server, "GET", "/api/tenant/devices?pageSize=10&page=0", token=second["token"])[0] == 200
    # An access token is no refresh token.
    status, reply = call(server, "POST", "/api/auth/token", {"refreshToken": second["token"]})
    assert status == 401 and reply["errorCode"] == 10


def test_expired_access_token_is_401_code_11(server, jwt):
    server.rest.clock = lambda: claims(jwt)["exp"] + 1.0
    status, reply = call(server, "GET", "/api/tenant/devices?pageSize=10&page=0", token=jwt)
    assert status == 401
    assert_error(reply, 401, 11)
    assert reply["message"] == "Token has expired"


def test_short_lifetime_expires_and_refresh_token_outlives_it(server):
    server.rest.access_lifetime_s, server.rest.refresh_lifetime_s = 1, 60
    pair = call(server, "POST", "/api/auth/login", TENANT)[1]
    assert claims(pair["token"])["exp"] - claims(pair["token"])["iat"] == 1
    server.rest.clock = lambda: claims(pair["token"])["iat"] + 2.0
    assert call(server, "GET", "/api/tenant/devices?pageSize=1&page=0", token=pair["token"])[1]["errorCode"] == 11
    status, fresh = call(server, "POST", "/api/auth/token", {"refreshToken": pair["refreshToken"]})
    assert status == 200
    assert call(server, "GET", "/api/tenant/devices?pageSize=1&page=0", token=fresh["token"])[0] == 200


def test_forged_or_missing_token_refused(server, jwt):
    head, payload, _ = jwt.split(".")
    status, reply = call(server, "GET", "/api/tenant/devices?pageSize=1&page=0", token=f"{head}.{payload}.AAAA")
    assert status == 401 and reply["errorCode"] == 11  # ThingsBoard says "expired" for a bad signature
    status, reply = call(server, "GET", "/api/tenant/devices?pageSize=1&page=0")
    assert status == 401
    assert_error(reply, 401, 10)


def test_both_auth_header_forms(server, jwt):
    for header in ("X-Authorization", "Authorization"):
        assert call(server, "GET", "/api/tenant/devices?pageSize=1&page=0", headers={header: f"Bearer {jwt}"})[0] == 200


def test_create_device_with_chosen_token(server, jwt):
    status, dev = call(server, "POST", "/api/device?accessToken=A1B2C3D4E5F6G7H8I9J0",
                       {"name": "pump-17", "type": "default", "label": "Pump 17"}, jwt)
    assert status == 200
    assert dev["id"]["entityType"] == "DEVICE" and dev["name"] == "pump-17" and dev["label"] == "Pump 17"
    assert dev["customerId"] == {"entityType": "CUSTOMER", "id": "13814000-1dd2-11b2-8080-808080808080"}
    assert dev["tenantId"]["entityType"] == "TENANT" and dev["deviceProfileId"]["entityType"] == "DEVICE_PROFILE"
    assert dev["firmwareId"] is None and dev["softwareId"] is None and isinstance(dev["createdTime"], int)
    assert server.device("pump-17")["token"] == "A1B2C3D4E5F6G7H8I9J0"
    status, creds = call(server, "GET", f"/api/device/{dev['id']['id']}/credentials", token=jwt)
    assert status == 200 and creds["credentialsType"] == "ACCESS_TOKEN"
    assert creds["credentialsId"] == "A1B2C3D4E5F6G7H8I9J0" and creds["credentialsValue"] is None
    assert creds["deviceId"] == dev["id"]
    assert call(server, "GET", f"/api/device/{dev['id']['id']}", token=jwt) == (200, dev)


def test_create_without_token_generates_one(server, jwt):
    dev = call(server, "POST", "/api/device", {"name": "auto"}, jwt)[1]
    token = call(server, "GET", f"/api/device/{dev['id']['id']}/credentials", token=jwt)[1]["credentialsId"]
    assert len(token) == 20 and server.device("auto")["token"] == token


def test_duplicate_token_and_name_are_400_and_create_nothing(server, jwt):
    server.add_device("first", "TAKEN")
    status, reply = call(server, "POST", "/api/device?accessToken=TAKEN", {"name": "second"}, jwt)
    assert status == 400
    assert_error(reply, 400, 31)
    assert reply["message"] == "Device credentials are already assigned to another device!"
    status, reply = call(server, "POST", "/api/device?accessToken=FREE", {"name": "first"}, jwt)
    assert status == 400 and "already exists" in reply["message"]
    assert [d["name"] for d in server.devices()] == ["first"]
    assert call(server, "POST", "/api/device", {"type": "default"}, jwt)[0] == 400


def test_lookup_by_name_both_routes_and_miss(server, jwt):
    made = server.add_device("pump-17", "T1")
    for path in ("/api/tenant/devices?deviceName=pump-17", "/api/tenant/device?deviceName=pump-17"):
        status, dev = call(server, "GET", path, token=jwt)
        assert status == 200 and dev["id"]["id"] == made["id"]
    status, reply = call(server, "GET", "/api/tenant/devices?deviceName=nope", token=jwt)
    assert status == 404
    assert_error(reply, 404, 32)
    assert call(server, "GET", "/api/device/00000000-0000-0000-0000-000000000000", token=jwt)[1]["errorCode"] == 32
    assert call(server, "GET", "/api/device/pump-17", token=jwt)[0] == 400  # a name is not an id


def test_paged_listing_with_has_next(server, jwt):
    for i in range(5):
        server.add_device(f"dev-{i}", type="sensor" if i % 2 else "default")
    names, page = [], 0
    while True:
        status, reply = call(server, "GET", f"/api/tenant/devices?pageSize=2&page={page}&sortProperty=name"
                                            "&sortOrder=DESC", token=jwt)
        assert status == 200 and reply["totalElements"] == 5 and reply["totalPages"] == 3
        names += [d["name"] for d in reply["data"]]
        if not reply["hasNext"]:
            break
        page += 1
    assert names == ["dev-4", "dev-3", "dev-2", "dev-1", "dev-0"] and page == 2
    reply = call(server, "GET", "/api/tenant/devices?pageSize=10&page=0&type=sensor", token=jwt)[1]
    assert sorted(d["name"] for d in reply["data"]) == ["dev-1", "dev-3"]
    reply = call(server, "GET", "/api/tenant/devices?pageSize=10&page=0&textSearch=V-2", token=jwt)[1]
    assert [d["name"] for d in reply["data"]] == ["dev-2"] and reply["hasNext"] is False
    assert call(server, "GET", "/api/tenant/devices", token=jwt)[1]["errorCode"] == 31


def test_delete_device(server, jwt):
    dev = server.add_device("gone")
    assert call(server, "DELETE", f"/api/device/{dev['id']}", token=jwt) == (200, None)
    assert server.devices() == []
    assert call(server, "DELETE", f"/api/device/{dev['id']}", token=jwt)[0] == 404


def test_latest_telemetry_strict_string_and_null_quirk(server, jwt):
    dev = server.add_device("t", "TT")
    server.store_telemetry(dev["id"], 1700000000000, {"uptime_s": 12, "temp": 26.0, "big": 1.0e7,
                                                      "on": True, "info": {"a": 1}, "name": "x"})
    server.store_telemetry(dev["id"], 1700000001000, {"uptime_s": 13})
    base = f"/api/plugins/telemetry/DEVICE/{dev['id']}/values/timeseries"
    status, strict = call(server, "GET", base + "?keys=uptime_s,temp,on,info,missing&useStrictDataTypes=true",
                          token=jwt)
    assert status == 200
    assert strict["uptime_s"] == [{"ts": 1700000001000, "value": 13}]
    assert strict["temp"] == [{"ts": 1700000000000, "value": 26.0}]
    assert strict["on"][0]["value"] is True and strict["info"][0]["value"] == {"a": 1}
    assert strict["missing"][0]["value"] is None and strict["missing"][0]["ts"] > 1700000001000
    loose = call(server, "GET", base + "?keys=uptime_s,temp,big,on,info", token=jwt)[1]
    assert [loose[k][0]["value"] for k in ("uptime_s", "temp", "big", "on", "info")] == \
        ["13", "26.0", "1.0E7", "true", '{"a":1}']
    every = call(server, "GET", base + "?useStrictDataTypes=true", token=jwt)[1]
    assert set(every) == {"uptime_s", "temp", "big", "on", "info", "name"}


def test_shared_attributes_write_read_delete(server, jwt):
    dev = server.add_device("a", "AA")
    base = f"/api/plugins/telemetry/DEVICE/{dev['id']}"
    assert call(server, "POST", base + "/attributes/SHARED_SCOPE",
                {"interval_s": 30, "fw_version": "1.2.0", "ratio": "1.5"}, jwt) == (200, None)
    assert call(server, "POST", base + "/SHARED_SCOPE", {"mode": "eco"}, jwt) == (200, None)  # older path
    status, items = call(server, "GET", base + "/values/attributes/SHARED_SCOPE?keys=interval_s,ratio,mode",
                         token=jwt)
    assert status == 200
    assert [(i["key"], i["value"]) for i in items] == [("interval_s", 30), ("mode", "eco"), ("ratio", 1.5)]
    assert all(isinstance(i["lastUpdateTs"], int) for i in items)  # numeric strings were type-cast
    assert call(server, "DELETE", base + "/SHARED_SCOPE?keys=mode,ratio", token=jwt) == (200, None)
    assert server.shared_attributes("a") == {"interval_s": 30, "fw_version": "1.2.0"}
    status, reply = call(server, "POST", base + "/attributes/SHARED_SCOPE", {}, jwt)
    assert (status, reply) == (400, b"No attributes data found in request body!")  # plain text, as ThingsBoard
    assert call(server, "POST", base + "/attributes/SHARED_SCOPE", {"x": None}, jwt)[0] == 500
    assert call(server, "POST", base + "/attributes/NOPE_SCOPE", {"x": 1}, jwt)[0] == 400


def test_shared_attribute_write_reaches_a_polling_device(server, jwt):
    dev = server.add_device("p", "PP")
    got = {}
    poll = threading.Thread(target=lambda: got.update(update=server.wait_attribute_update(dev["id"], 5)))
    poll.start()
    server.wait_for(lambda: server._attr_waiters.get(dev["id"]), 5)
    call(server, "POST", f"/api/plugins/telemetry/DEVICE/{dev['id']}/attributes/SHARED_SCOPE", {"led": 1}, jwt)
    poll.join(5)
    assert got["update"] == {"led": 1}


def answer_rpcs(server, device_id, reply_body):
    """A device that takes the next RPC and, unless reply_body is None, answers it with reply_body."""
    def run():
        rpc = server.wait_for(lambda: server.next_rpc(device_id), 5)
        if rpc and reply_body is not None:
            server.answer_rpc(device_id, rpc["id"], reply_body)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_twoway_rpc_returns_device_reply_body(server, jwt):
    dev = server.add_device("r", "RR")
    device = answer_rpcs(server, dev["id"], b'{"pin": "23", "value": 1}')
    status, reply = call(server, "POST", f"/api/rpc/twoway/{dev['id']}",
                         {"method": "setGpio", "params": {"pin": "23", "value": 1}, "timeout": 5000}, jwt)
    device.join(6)
    assert status == 200 and reply == {"pin": "23", "value": 1}
    assert server.rpc_status("r", 0)["status"] == "SUCCESSFUL"


def test_twoway_rpc_reply_not_json_is_406(server, jwt):
    dev = server.add_device("r", "RR")
    device = answer_rpcs(server, dev["id"], b"plain text")
    status, _ = call(server, "POST", f"/api/rpc/twoway/{dev['id']}", {"method": "m", "params": {}}, jwt)
    device.join(6)
    assert status == 406


@pytest.mark.slow
def test_oneway_rpc_200_once_delivered(server, jwt):
    dev = server.add_device("o", "OO")
    device = answer_rpcs(server, dev["id"], None)
    status, reply = call(server, "POST", f"/api/rpc/oneway/{dev['id']}", {"method": "reboot", "params": {}}, jwt)
    device.join(6)
    assert (status, reply) == (200, None)
    assert server.rpc_status("o", 0)["status"] == "DELIVERED"


@pytest.mark.parametrize("kind", ["oneway", "twoway"])
def test_rpc_nobody_answers_is_504(server, jwt, kind):
    server.rest.rpc_min_timeout_ms = 200
    dev = server.add_device("silent", "SS")
    status, _ = call(server, "POST", f"/api/rpc/{kind}/{dev['id']}",
                     {"method": "getGpio", "params": {"pin": "23"}, "timeout": 500}, jwt)
    assert status == 504
    assert server.next_rpc(dev["id"]) is None  # expired: never delivered later


def test_rpc_beyond_async_cap_is_500_request_timeout(server, jwt):
    server.async_timeout_ms = 300
    server.rest.rpc_min_timeout_ms = 200
    dev = server.add_device("silent", "SS")
    status, reply = call(server, "POST", f"/api/rpc/twoway/{dev['id']}",
                         {"method": "m", "params": {}, "timeout": 1000}, jwt)
    assert status == 500 and reply["message"] == "Request timeout"


def test_rpc_minimum_timeout_applies(server, jwt):
    dev = server.add_device("late", "LL")
    server.rest.rpc_min_timeout_ms = 2000
    device = threading.Timer(0.8, lambda: server.answer_rpc(dev["id"], server.next_rpc(dev["id"])["id"], b"{}"))
    device.start()
    # timeout 100 ms is raised to the 2 s minimum, so an answer after 0.8 s still arrives.
    status, reply = call(server, "POST", f"/api/rpc/twoway/{dev['id']}", {"method": "m", "params": {},
                                                                          "timeout": 100}, jwt)
    device.join()
    assert (status, reply) == (200, {})


def test_rpc_bad_body_is_400(server, jwt):
    dev = server.add_device("r", "RR")
    status, reply = call(server, "POST", f"/api/rpc/twoway/{dev['id']}", {"params": {}}, jwt)
    assert status == 400
    assert_error(reply, 400, 31)


def test_logout(server, jwt):
    assert call(server, "POST", "/api/auth/logout", b"", jwt)[0] == 200
