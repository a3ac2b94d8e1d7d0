"""The devserver's routes are ThingsBoard's and thethings.iO's, with their semantics: what the
official clients do not reach (lenient bodies, the older RPC paths, multipart fields, limits),
the command line, and the page's login."""

from __future__ import annotations

import base64
import re
import subprocess
import threading
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import IOTLINK, call

from iotlink_tools.devserver.checksums import checksum
from iotlink_tools.devserver.thethings import iso
from iotlink_tools.rest import ThingsBoardREST, multipart

DAY0 = 1700000000000

# Every route the devserver serves: ThingsBoard's (device API, REST API), thethings.iO's, and the
# page's own three. A route added without being one of theirs fails this list.
ROUTES = {
    ("GET", "/"), ("GET", "/static/{name}"), ("GET", "/static/vendor/{name}"),
    # ThingsBoard device API
    ("GET", "/api/v1/{token}/firmware"), ("GET", "/api/v1/{token}/software"),
    ("POST", "/api/v1/{token}/telemetry"), ("POST", "/api/v1/{token}/attributes"),
    ("GET", "/api/v1/{token}/attributes"), ("GET", "/api/v1/{token}/attributes/updates"),
    ("GET", "/api/v1/{token}/rpc"), ("POST", "/api/v1/{token}/rpc/{id}"), ("POST", "/api/v1/{token}/rpc"),
    ("POST", "/api/v1/{token}/claim"), ("POST", "/api/v1/provision"),
    # ThingsBoard REST API: AuthController, ApiKeyController
    ("POST", "/api/auth/login"), ("POST", "/api/auth/token"), ("POST", "/api/auth/logout"), ("GET", "/api/auth/user"),
    ("POST", "/api/apiKey"), ("GET", "/api/apiKeys/{userId}"), ("PUT", "/api/apiKey/{id}/enabled/{enabled}"),
    ("PUT", "/api/apiKey/{id}/description"), ("DELETE", "/api/apiKey/{id}"),
    # DeviceController, DeviceProfileController
    ("POST", "/api/device"), ("POST", "/api/device-with-credentials"), ("GET", "/api/device/{id}"),
    ("DELETE", "/api/device/{id}"), ("GET", "/api/device/{id}/credentials"), ("POST", "/api/device/credentials"),
    ("GET", "/api/tenant/devices"), ("GET", "/api/tenant/device"),
    ("POST", "/api/deviceProfile"), ("GET", "/api/deviceProfile/{id}"), ("DELETE", "/api/deviceProfile/{id}"),
    ("POST", "/api/deviceProfile/{id}/default"), ("GET", "/api/deviceProfiles"), ("GET", "/api/deviceProfileInfos"),
    ("GET", "/api/deviceProfileInfo/default"), ("GET", "/api/deviceProfileInfo/{id}"),
    # TelemetryController
    ("POST", "/api/plugins/telemetry/DEVICE/{id}/{scope:[A-Z_]+_SCOPE}"),
    ("DELETE", "/api/plugins/telemetry/DEVICE/{id}/{scope:[A-Z_]+_SCOPE}"),
    ("POST", "/api/plugins/telemetry/{id}/{scope:[A-Z_]+_SCOPE}"),
    ("DELETE", "/api/plugins/telemetry/{id}/{scope:[A-Z_]+_SCOPE}"),
    ("GET", "/api/plugins/telemetry/DEVICE/{id}/values/timeseries"),
    ("GET", "/api/plugins/telemetry/DEVICE/{id}/values/timeseries/history"),
    ("POST", "/api/plugins/telemetry/DEVICE/{id}/timeseries/{scope}"),
    ("POST", "/api/plugins/telemetry/DEVICE/{id}/attributes/{scope}"),
    ("GET", "/api/plugins/telemetry/DEVICE/{id}/values/attributes"),
    ("GET", "/api/plugins/telemetry/DEVICE/{id}/values/attributes/{scope}"),
    # RpcV2Controller, RpcV1Controller
    ("POST", "/api/rpc/oneway/{id}"), ("POST", "/api/rpc/twoway/{id}"),
    ("POST", "/api/plugins/rpc/oneway/{id}"), ("POST", "/api/plugins/rpc/twoway/{id}"),
    ("GET", "/api/rpc/persistent/device/{id}"), ("GET", "/api/rpc/persistent/{rpcId}"),
    ("DELETE", "/api/rpc/persistent/{rpcId}"),
    # OtaPackageController
    ("POST", "/api/otaPackage"), ("GET", "/api/otaPackages"), ("GET", "/api/otaPackages/{profileId}/{type}"),
    ("GET", "/api/otaPackage/info/{id}"), ("GET", "/api/otaPackage/{id}/download"), ("GET", "/api/otaPackage/{id}"),
    ("POST", "/api/otaPackage/{id}"), ("DELETE", "/api/otaPackage/{id}"),
    # thethings.iO API v2
    ("POST", "/v2/things/?"), ("POST", "/v2/things/{token}"), ("GET", "/v2/things/{token}"),
    ("GET", "/v2/things/{token}/resources/{key}"), ("GET", "/v2/utils/date"), ("GET", "/v2/?"),
}


