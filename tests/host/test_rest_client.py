"""iotlink_tools.rest against the devserver: login, refresh, errors, retries, the calls provision uses."""

import threading
import time

import pytest

from iotlink_lab.faultproxy import FaultProxy
from iotlink_tools.rest import RestError, ThingsBoardREST, jwt_claims


def client(server, url=None, password="tenant", **kw):
    kw.setdefault("backoff_s", 0.01)
    return ThingsBoardREST(url or server.url, "tenant@thingsboard.org", password, **kw)


def auth_headers(server, path):
    return [e.headers.get("x-authorization") for e in server.requests_to(path)]


def test_wrong_password_fails_loudly_without_echoing_it(server):
    tb = client(server, password="hunter2-wrong")
    with pytest.raises(RestError) as caught:
        tb.find_device("x")
    assert caught.value.status == 401 and caught.value.error_code == 10
    assert "Invalid username or password" in str(caught.value)
    assert "hunter2" not in str(caught.value) and "hunter2" not in repr(tb)
    assert len(server.requests_to("/api/auth/login")) == 1  # a refusal is not retried
    assert server.requests_to("/api/tenant") == []


def test_login_once_then_bearer_on_every_call(server):
    tb = client(server)
    created = tb.create_device("pump-1", token="TOKEN_PUMP_1", label="Pump 1")
    assert tb.find_device("pump-1")["id"] == created["id"]
    assert tb.find_device("nope") is None
    assert tb.access_token(created["id"]["id"]) == "TOKEN_PUMP_1"
    assert len(server.requests_to("/api/auth/login")) == 1
    sent = [e for e in server.exchanges if not e.path.startswith("/api/auth")]
    assert sent and all(e.headers["x-authorization"].startswith("Bearer ey") for e in sent)
    assert server.requests_to("/api/device", "POST")[0].query == {"accessToken": ["TOKEN_PUMP_1"]}
    assert server.requests_to("/api/device", "POST")[0].json() == {"name": "pump-1", "type": "default",
                                                                    "label": "Pump 1"}


def test_expired_token_refreshed_once_and_call_retried(server):
    tb = client(server)
    tb.login()
    token = tb._token
    server.rest.clock = lambda: jwt_claims(token)["exp"] + 10.0  # the server's clock jumps past exp
    assert tb.find_device("none") is None
    lookups = server.requests_to("/api/tenant/devices")
    assert [e.status for e in lookups] == [401, 404]  # 401 (code 11), then the retry with the new token
    assert lookups[0].headers["x-authorization"] == f"Bearer {token}"
    assert lookups[1].headers["x-authorization"] != lookups[0].headers["x-authorization"]
    refreshes = server.requests_to("/api/auth/token")
    assert len(refreshes) == 1 and refreshes[0].status == 200
    assert len(server.requests_to("/api/auth/login")) == 1


def test_refresh_ahead_of_expiry(server):
    server.rest.access_lifetime_s = 1
    server.rest.clock = lambda: 1_900_000_000.0  # frozen: the server never sees the token expire
    tb = client(server)
    tb.find_device("a")
    time.sleep(1.0)  # past the client's own deadline (exp - iat, less a margin)
    tb.find_device("b")
    assert len(server.requests_to("/api/auth/token")) == 1
    assert len(server.requests_to("/api/auth/login")) == 1
    assert all(e.status != 401 for e in server.exchanges)


def test_rejected_refresh_falls_back_to_login(server):
    tb = client(server)
    tb.login()
    token, refresh = tb._token, tb._refresh_token
    server.rest.clock = lambda: jwt_claims(refresh)["exp"] + 10.0  # both tokens are now expired
    tb.find_device("x")
    assert [e.status for e in server.requests_to("/api/auth/token")] == [401]
    assert [e.status for e in server.requests_to("/api/auth/login")] == [200, 200]
    assert tb._token != token


def test_threads_share_one_refresh(server):
    tb = client(server)
    tb.login()
    token = tb._token
    server.rest.clock = lambda: jwt_claims(token)["exp"] + 10.0
    barrier = threading.Barrier(6)

    def lookup():
        barrier.wait()
        tb.find_device("x")

    threads = [threading.Thread(target=lookup) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # Every thread may see its 401, but only the first renews; the others use the new token.
    assert len(server.requests_to("/api/auth/token")) == 1
    assert len([e for e in server.requests_to("/api/tenant/devices") if e.status == 404]) == 6


def test_server_errors_and_network_faults_retried(server):
    server.add_device("known", "KNOWN_TOKEN")
    with FaultProxy(server.url, rate=0.5, seed=3, faults=("error", "refuse", "truncate")) as proxy:
        tb = client(server, url=proxy.url, retries=8)
        for _ in range(6):
            assert tb.find_device("known")["name"] == "known"
    assert proxy.stats["error"] + proxy.stats["refuse"] + proxy.stats["truncate"] > 0


def test_retries_give_up_with_clear_error(server):
    with FaultProxy(server.url, rate=1.0, faults=("error",)) as proxy:
        tb = client(server, url=proxy.url, retries=2)
        with pytest.raises(RestError) as caught:
            tb.login()
    assert caught.value.status in (429, 500, 503) and caught.value.retryable
    assert proxy.stats["error"] == 3


def test_unreachable_server(server):
    tb = client(server, url="http://127.0.0.1:9", retries=1)
    with pytest.raises(RestError) as caught:
        tb.login()
    assert caught.value.status == 0 and "cannot reach http://127.0.0.1:9" in str(caught.value)


def test_rpc_is_not_retried(server):
    server.rest.rpc_min_timeout_ms = 100
    dev = server.add_device("quiet", "QQ")
    tb = client(server)
    with pytest.raises(RestError) as caught:
        tb.rpc(dev["id"], "getGpio", {"pin": "23"}, timeout_ms=200)
    assert caught.value.status == 504
    assert len(server.requests_to("/api/rpc/twoway")) == 1


def test_latest_telemetry_ignores_null_entries(server):
    dev = server.add_device("t", "TT")
    server.store_telemetry(dev["id"], 1700000000000, {"uptime_s": 3})
    latest = client(server).latest_telemetry(dev["id"], ["uptime_s", "mem_free"])
    assert latest == {"uptime_s": (1700000000000, 3)}
    sent = server.requests_to("/values/timeseries")[0]
    assert sent.query == {"keys": ["uptime_s,mem_free"], "useStrictDataTypes": ["true"]}


def test_attributes_paging_delete(server):
    tb = client(server)
    ids = [tb.create_device(f"d{i}")["id"]["id"] for i in range(5)]
    assert sorted(d["name"] for d in tb.devices(page_size=2)) == [f"d{i}" for i in range(5)]
    assert len(server.requests_to("/api/tenant/devices")) == 3
    tb.save_shared_attributes(ids[0], {"interval_s": 5, "mode": "eco"})
    assert tb.shared_attributes(ids[0], ["interval_s"]) == {"interval_s": 5}
    tb.delete_shared_attributes(ids[0], ["mode"])
    assert tb.shared_attributes(ids[0]) == {"interval_s": 5}
    tb.delete_device(ids[1])
    assert [d["name"] for d in tb.devices(text_search="d1")] == []


def test_server_time_follows_the_servers_clock(server):
    server.rest.clock = lambda: 2_000_000_000.0
    tb = client(server)
    tb.login()
    assert abs(tb.server_time_ms() - 2_000_000_000_000) < 5000
