"""The devserver as ThingsBoard's own Python clients see it: tb-rest-client's RestClient (the REST
side) and tb-mqtt-client's TBHTTPDevice (a device), pinned in the `test` extra.

Where a client has a bug, the test says so and works around it; the devserver behaves like
ThingsBoard, not like the bug.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timezone

import pytest
import requests
from tb_device_http import TBHTTPDevice
from tb_rest_client.models import (ApiKeyInfo, Device, DeviceCredentials, RpcId, SaveOtaPackageInfoRequest)
from tb_rest_client.rest import ApiException
from tb_rest_client.rest_client import RestClient

from iotlink_tools.devserver.checksums import checksum

DAY0 = 1700000000000


@pytest.fixture
def client(server):
    rest = RestClient(server.url)
    rest.login("tenant@thingsboard.org", "tenant")
    return rest


@pytest.fixture
def made(client):
    """A device made the way the client's own examples make one: in the default profile."""
    profile = client.get_default_device_profile_info()
    return client.save_device(Device(name="pump-1", label="Pump 1", device_profile_id=profile.id),
                              access_token="PUMP1_TOKEN")


def points(reply):
    """The client's {key: [TsData]} as {key: [(ts, value)]}."""
    return {key: [(p.ts, p.value) for p in values] for key, values in reply.items()}


@contextmanager
def http_device(server, token, answer=lambda request: None):
    """A TBHTTPDevice long-polling for RPC; answer(request) -> the reply body, or None for none."""
    device = TBHTTPDevice(server.url, token)
    # The SDK long-polls for 30 s, longer than the async cap of the test server (3 s): its polling
    # thread would end on the 503. Its timeout has no setter.
    device._TBHTTPDevice__config["timeout"] = 1

    def on_rpc(request):
        reply = answer(request)
        if reply is not None:
            # TBHTTPDevice.send_rpc(rpc_id=0) posts to /rpc (a client-side RPC) instead of /rpc/0
            # (its `if rpc_id:`); reply on the request id's own route, as ThingsBoard expects.
            device._publish_data(reply, f"rpc/{request['id']}")

    device.subscribe("rpc", on_rpc)
    try:
        yield device
    finally:
        device.unsubscribe("rpc")
        device._TBHTTPDevice__worker["rpc"]["thread"].join(5)


def test_login_user_and_a_device_with_the_default_profile(server, client, made):
    user = client.get_user()
    assert user.email == "tenant@thingsboard.org" and user.authority == "TENANT_ADMIN"
    profile = client.get_default_device_profile_info()
    assert profile.name == "default" and client.get_device_profile_by_id(profile.id).default is True
    assert made.type == "default" and made.device_profile_id.id == profile.id.id and made.label == "Pump 1"
    assert client.get_device_by_id(made.id).name == "pump-1" == client.get_tenant_device("pump-1").name
    assert client.get_device_credentials_by_device_id(made.id).credentials_id == "PUMP1_TOKEN"
    assert [d.name for d in client.get_tenant_devices(10, 0).data] == ["pump-1"]


def test_device_update_rename_label_and_new_credentials(server, client, made):
    made.name, made.label = "pump-one", None
    saved = client.save_device(made)
    assert saved.id.id == made.id.id and (saved.name, saved.label) == ("pump-one", None)
    assert server.device(made.id.id)["name"] == "pump-one"
    credentials = client.get_device_credentials_by_device_id(made.id)
    credentials.credentials_id = "NEW_TOKEN"
    assert client.update_device_credentials(credentials).credentials_id == "NEW_TOKEN"
    assert server.device_by_token("NEW_TOKEN")["id"] == made.id.id and server.device_by_token("PUMP1_TOKEN") is None
    other = client.save_device(Device(name="pump-2"))
    credentials.device_id = other.id
    with pytest.raises(ApiException) as taken:
        client.update_device_credentials(credentials)
    assert taken.value.status == 400 and b"already assigned" in taken.value.body