@pytest.fixture
def jwt(server):
    return call(server, "POST", "/api/auth/login", {"username": "tenant@thingsboard.org", "password": "tenant"})[1]["token"]


def test_no_route_outside_thingsboard_thethings_and_the_page(server):
    assert set(server.router.patterns) == ROUTES
    assert len(server.router.patterns) == len(ROUTES)  # none twice


# ---- device bodies as Gson reads them ------------------------------------------------------

@pytest.mark.parametrize("body, stored", [
    (b"{temperature:42}", {"temperature": 42}),  # what the docs' curl line sends once a shell ate the quotes
    (b"{'mode':'eco', level: 07, note: NaN}", {"mode": "eco", "level": 7, "note": "NaN"}),
    (b"{a=1; b=>2.5} // trailing comment", {"a": 1, "b": 2.5}),
    (b"# comment\n{on: TRUE, off: false, none: null}", {"on": True, "off": False}),
])
def test_device_telemetry_accepts_what_gson_accepts(server, device, body, stored):
    assert call(server, "POST", "/api/v1/TEST_TOKEN/telemetry", body) == (200, None)
    assert {key: value for key, (_, value) in server.latest_telemetry("test-device").items()} == stored


def test_device_attributes_are_lenient_too_and_gsons_refusals_stay_500(server, device):
    assert call(server, "POST", "/api/v1/TEST_TOKEN/attributes", b"{pins:['23',led]}") == (200, None)
    assert server.client_attributes("test-device") == {"pins": ["23", "led"]}
    for body in (b"{a:1,}", b"{a:1}}", b"{", b"[" * 300 + b"]" * 300):
        status, reply = call(server, "POST", "/api/v1/TEST_TOKEN/telemetry", body)
        assert status == 500 and reply.startswith(b"Invalid JSON: ")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=200),
                      st.text(alphabet="{}[]:,;='\"#/\\ abc019.-eEtrunlTNx\n", max_size=80).map(str.encode)))
def test_no_device_body_breaks_the_server(server, device, body):
    for path in ("telemetry", "attributes", "rpc/0"):
        status, reply = call(server, "POST", f"/api/v1/TEST_TOKEN/{path}", body, raw=True)
        assert status in (200, 400, 500) and not reply.startswith(b"internal error")


# ---- REST: telemetry and attributes ----------------------------------------------------------

def test_history_needs_keys_start_and_end_on_the_old_path(server, device, jwt):
    for i in range(5):
        server.store_telemetry(device["id"], DAY0 + i, {"t": i, "s": f"v{i}"})
    base = f"/api/plugins/telemetry/DEVICE/{device['id']}/values/timeseries"
    ranged = call(server, "GET", base + f"?keys=t&startTs={DAY0}&endTs={DAY0 + 3}", token=jwt)[1]
    assert ranged == {"t": [{"ts": DAY0 + 2, "value": "2"}, {"ts": DAY0 + 1, "value": "1"}, {"ts": DAY0, "value": "0"}]}
    # Without keys ThingsBoard maps the request to the latest values.
    latest = call(server, "GET", base + f"?startTs={DAY0}&endTs={DAY0 + 3}&useStrictDataTypes=true", token=jwt)[1]
    assert latest == {"s": [{"ts": DAY0 + 4, "value": "v4"}], "t": [{"ts": DAY0 + 4, "value": 4}]}
    history = call(server, "GET", base + f"/history?key=s&key=t&startTs={DAY0}&endTs={DAY0 + 5}&limit=1"
                                         "&useStrictDataTypes=true", token=jwt)[1]
    assert history == {"s": [{"ts": DAY0 + 4, "value": "v4"}], "t": [{"ts": DAY0 + 4, "value": 4}]}
    strings = call(server, "GET", base + f"/history?keys=s&startTs={DAY0}&endTs={DAY0 + 5}&agg=MAX&interval=5",
                   token=jwt)[1]
    assert strings == {"s": [{"ts": DAY0 + 2, "value": "v4"}]}
    status, reply = call(server, "GET", base + f"/history?keys=t&startTs={DAY0}&endTs={DAY0 + 1000}&agg=AVG"
                                               "&interval=1", token=jwt)
    assert status == 400 and "Number of intervals is to high" in reply["message"]


