"""The fault-injecting proxy used by reliability tests and `make soak`."""

import http.client
import socket

import pytest

from iotlink_lab.faultproxy import FaultProxy


def post(proxy, body=b'{"v": 1}'):
    host, port = proxy.url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", "/api/v1/TEST_TOKEN/telemetry", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__, None
    finally:
        conn.close()


def test_at_rate_zero_it_is_transparent(server, device):
    with FaultProxy(server.url, rate=0) as proxy:
        assert [post(proxy, b'{"v": %d}' % i)[0] for i in range(5)] == [200] * 5
    assert [v for _, _, v in server.telemetry("test-device", "v")] != []
    assert [e.body for e in server.requests_to("/telemetry")] == [b'{"v": %d}' % i for i in range(5)]
    assert proxy.stats == {"passed": 5}


def test_a_head_reply_passes_on_a_kept_alive_connection(server, device):
    # Its Content-Length describes a body that never comes: the proxy must not wait for it.
    with FaultProxy(server.url, rate=0) as proxy:
        host, port = proxy.url.split("//")[1].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            statuses = []
            for method in ("HEAD", "HEAD", "GET"):
                conn.request(method, "/api/v1/TEST_TOKEN/attributes")
                resp = conn.getresponse()
                resp.read()
                statuses.append((method, resp.status, resp.getheader("Date") is not None))
        finally:
            conn.close()
    assert [has_date for _, _, has_date in statuses] == [True] * 3 and statuses[-1][1] == 200


def test_a_reply_that_never_ends_streams_through(server):
    # thethings.iO's subscription: the notice, then each value as it is written.
    token = server.thethings.add_thing()["token"]
    with FaultProxy(server.url, rate=0) as proxy:
        host, port = proxy.url.split("//")[1].split(":")
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            conn.sendall(f"GET /v2/things/{token}?keepAlive=60000 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            seen = b""
            while b"subscribed" not in seen:
                seen += conn.recv(4096)
            server.thethings.write(token, {"door": "open"})
            while b'"door"' not in seen:
                seen += conn.recv(4096)
    assert seen.startswith(b"HTTP/1.1 200") and b'"value": "open"' in seen


@pytest.mark.parametrize("fault,reaches_server,client_sees", [
    ("refuse", False, "RemoteDisconnected"),
    ("lose_reply", True, "RemoteDisconnected"),
    ("delay", True, 200),
    ("truncate", True, None),  # a partial status line or headers: some client error
    ("corrupt", True, "BadStatusLine"),
    ("error", False, None),    # 500, 503 or 429
])
def test_each_fault(server, device, fault, reaches_server, client_sees):
    with FaultProxy(server.url, rate=1, faults=(fault,), max_delay_s=0.2) as proxy:
        status, _ = post(proxy)
    assert bool(server.requests_to("/telemetry")) == reaches_server
    if fault == "error":
        assert status in (500, 503, 429)
    elif fault == "truncate":
        assert status != 200
    else:
        assert status == client_sees
    assert proxy.stats == {fault: 1}


def test_the_same_seed_gives_the_same_faults(server, device):
    runs = []
    for _ in range(2):
        with FaultProxy(server.url, rate=0.5, seed=42, faults=("refuse", "error")) as proxy:
            runs.append([post(proxy)[0] for _ in range(20)])
    assert runs[0] == runs[1]
    assert 200 in runs[0] and any(s != 200 for s in runs[0])
