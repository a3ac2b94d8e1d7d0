"""The ThingsBoard device client, run in micropython against the devserver; asserts on the wire."""

import json

import pytest
from support import RawServer


def tb(url, token="TEST_TOKEN", timeout=5):
    return f"""
from iotlink.thingsboard import ThingsBoard
from iotlink import errors
tb = ThingsBoard({url!r}, {token!r}, timeout={timeout})
def attempt(fn, *a, **k):
    try:
        return ["ok", fn(*a, **k)]
    except (errors.IotlinkError, ValueError) as e:
        return [type(e).__name__, getattr(e, "status", None), str(e)]
"""


def bodies(server, path):
    return [e.json() for e in server.requests_to(path, "POST")]


def test_telemetry_in_all_its_formats(server, device, mp):
    mp(tb(server.url) + """
tb.send_telemetry({"temperature": 21.5, "label": "ok"})
tb.send_telemetry({"temperature": 22}, ts=1451649600512)
tb.send_telemetry([{"ts": 1451649660512, "values": {"temperature": 23}},
                   {"ts": 1451649720512, "values": {"temperature": 24, "on": True}}])
tb.send_telemetry([{"humidity": 40}, {"pressure": 1013}])
tb.send_telemetry([])
tb.send_telemetry(b'[{"ts": 1451649780512, "values": {"temperature": 25}}]')
tb.send_telemetry(b"")
""")
    sent = bodies(server, "/api/v1/TEST_TOKEN/telemetry")
    assert sent == [
        {"temperature": 21.5, "label": "ok"},
        {"ts": 1451649600512, "values": {"temperature": 22}},
        [{"ts": 1451649660512, "values": {"temperature": 23}},
         {"ts": 1451649720512, "values": {"temperature": 24, "on": True}}],
        [{"humidity": 40}, {"pressure": 1013}],
        [{"ts": 1451649780512, "values": {"temperature": 25}}],  # JSON bytes go as they are
    ]  # and no POST of [] or of nothing, which ThingsBoard never answers
    stored = server.telemetry("test-device")
    assert (1451649600512, "temperature", 22) in stored
    assert (1451649720512, "on", True) in stored
    assert {k for _, k, _ in stored} == {"temperature", "label", "on", "humidity", "pressure"}
    for e in server.requests_to("/telemetry"):
        assert e.headers["content-type"] == "application/json"
        assert int(e.headers["content-length"]) == len(e.body)


def test_non_ascii_values_arrive_intact(server, device, mp):
    mp(tb(server.url) + 'tb.send_telemetry({"unit": "°C", "name": "Zürich"})')
    assert server.latest_telemetry("test-device")["unit"][1] == "°C"
    assert server.latest_telemetry("test-device")["name"][1] == "Zürich"


def test_attribute_keys_are_percent_encoded_in_the_query(server, device, mp):
    server.set_shared_attributes("test-device", {"room temp": 21, "Zürich": "yes", "plain_key-1.x~": 1})
    run = mp(tb(server.url) + 'out(tb.request_attributes(shared_keys=["room temp", "Zürich", "plain_key-1.x~"]))')
    assert run.result["shared"] == {"room temp": 21, "Zürich": "yes", "plain_key-1.x~": 1}
    assert server.requests_to("/attributes", "GET")[0].query == {"sharedKeys": ["room temp,Zürich,plain_key-1.x~"]}