def test_rest_telemetry_and_attribute_writes(server, device, jwt):
    base = f"/api/plugins/telemetry/DEVICE/{device['id']}"
    assert call(server, "POST", base + "/timeseries/ANY", b"[{ts:5,values:{a:1}},{ts:6,values:{a:2}}]",
                token=jwt) == (200, None)
    assert server.telemetry("test-device", "a") == [(5, "a", 1), (6, "a", 2)]
    assert call(server, "POST", base + "/timeseries/ANY", {}, token=jwt) == \
        (400, b"No time series data found in request body!")
    assert call(server, "POST", f"/api/plugins/telemetry/{device['id']}/SERVER_SCOPE", b"{site:north}",
                token=jwt) == (200, None)
    assert call(server, "POST", base + "/attributes/SERVER_SCOPE", b"{", token=jwt) == (400, b"Invalid JSON")
    assert call(server, "POST", base + "/attributes/CLIENT_SCOPE", {"x": 1}, token=jwt) == \
        (400, b"Invalid scope: CLIENT_SCOPE")
    assert [a["key"] for a in call(server, "GET", base + "/values/attributes", token=jwt)[1]] == ["site"]
    assert call(server, "DELETE", f"/api/plugins/telemetry/{device['id']}/SERVER_SCOPE?keys=site", token=jwt) == \
        (200, None)
    assert call(server, "GET", base + "/values/attributes?keys=site", token=jwt)[1] == []


# ---- REST: RPC -------------------------------------------------------------------------------

def test_older_rpc_paths_answer_408_and_409(server, device, jwt):
    server.rest.rpc_min_timeout_ms = 200
    body = {"method": "m", "params": {}, "timeout": 300}
    assert call(server, "POST", f"/api/plugins/rpc/twoway/{device['id']}", body, jwt)[0] == 409  # nobody polled
    # A device takes the next one and never answers.
    taker = threading.Thread(target=lambda: server.wait_for(lambda: server.next_rpc(device["id"]), 2))
    taker.start()
    assert call(server, "POST", f"/api/plugins/rpc/twoway/{device['id']}", body, jwt)[0] == 408
    taker.join()
    assert call(server, "POST", f"/api/rpc/twoway/{device['id']}", body, jwt)[0] == 504


def test_persistent_rpc_lives_until_its_expiration(server, device, jwt):
    status, reply = call(server, "POST", f"/api/rpc/oneway/{device['id']}",
                         {"method": "wake", "params": {}, "persistent": True, "timeout": 60000}, jwt)
    assert status == 200 and set(reply) == {"rpcId"}
    got = call(server, "GET", "/api/v1/TEST_TOKEN/rpc?timeout=100")
    assert got == (200, {"id": 0, "method": "wake", "params": {}})
    rpc = call(server, "GET", f"/api/rpc/persistent/{reply['rpcId']}", token=jwt)[1]
    assert rpc["status"] == "DELIVERED" and rpc["id"] == {"entityType": "RPC", "id": reply["rpcId"]}
    assert call(server, "GET", "/api/v1/TEST_TOKEN/rpc?timeout=100")[0] == 408  # one-way: delivered once
    assert call(server, "GET", f"/api/rpc/persistent/device/{device['id']}?pageSize=10&page=0&rpcStatus=DELETED",
                token=jwt)[0] == 400


# ---- REST: OTA packages ----------------------------------------------------------------------