def test_latest_and_ranged_telemetry_with_aggregation(server, client, made):
    for i, value in enumerate([1, 2, 3, 4, 5.5]):
        server.store_telemetry(made.id.id, DAY0 + i * 1000, {"t": value})
    device = TBHTTPDevice(server.url, "PUMP1_TOKEN")
    device.send_telemetry({"t": 9}, timestamp=datetime.fromtimestamp((DAY0 + 10000) / 1000, timezone.utc),
                          queued=False)

    assert points(client.get_latest_timeseries(made.id, "t", use_strict_data_types=True)) == \
        {"t": [(DAY0 + 10000, 9)]}
    assert points(client.get_latest_timeseries(made.id, "t")) == {"t": [(DAY0 + 10000, "9")]}
    ranged = client.get_timeseries(made.id, DAY0 + 1000, DAY0 + 4000, keys="t", use_strict_data_types=True)
    assert points(ranged) == {"t": [(DAY0 + 3000, 4), (DAY0 + 2000, 3), (DAY0 + 1000, 2)]}  # start <= ts < end
    oldest = client.get_timeseries(made.id, DAY0, DAY0 + 20000, keys="t", limit=2, order_by="ASC",
                                   use_strict_data_types=True)
    assert points(oldest) == {"t": [(DAY0, 1), (DAY0 + 1000, 2)]}

    def agg(name):
        return points(client.get_timeseries(made.id, DAY0, DAY0 + 6000, keys="t", agg=name, interval=3000,
                                            use_strict_data_types=True))["t"]
    assert agg("AVG") == [(DAY0 + 1500, 2.0), (DAY0 + 4500, 4.75)]  # one value per interval, at its middle
    assert agg("SUM") == [(DAY0 + 1500, 6), (DAY0 + 4500, 9.5)]
    assert agg("MIN") == [(DAY0 + 1500, 1), (DAY0 + 4500, 4.0)]
    assert agg("MAX") == [(DAY0 + 1500, 3), (DAY0 + 4500, 5.5)]
    assert agg("COUNT") == [(DAY0 + 1500, 3), (DAY0 + 4500, 2)]
    assert client.get_timeseries(made.id, DAY0 + 50000, DAY0 + 60000, keys="t") == {}

    client.save_entity_telemetry(made.id, "ANY", {"ts": DAY0 + 20000, "values": {"from_rest": 7}})
    assert server.telemetry(made.id.id, "from_rest") == [(DAY0 + 20000, "from_rest", 7)]


def test_attributes_in_every_scope(server, client, made):
    device = TBHTTPDevice(server.url, "PUMP1_TOKEN")
    device.send_attributes({"gpio_pins": ["23"]})
    client.save_device_attributes(made.id, "SERVER_SCOPE", {"site": "north"})
    client.save_device_attributes(made.id, "SHARED_SCOPE", {"interval_s": 30})

    def scope(name):
        return {a.key: a.value for a in client.get_attributes_by_scope(made.id, name)}
    assert (scope("CLIENT_SCOPE"), scope("SERVER_SCOPE"), scope("SHARED_SCOPE")) == \
        ({"gpio_pins": ["23"]}, {"site": "north"}, {"interval_s": 30})
    assert [a.key for a in client.get_attributes(made.id)] == ["gpio_pins", "site", "interval_s"]
    assert [a.key for a in client.get_attributes(made.id, "site,interval_s")] == ["site", "interval_s"]
    # TBHTTPDevice.request_attributes sends client_keys/shared_keys, names ThingsBoard does not
    # know (it reads clientKeys/sharedKeys), so it gets every client and shared attribute.
    assert device.request_attributes(shared_keys=["interval_s"]) == \
        {"client": {"gpio_pins": ["23"]}, "shared": {"interval_s": 30}}
    for name in ("CLIENT_SCOPE", "SERVER_SCOPE", "SHARED_SCOPE"):
        client.delete_device_attributes(made.id, name, ",".join(scope(name)))
        assert scope(name) == {}


@pytest.mark.parametrize("call", ["v2", "v1"])
def test_two_way_and_one_way_rpc_answered_by_a_device(server, client, made, call):
    seen = []

    def answer(request):
        seen.append(request)
        return {"pin": request["params"]["pin"], "value": 1} if request["method"] == "setGpio" else None

    two_way = client.handle_two_way_device_rpc_request_v1 if call == "v2" else client.handle_two_way_device_rpc_request
    one_way = client.handle_one_way_device_rpc_request_v1 if call == "v2" else client.handle_one_way_device_rpc_request
    with http_device(server, "PUMP1_TOKEN", answer):
        reply = two_way(made.id, {"method": "setGpio", "params": {"pin": "23", "value": 1}, "timeout": 5000})
        assert reply == {"pin": "23", "value": 1}
        assert one_way(made.id, {"method": "reboot", "params": {}, "timeout": 5000}) is None
        server.wait_for(lambda: len(seen) == 2, 5)
    assert [(r["id"], r["method"]) for r in seen] == [(0, "setGpio"), (1, "reboot")]
    assert server.requests_to("/api/v1/PUMP1_TOKEN/rpc/0", "POST")[0].json() == {"pin": "23", "value": 1}