def test_client_attributes_and_request(server, device, mp):
    server.set_shared_attributes("test-device", {"interval_s": 30, "mode": "eco"})
    run = mp(tb(server.url) + """
tb.send_attributes({"fw_version": "1.2.0", "pins": ["23"]})
out(tb.request_attributes(client_keys=["fw_version"], shared_keys=["interval_s", "missing"]))
out(tb.request_attributes(shared_keys=["nothing"]))
out(tb.request_attributes())
out(attempt(tb.send_attributes, [1, 2])[0])
""")
    assert bodies(server, "/attributes") == [{"fw_version": "1.2.0", "pins": ["23"]}]
    assert server.client_attributes("test-device") == {"fw_version": "1.2.0", "pins": ["23"]}
    gets = server.requests_to("/api/v1/TEST_TOKEN/attributes", "GET")
    assert gets[0].query == {"clientKeys": ["fw_version"], "sharedKeys": ["interval_s,missing"]}
    assert run.results[0] == {"client": {"fw_version": "1.2.0"}, "shared": {"interval_s": 30}}
    assert run.results[1] == {"client": {}, "shared": {}}  # the server sent {}
    assert run.results[2]["shared"] == {"interval_s": 30, "mode": "eco"}
    assert run.results[2]["client"] == {"fw_version": "1.2.0", "pins": ["23"]}
    assert run.results[3] == "ValueError"  # refused on the board, nothing sent


def wait_for_poll(server, device_id, after=None):
    """The board's open /attributes/updates poll, once one newer than `after` is open."""
    import time

    while True:
        waiters = [w for w in server._attr_waiters.get(device_id, []) if w is not after]
        if waiters:
            return waiters[0]
        time.sleep(0.01)


def test_wait_attributes_returns_the_flat_update_or_none(server, device, mp):
    import threading

    def push():
        # Change only while the board's poll is open: ThingsBoard drops changes between polls.
        first = wait_for_poll(server, device["id"])
        server.set_shared_attributes("test-device", {"fw_title": "iotlink", "fw_version": "1.2.0"})
        wait_for_poll(server, device["id"], after=first)
        server.delete_shared_attributes("test-device", ["fw_title"])

    threading.Thread(target=push, daemon=True).start()
    run = mp(tb(server.url) + """
out(tb.wait_attributes(timeout_ms=5000))
out(tb.wait_attributes(timeout_ms=5000))
out(tb.wait_attributes(timeout_ms=200))
""")
    assert run.results == [{"fw_title": "iotlink", "fw_version": "1.2.0"}, {"deleted": ["fw_title"]}, None]
    polls = server.requests_to("/attributes/updates")
    assert [p.query["timeout"] for p in polls] == [["5000"], ["5000"], ["200"]]
    assert [p.status for p in polls] == [200, 200, 408]


def test_rpc_id_zero_reply_and_timeout(server, device, mp):
    server.queue_rpc("test-device", "setGpio", {"pin": "23", "value": 1})
    run = mp(tb(server.url) + """
r = tb.wait_rpc(timeout_ms=2000)
out(r)
tb.reply_rpc(r["id"], {"pin": "23", "value": 1})
out(tb.wait_rpc(timeout_ms=200))
""")
    assert run.results == [{"id": 0, "method": "setGpio", "params": {"pin": "23", "value": 1}}, None]
    assert [e.path for e in server.requests_to("/rpc", "POST")] == ["/api/v1/TEST_TOKEN/rpc/0"]
    assert server.wait_rpc_reply("test-device", 0, 1) == {"pin": "23", "value": 1}


@pytest.mark.slow
def test_long_polls_ask_at_most_25_s_and_treat_503_as_poll_again(server, device, mp):
    # The devserver's async cap is 3 s (ThingsBoard's is 30 s): longer polls end in 503.
    run = mp(tb(server.url) + "out(tb.wait_rpc(timeout_ms=600000))")
    assert run.result is None
    poll = server.requests_to("/rpc", "GET")[0]
    assert poll.query["timeout"] == ["25000"]
    assert poll.status == 503


@pytest.mark.parametrize("status", [408, 503, 504])
def test_poll_again_statuses(mp, status):
    raw = RawServer(b"HTTP/1.1 %d Whatever\r\nContent-Length: 0\r\n\r\n" % status)
    try:
        assert mp(tb(raw.url) + "out(tb.wait_attributes(timeout_ms=100))").result is None
    finally:
        raw.stop()