def test_ota_upload_with_the_43_clients_multipart_fields(server, device, jwt):
    profile = server.default_profile()["id"]
    info = call(server, "POST", "/api/otaPackage", {"title": "fw", "version": "1.0.0", "type": "FIRMWARE",
                                                     "deviceProfileId": {"entityType": "DEVICE_PROFILE", "id": profile}},
                jwt)[1]
    path = f"/api/otaPackage/{info['id']['id']}"
    wrong = multipart({"checksumAlgorithm": "MD5", "checksum": "00"}, "file", "fw.bin", b"firmware", "application/x-bin")
    assert call(server, "POST", path, wrong.data, jwt, {"Content-Type": wrong.content_type})[1]["message"] == \
        "Wrong otaPackage file!"
    right = multipart({"checksumAlgorithm": "MD5", "checksum": checksum("MD5", b"firmware")}, "file", "fw.bin",
                      b"firmware", "application/x-bin")
    status, saved = call(server, "POST", path, right.data, jwt, {"Content-Type": right.content_type})
    assert status == 200 and (saved["checksumAlgorithm"], saved["fileName"], saved["contentType"]) == \
        ("MD5", "fw.bin", "application/x-bin")
    assert base64.b64decode(call(server, "GET", path, token=jwt)[1]["data"]) == b"firmware"
    status, data = call(server, "GET", path + "/download", token=jwt, raw=True)
    assert (status, data) == (200, b"firmware")
    assert [p["title"] for p in call(server, "GET", f"/api/otaPackages/{profile}/FIRMWARE?pageSize=5&page=0",
                                     token=jwt)[1]["data"]] == ["fw"]
    assert call(server, "GET", f"/api/otaPackages/{profile}/SOFTWARE?pageSize=5&page=0", token=jwt)[1]["data"] == []


def test_packages_of_another_profile_or_by_url(server, device, jwt):
    other = server.add_device_profile("other")
    foreign = server.add_package("fw", "1.0.0", b"x", profile="other")
    dev = call(server, "GET", f"/api/device/{device['id']}", token=jwt)[1]
    dev["firmwareId"] = {"entityType": "OTA_PACKAGE", "id": foreign}
    assert call(server, "POST", "/api/device", dev, jwt)[1]["message"] == "Can't assign firmware with different deviceProfile!"
    dev["deviceProfileId"] = {"entityType": "DEVICE_PROFILE", "id": other["id"]}
    assert call(server, "POST", "/api/device", dev, jwt)[1]["type"] == "other"
    by_url = call(server, "POST", "/api/otaPackage", {"title": "app", "version": "2.0.0", "type": "SOFTWARE",
                                                      "deviceProfileId": {"id": other["id"]}, "usesUrl": True,
                                                      "url": "https://example.com/app.tar"}, jwt)[1]
    dev = call(server, "GET", f"/api/device/{device['id']}", token=jwt)[1]
    dev["softwareId"] = by_url["id"]
    call(server, "POST", "/api/device", dev, jwt)
    assert server.shared_attributes("test-device")["sw_url"] == "https://example.com/app.tar"
    assert call(server, "GET", "/api/v1/TEST_TOKEN/software?title=app&version=2.0.0")[0] == 404


# ---- REST: profiles and API keys -------------------------------------------------------------

def test_profiles_follow_thingsboards_rules(server, jwt):
    made = call(server, "POST", "/api/device", {"name": "d", "type": "thermo"}, jwt)[1]
    profile = call(server, "GET", f"/api/deviceProfile/{made['deviceProfileId']['id']}", token=jwt)[1]
    assert profile["name"] == "thermo" and profile["default"] is False  # a new type makes a profile
    assert call(server, "DELETE", f"/api/deviceProfile/{profile['id']['id']}", token=jwt)[0] == 400  # in use
    profile.update(provisionType="CHECK_PRE_PROVISIONED_DEVICES", provisionDeviceKey="K")
    profile["profileData"]["provisionConfiguration"] = {"type": "CHECK_PRE_PROVISIONED_DEVICES",
                                                        "provisionDeviceSecret": "S"}
    assert call(server, "POST", "/api/deviceProfile", profile, jwt)[0] == 200
    provision = {"provisionDeviceKey": "K", "provisionDeviceSecret": "S"}
    assert call(server, "POST", "/api/v1/provision", {**provision, "deviceName": "d"})[1]["status"] == "SUCCESS"
    assert call(server, "POST", "/api/v1/provision", {**provision, "deviceName": "new"})[1]["status"] == "FAILURE"
    names = [p["name"] for p in call(server, "GET", "/api/deviceProfileInfos?pageSize=10&page=0&sortProperty=name",
                                     token=jwt)[1]["data"]]
    assert names == ["default", "thermo"]