def test_the_sdk_reply_to_rpc_0_is_a_client_rpc_as_thingsboard_treats_it(server, made):
    server.async_timeout_ms = 300
    device = TBHTTPDevice(server.url, "PUMP1_TOKEN")
    with pytest.raises(requests.HTTPError) as cut:
        device.send_rpc("setGpio", {"pin": "23"}, rpc_id=0)  # the SDK's `if rpc_id:` drops the id 0
    assert cut.value.response.status_code == 503  # no rule chain answers a client RPC: the async cap ends it
    assert [e.path for e in server.requests_to("/api/v1/PUMP1_TOKEN/rpc")] == ["/api/v1/PUMP1_TOKEN/rpc"]


def test_persistent_rpc_waits_for_a_sleeping_board(server, client, made):
    queued = client.handle_two_way_device_rpc_request_v1(
        made.id, {"method": "setGpio", "params": {"pin": "4", "value": 1}, "persistent": True, "timeout": 60000,
                  "additionalInfo": {"why": "night mode"}})
    rpc_id = RpcId(queued["rpcId"], "RPC")
    rpc = client.get_persisted_rpc(rpc_id)
    assert rpc.status == "QUEUED" and rpc.response is None and rpc.additional_info == {"why": "night mode"}
    assert rpc.request["body"] == {"method": "setGpio", "params": '{"pin":"4","value":1}'}

    # The board wakes, polls with a short timeout, does the job, answers, and sleeps again.
    got = requests.get(f"{server.url}/api/v1/PUMP1_TOKEN/rpc", params={"timeout": 500}, timeout=5).json()
    assert got == {"id": 0, "method": "setGpio", "params": {"pin": "4", "value": 1}}
    assert client.get_persisted_rpc(rpc_id).status == "DELIVERED"
    assert requests.post(f"{server.url}/api/v1/PUMP1_TOKEN/rpc/0", json={"value": 1}, timeout=5).status_code == 200
    done = client.get_persisted_rpc(rpc_id)
    assert (done.status, done.response) == ("SUCCESSFUL", {"value": 1})

    listed = client.get_persisted_rpc_by_device(made.id, 10, 0)
    assert [r["id"]["id"] for r in listed["data"]] == [queued["rpcId"]]  # this call's reply is a plain dict
    assert client.get_persisted_rpc_by_device(made.id, 10, 0, rpc_status="QUEUED")["data"] == []
    client.delete_rpc(rpc_id)
    with pytest.raises(ApiException) as gone:
        client.get_persisted_rpc(rpc_id)
    assert gone.value.status == 404


def test_persistent_one_way_rpc_expires_when_no_board_polls(server, client, made):
    server.rest.rpc_min_timeout_ms = 0
    queued = client.handle_one_way_device_rpc_request_v1(
        made.id, {"method": "reboot", "params": {}, "persistent": True, "expirationTime": 1})
    assert client.get_persisted_rpc(RpcId(queued["rpcId"], "RPC")).status == "EXPIRED"
    assert requests.get(f"{server.url}/api/v1/PUMP1_TOKEN/rpc", params={"timeout": 200}, timeout=5).status_code == 408