def test_client_side_rpc(server, device, mp):
    server.client_rpc_handlers["getCurrentTime"] = lambda dev, params: {"time": 1700000000000, "dev": dev["name"]}
    run = mp(tb(server.url) + 'out(tb.call_rpc("getCurrentTime"))')
    assert run.result == {"time": 1700000000000, "dev": "test-device"}
    assert bodies(server, "/api/v1/TEST_TOKEN/rpc") == [{"method": "getCurrentTime", "params": {}}]


def test_claim(server, device, mp):
    mp(tb(server.url) + 'tb.claim(secret_key="s3cret", duration_ms=60000)\ntb.claim()')
    assert bodies(server, "/claim") == [{"secretKey": "s3cret", "durationMs": 60000}, {}]
    assert server.claim_request("test-device")["secret"] == "s3cret"  # a repeat keeps the first


def test_provision_success_and_refusals(server, mp):
    server.add_provision_profile("KEY", "SECRET")
    run = mp(f"""
from iotlink.thingsboard import ThingsBoard
from iotlink.errors import ProvisionError
out(ThingsBoard.provision({server.url!r}, "pump-17", "KEY", "SECRET"))
for name, secret in (("pump-17", "SECRET"), ("pump-18", "WRONG")):
    try:
        ThingsBoard.provision({server.url!r}, name, "KEY", secret)
    except ProvisionError as e:
        out([e.status, e.message])
""")
    token, taken, wrong = run.results
    assert server.device("pump-17")["token"] == token
    assert taken == ["FAILURE", "Failed to provision device!"]
    assert wrong == ["NOT_FOUND", "Provision data was not found!"]
    assert bodies(server, "/api/v1/provision")[0] == {
        "provisionDeviceKey": "KEY", "provisionDeviceSecret": "SECRET", "deviceName": "pump-17"}


def test_provision_with_a_token_the_device_chose(server, mp):
    server.add_provision_profile("KEY", "SECRET")
    run = mp(f"""
from iotlink.thingsboard import ThingsBoard
out(ThingsBoard.provision({server.url!r}, "pump-17", "KEY", "SECRET", token="b0a7d1c3e5f7a9b1c3d5"))
""")
    assert run.result == "b0a7d1c3e5f7a9b1c3d5" == server.device("pump-17")["token"]
    assert bodies(server, "/api/v1/provision") == [{
        "provisionDeviceKey": "KEY", "provisionDeviceSecret": "SECRET", "deviceName": "pump-17",
        "credentialsType": "ACCESS_TOKEN", "token": "b0a7d1c3e5f7a9b1c3d5"}]


@pytest.mark.parametrize("reply", [
    {"provisionDeviceStatus": "SUCCESS", "credentialsType": "ACCESS_TOKEN", "accessToken": "TOK1"},
    {"deviceId": "97a2", "credentialsType": "ACCESS_TOKEN", "credentialsId": "TOK1",
     "provisionDeviceStatus": "SUCCESS"},
])
def test_provision_accepts_the_documented_spellings(mp, reply):
    body = json.dumps(reply).encode()
    raw = RawServer(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    try:
        run = mp(f"""
from iotlink.thingsboard import ThingsBoard
out(ThingsBoard.provision({raw.url!r}, "d", "K", "S"))
""")
        assert run.result == "TOK1"
    finally:
        raw.stop()


def test_unknown_token_is_a_401_and_never_printed(server, mp):
    run = mp(tb(server.url, token="NOT_A_TOKEN") + """
out(attempt(tb.send_telemetry, {"a": 1}))
out(attempt(tb.wait_rpc, 100))
""")
    assert [r[:2] for r in run.results] == [["HTTPError", 401], ["HTTPError", 401]]
    assert "NOT_A_TOKEN" not in run.stdout + run.stderr


def test_error_messages_come_from_the_body_whatever_the_content_type(mp):
    raw = RawServer(b'HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\n'
                    b'{"status":400,"message":"Invalid request body","errorCode":31}')
    try:
        run = mp(tb(raw.url) + 'out(attempt(tb.send_attributes, {"a": 1}))')
        assert run.result == ["HTTPError", 400, "HTTP 400 Invalid request body"]
    finally:
        raw.stop()


def test_wrong_package_title_is_a_400(server, device, mp):
    pkg = server.add_package("iotlink", "1.2.0", b"x" * 100)
    server.assign_package("test-device", pkg)
    run = mp(tb(server.url) + 'out(attempt(tb.open_package, "firmware", "other", "1.2.0", 0, 4096))')
    assert run.result[:2] == ["HTTPError", 400]


def test_server_down_is_a_connection_error(mp):
    import socket

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))  # a port nobody listens on
    url = "http://127.0.0.1:%d" % probe.getsockname()[1]
    probe.close()
    run = mp(tb(url) + 'out(attempt(tb.send_telemetry, {"a": 1}))')
    assert run.result[0] == "ConnectionFailed"