def test_api_key_header(server, jwt):
    user = call(server, "GET", "/api/auth/user", token=jwt)[1]
    key = call(server, "POST", "/api/apiKey", {"description": "ci", "userId": user["id"]}, jwt)[1]
    by_key = {"X-Authorization": f"ApiKey {key['value']}"}
    assert call(server, "GET", "/api/tenant/devices?pageSize=1&page=0", headers=by_key)[0] == 200
    assert call(server, "DELETE", f"/api/apiKey/{key['id']['id']}", token=jwt) == (200, None)
    assert call(server, "GET", "/api/tenant/devices?pageSize=1&page=0", headers=by_key)[0] == 401


# ---- thethings.iO ---------------------------------------------------------------------------

def test_thethings_read_serves_up_to_1000_values(server):
    token = server.thethings.add_thing()["token"]
    server.thethings.write(token, [{"key": "n", "value": i, "datetime": iso(DAY0 + i)} for i in range(1500)])
    first = call(server, "GET", f"/v2/things/{token}/resources/n?limit=1000")[1]
    assert [v["value"] for v in first] == list(range(1499, 499, -1))
    assert len(call(server, "GET", f"/v2/things/{token}/resources/n?limit=5000")[1]) == 1000
    older = call(server, "GET", f"/v2/things/{token}/resources/n?limit=1000&endDate={first[-1]['datetime']}")[1]
    assert [v["value"] for v in older] == list(range(500, -1, -1))  # endDate is inclusive


# ---- the command line ----------------------------------------------------------------------

def test_devserver_command_creates_what_the_python_api_does(tmp_path):
    proc = subprocess.Popen(
        [IOTLINK, "devserver", "--http-port", "0", "--db", str(tmp_path / "dev.db"), "--user", "ops@example.com",
         "--password", "s3cret", "--device", "pump-1:PUMP1", "--provision", "KEY:SECRET", "--pre-provisioned",
         "--rpc-reply", 'getTime={"time": 1}', "--thing", "THING1", "--activation", "ACT-1:P1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "iotlink devserver on" in line:
                break
        url = re.search(r"(https?://[\d.]+:\d+)", lines[-1])[1]
        server = SimpleNamespace(url=url)
        provision = {"provisionDeviceKey": "KEY", "provisionDeviceSecret": "SECRET"}
        assert call(server, "POST", "/api/v1/provision", {**provision, "deviceName": "pump-1"})[1] == \
            {"credentialsValue": "PUMP1", "credentialsType": "ACCESS_TOKEN", "status": "SUCCESS"}
        assert call(server, "POST", "/api/v1/provision", {**provision, "deviceName": "pump-2"})[1]["status"] == "FAILURE"
        assert call(server, "POST", "/api/v1/PUMP1/rpc", {"method": "getTime", "params": {}}) == (200, {"time": 1})
        assert call(server, "POST", "/v2/things/THING1", {"values": [{"key": "t", "value": 1}]})[0] == 201
        assert call(server, "POST", "/v2/things/", {"activationCode": "ACT-1", "productId": "P1"})[0] == 201
        rest = ThingsBoardREST(url, "ops@example.com", "s3cret", retries=0)
        assert [d["name"] for d in rest.devices()] == ["pump-1"]
    finally:
        proc.terminate()  # not SIGINT: a shell that starts the tests in the background ignores it
        proc.wait(10)


# ---- the page's login ------------------------------------------------------------------------

def test_page_asks_to_log_in_when_the_default_tenant_is_refused(server, device, browser):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server.rest.password = "s3cret"
    wait = WebDriverWait(browser, 15)
    browser.get(server.url + "/")
    form = wait.until(lambda d: d.find_element(By.ID, "login") if d.find_element(By.ID, "login").is_displayed()
                      else None)
    form.find_element(By.NAME, "username").send_keys("tenant@thingsboard.org")
    form.find_element(By.NAME, "password").send_keys("wrong")
    form.find_element(By.CSS_SELECTOR, "button").click()
    wait.until(lambda d: form.find_element(By.CSS_SELECTOR, ".login-error").is_displayed())
    form.find_element(By.NAME, "password").clear()
    form.find_element(By.NAME, "password").send_keys("s3cret")
    form.find_element(By.CSS_SELECTOR, "button").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '[data-device="test-device"]'))
    assert not form.is_displayed()