def test_ota_package_create_upload_assign_and_the_device_updates(server, client, made, tmp_path, monkeypatch):
    profile = client.get_default_device_profile_info()
    info = client.save_ota_package_info(SaveOtaPackageInfoRequest(
        title="pump-fw", version="1.2.0", type="FIRMWARE", device_profile_id=profile.id, uses_url=False))
    firmware = bytes(range(256)) * 5
    (tmp_path / "pump-fw.bin").write_bytes(firmware)
    info = client.save_ota_package_data(info.id, "SHA256", str(tmp_path / "pump-fw.bin"))
    assert (info.checksum_algorithm, info.checksum, info.data_size) == ("SHA256", checksum("SHA256", firmware), 1280)
    assert [p.title for p in client.get_ota_packages(10, 0).data] == ["pump-fw"]
    assert client.get_ota_package_info_by_id(info.id).has_data is True

    made.firmware_id = info.id
    client.save_device(made)
    assert server.shared_attributes("pump-1") == {
        "fw_title": "pump-fw", "fw_version": "1.2.0", "fw_size": 1280, "fw_checksum_algorithm": "SHA256",
        "fw_checksum": checksum("SHA256", firmware)}
    assert points(client.get_latest_timeseries(made.id, "fw_state,target_fw_version")) == {
        "fw_state": [(server.telemetry("pump-1", "fw_state")[-1][0], "INITIATED")],
        "target_fw_version": [(server.telemetry("pump-1", "target_fw_version")[0][0], "1.2.0")]}
    assert [v for _, _, v in server.telemetry("pump-1", "fw_state")] == ["QUEUED", "INITIATED"]

    # The SDK's own device downloads it in chunks, checks it, and reports UPDATED.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("tb_device_http.time.sleep", lambda s: None)
    device = TBHTTPDevice(server.url, "PUMP1_TOKEN", chunk_size=500)
    device.start_publish_worker()
    device.get_firmware_update()
    assert (tmp_path / "pump-fw").read_bytes() == firmware
    chunks = [e.query["chunk"][0] for e in server.requests_to("/api/v1/PUMP1_TOKEN/firmware")]
    assert chunks == ["0", "1", "2", "3"]
    server.wait_for(lambda: server.latest_telemetry("pump-1").get("fw_state", (0, ""))[1] == "UPDATED", 10)
    assert server.latest_telemetry("pump-1")["current_fw_version"][1] == "1.2.0"
    device.stop_publish_worker()

    with pytest.raises(ApiException) as in_use:
        client.delete_ota_package(info.id)
    assert in_use.value.status == 400
    made.firmware_id = None
    client.save_device(made)
    assert server.shared_attributes("pump-1") == {}
    client.delete_ota_package(info.id)
    assert client.get_ota_packages(10, 0).data == []


def test_a_profile_package_reaches_the_devices_without_their_own(server, client, made):
    profile = client.get_device_profile_by_id(client.get_default_device_profile_info().id)
    info = client.save_ota_package_info(SaveOtaPackageInfoRequest(
        title="app", version="2.0.0", type="SOFTWARE", device_profile_id=profile.id, uses_url=False))
    server.set_package_data(info.id.id, b"app", "CRC32")
    profile.software_id = info.id
    client.save_device_profile(profile)
    assert server.shared_attributes("pump-1")["sw_version"] == "2.0.0"
    assert server.shared_attributes("pump-1")["sw_checksum"] == checksum("CRC32", b"app")


def test_provisioning_set_on_the_profile_and_used_by_the_sdk(server, client):
    profile = client.get_device_profile_by_id(client.get_default_device_profile_info().id)
    profile.provision_type = "ALLOW_CREATE_NEW_DEVICES"
    profile.provision_device_key = "PROVISION_KEY"
    profile.profile_data.provision_configuration = {"type": "ALLOW_CREATE_NEW_DEVICES",
                                                    "provisionDeviceSecret": "PROVISION_SECRET"}
    client.save_device_profile(profile)
    device = TBHTTPDevice.provision(server.url, "sensor-9", "PROVISION_KEY", "PROVISION_SECRET")
    made = client.get_tenant_device("sensor-9")
    assert device.token == client.get_device_credentials_by_device_id(made.id).credentials_id
    assert made.device_profile_id.id == profile.id.id
    device.send_telemetry({"t": 1}, queued=False)
    assert server.latest_telemetry("sensor-9")["t"][1] == 1


def test_api_key_login(server, client):
    user = client.get_user()
    key = client.save_api_key(ApiKeyInfo(description="ci", user_id=user.id, enabled=True))
    assert key.value and key.description == "ci"
    by_key = RestClient(server.url)
    by_key.api_key_login(key.value)
    assert by_key.get_user().email == "tenant@thingsboard.org"
    assert [k.description for k in client.get_user_api_keys(user.id, 10, 0).data] == ["ci"]
    client.enable_api_key(key.id, False)
    with pytest.raises(ApiException) as refused:
        by_key.get_user()
    assert refused.value.status == 401