def test_a_silent_server_is_a_timeout_not_a_hang(mp):
    raw = RawServer(None)  # accepts, never answers
    try:
        run = mp(tb(raw.url, timeout=1) + 'out(attempt(tb.send_telemetry, {"a": 1}))', timeout=20)
        assert run.result[0] == "Timeout"
        assert b"POST /api/v1/TEST_TOKEN/telemetry HTTP/1.0" in raw.requests[0]
    finally:
        raw.stop()


@pytest.mark.parametrize("reply,expected", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 50000000\r\n\r\n" + b"x" * 1000, "exceeds"),
    (b"HTTP/1.1 200 OK\r\n\r\n" + b"[" + b"1," * 60000 + b"1]", "exceeds"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"client\":", "truncated"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{}{}{\r\n0\r\n\r\n", "bad response"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json!", "not JSON"),
    (b"garbage\r\n\r\n", "bad response"),
])
def test_hostile_replies_are_clear_errors_in_a_small_heap(mp, reply, expected):
    raw = RawServer(reply)
    try:
        run = mp(tb(raw.url) + "out(attempt(tb.request_attributes))", heapsize="52k")
        assert run.result[0] == "ProtocolError"
        assert expected in run.result[2]
    finally:
        raw.stop()


def test_a_reply_of_unknown_length_too_big_for_the_heap_is_a_protocol_error(mp):
    # In this heap the growing body cannot be copied to a larger buffer well before the 8 KB
    # limit: the reply's fault, reported as such, not a MemoryError that counts toward a reset.
    raw = RawServer(b"HTTP/1.1 200 OK\r\n\r\n" + b"[" + b"1," * 60000 + b"1]")
    try:
        run = mp(tb(raw.url) + "out(attempt(tb.request_attributes))", heapsize="46k")
        assert run.result[0] == "ProtocolError"
        assert "exceeds the free heap" in run.result[2]
    finally:
        raw.stop()


def test_a_server_keeping_the_connection_open_does_not_block_a_sized_reply(mp):
    body = b'{"shared":{"a":1}}'
    raw = RawServer(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body), close=False)
    try:
        run = mp(tb(raw.url, timeout=30) + "out(tb.request_attributes())", timeout=20)
        assert run.result == {"client": {}, "shared": {"a": 1}}
    finally:
        raw.stop()


COLD = ["requests", "iotlink.http_oneshot", "iotlink.http_tls_once", "iotlink.thingsboard_once", "iotlink.ota_once"]


def test_the_loop_calls_load_no_cold_code_and_rare_calls_unload_theirs(server, device, mp):
    # The frozen `requests`, TLS set-up, provisioning, claim, client RPC and the package
    # download are in RAM only while used; the steady loop's calls never load them.
    server.add_provision_profile("KEY", "SECRET")
    server.queue_rpc("test-device", "getGpio", {"pin": "23"})
    server.client_rpc_handlers["ping"] = lambda dev, params: {"pong": params}
    run = mp(f"""
import sys
from iotlink.thingsboard import ThingsBoard
cold = lambda: [m for m in {COLD!r} if m in sys.modules]
tb = ThingsBoard({server.url!r}, "TEST_TOKEN", keepalive=True)
tb.send_telemetry({{"n": 1}})
tb.send_attributes({{"a": 1}})
tb.request_attributes(shared_keys=["s"])
tb.reply_rpc(tb.wait_rpc(1000)["id"], {{"value": 0}})
tb.wait_attributes(100)
out(cold())
tb.claim(secret_key="k")
out(cold())
out(tb.call_rpc("ping", 7))
out(cold())
out(ThingsBoard.provision({server.url!r}, "pump-9", "KEY", "SECRET"))
out(cold())
""")
    loop, after_claim, pong, after_rpc, token, after_provision = run.results
    assert loop == after_claim == after_rpc == []
    assert pong == {"pong": 7} and server.device("pump-9")["token"] == token
    assert bodies(server, "/claim") == [{"secretKey": "k"}]
    # provision goes over the connection code the loop has anyway (closed after): the frozen
    # `requests` and the one-shot transport are not loaded for it
    assert after_provision == []


@pytest.mark.parametrize("keepalive", [False, True])
@pytest.mark.parametrize("extra,expected", [(0, "ok"), (1, "ProtocolError")])
def test_a_reply_without_length_is_cut_at_the_limit(mp, keepalive, extra, expected):
    # No Content-Length: read until the server closes, never past 8192 bytes (http.MAX_BODY).
    pad = 8192 + extra - len(b'{"shared": {"a": ""}}')
    body = b'{"shared": {"a": "' + b"x" * pad + b'"}}'
    raw = RawServer(b"HTTP/1.0 200 OK\r\n\r\n" + body)
    try:
        run = mp(tb(raw.url) + f"""
tb = ThingsBoard({raw.url!r}, "T", keepalive={keepalive})
r = attempt(tb.request_attributes)
out([r[0], len(r[1]["shared"]["a"]) if r[0] == "ok" else r[2]])
""")
        assert run.result[0] == expected
        assert run.result[1] == (pad if extra == 0 else "reply exceeds the 8192 byte limit")
    finally:
        raw.stop()


# ---- malformed replies are the library's own errors, never a crash or a memory error ----------

@pytest.mark.parametrize("transport", ["requests", "keepalive"])
@pytest.mark.parametrize("length", [b"abc", b"0x10", b"-1", b"+5", b"1e3", b"", b"99999999999999999999"])
def test_a_bad_content_length_is_a_protocol_error(mp, transport, length):
    raw = RawServer(b"HTTP/1.1 200 OK\r\nContent-Length: " + length + b"\r\n\r\n{}")
    try:
        run = mp(tb(raw.url) + f"""
tb = ThingsBoard({raw.url!r}, "T", timeout=5, keepalive={transport == "keepalive"})
out(attempt(tb.request_attributes))""")
        assert run.result == ["ProtocolError", None, "bad Content-Length"]
    finally:
        raw.stop()


@pytest.mark.parametrize("transport", ["requests", "keepalive"])
@pytest.mark.parametrize("body", [b"[" * 4000 + b"]" * 4000, b'{"a":' * 1300 + b"1" + b"}" * 1300],
                         ids=["arrays", "objects"])
def test_json_nested_thousands_deep_is_a_protocol_error(mp, transport, body):
    raw = RawServer(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    try:
        run = mp(tb(raw.url) + f"""
tb = ThingsBoard({raw.url!r}, "T", timeout=5, keepalive={transport == "keepalive"})
out(attempt(tb.wait_rpc, 100))""", heapsize="128k")
        assert run.result == ["ProtocolError", None, "reply is nested too deeply"]
    finally:
        raw.stop()


@pytest.mark.parametrize("rpc_id", [b"1e999", b"1.5", b'"7"', b"true", b"null"])
def test_an_rpc_id_that_is_not_an_integer_is_a_protocol_error(mp, rpc_id):
    body = b'{"id": %s, "method": "getGpio", "params": {}}' % rpc_id
    raw = RawServer(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    try:
        run = mp(tb(raw.url) + "out(attempt(tb.wait_rpc, 100))")
        assert run.result == ["ProtocolError", None, "RPC request id is not an integer"]
    finally:
        raw.stop()
