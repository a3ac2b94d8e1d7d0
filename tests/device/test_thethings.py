"""The thethings.iO client's plain calls, run in micropython against the devserver; asserts on the wire."""

import json
import re
import time

import pytest
from support import RawServer, posted, tt

from iotlink_tools.devserver.thethings import iso

ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def thing(server):
    return server.thethings.add_thing()["token"]


def test_activation_returns_the_thing_token(server, mp):
    server.thethings.add_thing(activation_code="ACT-1", product_id="P1")
    run = mp(f"""
from iotlink.thethings import TheThings
from iotlink.errors import ProvisionError
out(TheThings.activate({server.url!r}, "ACT-1"))
out(TheThings.activate({server.url!r}, "ACT-1", product_id="P1"))
for code, product in (("WRONG", None), ("ACT-1", "P2")):
    try:
        TheThings.activate({server.url!r}, code, product)
    except ProvisionError as e:
        out([e.status, e.message])
""")
    token, again, wrong, other_product = run.results
    assert len(token) == 43 and again == token
    assert server.thethings.thing(token)["activated"] == 1
    assert wrong == other_product == ["error", "activation code not found"]
    assert posted(server, "/v2/things") == [
        {"activationCode": "ACT-1"}, {"activationCode": "ACT-1", "productId": "P1"},
        {"activationCode": "WRONG"}, {"activationCode": "ACT-1", "productId": "P2"}]
    assert [e.status for e in server.requests_to("/v2/things")] == [201, 201, 400, 400]


def test_a_thing_is_usable_only_once_activated(server, mp):
    token = server.thethings.add_thing(activation_code="ACT-2")["token"]
    run = mp(tt(server.url, token) + f"""
out(attempt(tt.write, {{"a": 1}}))
TheThings.activate({server.url!r}, "ACT-2")
out(attempt(tt.write, {{"a": 2}}))
""")
    assert run.results == [["HTTPError", 401, "Thing token doesn't exist"], ["ok", None]]
    assert [v["value"] for v in server.thethings.values(token, "a")] == [2]


def test_write_puts_geo_and_client_time_on_every_value(server, thing, mp):
    run = mp(tt(server.url, thing) + """
tt.write({"temp": 23, "door": "open"}, geo=(41.4121132, 2.2199454), datetime=1700000000)
tt.write([{"key": "temp", "value": 24.5, "datetime": (2023, 11, 14, 22, 14, 0, 1, 318)},
          {"key": "temp", "value": 25}], datetime="20231114221500")
tt.write({"temp": 26})
for bad in ({"te mp": 1}, {"$cmd": 1}, {"temp": None}, [{"key": "temp"}], 5):
    out(attempt(tt.write, bad))
out(attempt(tt.write, {"temp": 1}, geo=(2.2, 200)))
out(attempt(tt.write, {"temp": 1}, datetime=5))
out(attempt(tt.write, {"temp": 1}, datetime="2023-11-14"))
out(attempt(tt.write, [{"key": "$settings", "value": {}}, {"key": "temp", "value": 1}]))
""")
    assert [r[0] for r in run.results] == ["ValueError"] * 9  # refused on the board...
    sent = posted(server, f"/v2/things/{thing}")
    assert len(sent) == 3  # ...and never sent
    geo = {"lat": 41.4121132, "long": 2.2199454}
    assert sorted(sent[0]["values"], key=lambda v: v["key"]) == [
        {"key": "door", "value": "open", "geo": geo, "datetime": "20231114221320"},
        {"key": "temp", "value": 23, "geo": geo, "datetime": "20231114221320"}]
    assert sent[1] == {"values": [{"key": "temp", "value": 24.5, "datetime": "20231114221400"},
                                  {"key": "temp", "value": 25, "datetime": "20231114221500"}]}
    assert sent[2] == {"values": [{"key": "temp", "value": 26}]}  # no geo, server time
    stored = server.thethings.values(thing, "temp")
    assert [v["value"] for v in stored] == [26, 25, 24.5, 23]
    assert stored[1:] == [
        {"key": "temp", "value": 25, "datetime": "2023-11-14T22:15:00.000Z"},
        {"key": "temp", "value": 24.5, "datetime": "2023-11-14T22:14:00.000Z"},
        {"key": "temp", "value": 23, "datetime": "2023-11-14T22:13:20.000Z", "geo": geo}]
    assert all(e.status == 201 for e in server.requests_to(f"/v2/things/{thing}", "POST"))
    assert all(e.headers["content-type"] == "application/json" for e in server.requests_to("/v2/things"))


def test_unix_seconds_become_utc_on_a_port_counting_from_2000(server, thing, mp):
    # ESP32: time.gmtime(0) is 2000-01-01, and its gmtime takes seconds since 2000.
    mp(tt(server.url, thing) + """
import time as _time
from iotlink import thethings
class Esp32Time:
    def __getattr__(self, name):
        return getattr(_time, name)
    def gmtime(self, t):
        return _time.gmtime(t + 946684800)
thethings.time = Esp32Time()
thethings.EPOCH_OFFSET = 946684800
tt.write({"t": 1}, datetime=1700000000)
""")
    assert posted(server, f"/v2/things/{thing}")[0]["values"][0]["datetime"] == "20231114221320"


def test_read_of_2500_values_pages_and_returns_each_once_newest_first(server, thing, mp):
    # Pairs of values share a millisecond, so a page can end between two values of one
    # datetime; the server's endDate is inclusive, so each next page repeats the boundary.
    base = 1700000000000
    server.thethings.write(thing, [{"key": "n", "value": i, "datetime": iso(base + i // 2)} for i in range(2500)])
    run = mp(tt(server.url, thing) + """
got = tt.read("n", limit=2500)
out([v["value"] for v in got])
out(len(tt.read("n", limit=5)))
out(tt.read("never-written"))
""")
    values, five, none = run.results
    assert sorted(values) == list(range(2500))  # each exactly once
    assert values == list(range(2499, -1, -1))  # newest first (in one ms, the later write)
    assert five == 5 and none == []
    gets = [e for e in server.requests_to("/resources/n", "GET") if e.path.endswith("/n")]
    pages = [e.query for e in gets[:-1]]
    assert "endDate" not in pages[0] and pages[0]["limit"] == ["100"]
    assert all(int(q["limit"][0]) <= 100 for q in pages)
    assert all(ISO_MS.fullmatch(q["endDate"][0]) for q in pages[1:])
    assert len(pages) == 26  # 100 new values a page, less the repeated boundary
    assert gets[-1].query == {"limit": ["5"]}


def test_read_between_dates(server, thing, mp):
    server.thethings.write(thing, [{"key": "t", "value": i, "datetime": "202301010000%02d" % i}
                                   for i in range(10)])
    run = mp(tt(server.url, thing) + """
out([v["value"] for v in tt.read("t", limit=100, start=(2023, 1, 1, 0, 0, 3, 0, 0), end="20230101000007")])
out([v["value"] for v in tt.read("t", limit=2, start=1672531202)])
""")
    assert run.results == [[7, 6, 5, 4, 3], [9, 8]]
    queries = [e.query for e in server.requests_to("/resources/t")]
    assert queries[0] == {"limit": ["100"], "startDate": ["20230101000003"], "endDate": ["20230101000007"]}
    assert queries[1] == {"limit": ["2"], "startDate": ["20230101000002"]}


def test_settings_whole_and_dotted(server, thing, mp):
    run = mp(tt(server.url, thing) + """
out(tt.settings())
tt.set_settings({"name": "My Thing", "foo": "bar", "limits": {"max": 30}})
tt.set_setting("name", "Pump 17")
tt.set_setting("limits.min", 5)
out(tt.settings())
out(tt.settings("name"))
out(tt.settings("limits.max"))
out(tt.settings("missing"))
out(attempt(tt.set_setting, "bad name", 1))
""")
    assert run.results == [
        {},
        {"name": "Pump 17", "foo": "bar", "limits": {"max": 30, "min": 5}},
        "Pump 17", 30, None, ["ValueError", None, "key '$settings.bad name': only letters, digits, '.', '-' and '_'"]]
    assert posted(server, f"/v2/things/{thing}") == [
        {"values": [{"key": "$settings", "value": {"name": "My Thing", "foo": "bar", "limits": {"max": 30}}}]},
        {"values": [{"key": "$settings.name", "value": "Pump 17"}]},
        {"values": [{"key": "$settings.limits.min", "value": 5}]}]
    paths = [e.path for e in server.requests_to("/resources/", "GET")]
    assert paths == [f"/v2/things/{thing}/resources/$settings"] * 2 + [
        f"/v2/things/{thing}/resources/$settings.{p}" for p in ("name", "limits.max", "missing")]
    assert server.thethings.settings(thing)["name"] == "Pump 17"


def test_geo_is_longitude_first_on_the_wire(server, thing, mp):
    run = mp(tt(server.url, thing) + """
out(tt.geo())
tt.set_geo(41.390205, 2.154007)
out(tt.geo())
out(attempt(tt.set_geo, 2.15, 241.39))
""")
    assert run.results[:2] == [None, [41.390205, 2.154007]]
    assert run.results[2][0] == "ValueError"
    assert posted(server, f"/v2/things/{thing}") == [
        {"values": [{"key": "$geo", "value": {"type": "Point", "coordinates": [2.154007, 41.390205]}}]}]
    assert server.thethings.geo(thing) == {"type": "Point", "coordinates": [2.154007, 41.390205]}


def test_server_time_in_both_formats(server, thing, mp):
    run = mp(tt(server.url, thing) + """
out(tt.server_time())
out(tt.server_time("UTC"))
out(attempt(tt.server_time, "local"))
""")
    unix, utc, bad = run.results
    assert isinstance(unix, int) and abs(unix - time.time()) < 60
    assert ISO_MS.fullmatch(utc)
    assert bad[0] == "ValueError"
    assert [e.query for e in server.requests_to("/v2/utils/date")] == [
        {"thingToken": [thing], "format": ["unix_timestamp"]}, {"thingToken": [thing], "format": ["UTC"]}]


@pytest.mark.parametrize("status", [400, 401, 404, 410])
def test_final_errors_raise_at_once_with_the_servers_message(server, thing, mp, status):
    server.thethings.fail_next(status, 1, "/v2/things/", message=f"refused with {status}")
    run = mp(tt(server.url, thing) + 'out(attempt(tt.write, {"temp": 1}))')
    assert run.result == ["HTTPError", status, f"refused with {status}"]
    assert len(server.requests_to("/v2/things/")) == 1
    assert server.thethings.values(thing, "temp") == []


@pytest.mark.parametrize("status", [403, 429, 500, 502, 503, 504])
def test_push_back_is_retried_then_raised(server, thing, mp, status):
    server.thethings.fail_next(status, 2, f"/v2/things/{thing}")
    run = mp(tt(server.url, thing) + 'out(attempt(tt.write, {"temp": 1}))')
    assert run.result == ["ok", None]
    assert [e.status for e in server.requests_to(f"/v2/things/{thing}")] == [status, status, 201]
    server.thethings.fail_next(status, 10, f"/v2/things/{thing}", message="slow down")
    run = mp(tt(server.url, thing) + 'out(attempt(tt.write, {"temp": 2}))')
    assert run.result == ["HTTPError", status, "slow down"]
    assert len(server.requests_to(f"/v2/things/{thing}")) == 3 + 4  # retries = 3
    assert [v["value"] for v in server.thethings.values(thing, "temp")] == [1]  # caller keeps 2


def test_unknown_token_is_a_401_and_never_printed(server, mp):
    token = "NOT_A_THING_TOKEN_x" * 2
    run = mp(tt(server.url, token) + """
out(attempt(tt.write, {"a": 1}))
out(attempt(tt.read, "a"))
out(attempt(tt.server_time))
""")
    assert [r[:2] for r in run.results] == [["HTTPError", 401]] * 3
    assert token not in run.stdout + run.stderr


def test_server_down_and_silent_server(mp):
    import socket

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))  # a port nobody listens on
    down = "http://127.0.0.1:%d" % probe.getsockname()[1]
    probe.close()
    raw = RawServer(None)  # accepts, never answers
    try:
        run = mp(tt(down, "T") + 'out(attempt(tt.write, {"a": 1}))\n'
                 + tt(raw.url, "T", timeout=1) + 'out(attempt(tt.write, {"a": 1}))', timeout=30)
        assert [r[0] for r in run.results] == ["ConnectionFailed", "Timeout"]
        assert raw.requests[0].startswith(b"POST /v2/things/T HTTP/1.0")
    finally:
        raw.stop()


@pytest.mark.parametrize("reply,expected", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json!", "not JSON"),
    (b'HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{"value": 1}', "not a list"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n[1, 2, 3]", "not a list"),
])
def test_a_bad_read_reply_is_a_protocol_error(mp, reply, expected):
    raw = RawServer(reply)
    try:
        run = mp(tt(raw.url, "T") + 'out(attempt(tt.read, "a"))')
        assert run.result[0] == "ProtocolError" and expected in run.result[2]
    finally:
        raw.stop()


def test_devserver_refuses_what_the_platform_refuses(server, thing):
    import urllib.error
    import urllib.request

    def post(path, body):
        req = urllib.request.Request(server.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    things = f"/v2/things/{thing}"
    assert post(things, {"values": [{"key": "a b", "value": 1}]})[0] == 400
    assert post(things, {"values": [{"key": "a", "value": 1, "geo": {"lat": 1, "lon": 2}}]})[0] == 400
    assert post(things, {"values": [{"key": "$geo", "value": {"type": "Point"}}]})[0] == 400
    assert post(things, {"values": []}) == (400, {"status": "error", "message": 'body must be {"values": [...]}'})
    assert post(things + "?store=false", {"values": [{"key": "a", "value": 1}]})[0] == 201
    assert post(things + "?broadcast=false", {"values": [{"key": "a", "value": 2}]})[0] == 201
    assert [v["value"] for v in server.thethings.values(thing, "a")] == [2]


ECHO = """
from iotlink import errors
seen = []
request = tt.transport.request
def posting(method, url, *args):
    # The moment the POST goes: a subscriber may get the echo from here on.
    seen.append([e[:2] for e in tt._echoes])
    return request(method, url, *args)
tt.transport.request = posting
tt.write({"led": "on"})
out([seen, tt._own_echo("led", "on"), tt._own_echo("led", "on")])
"""


def test_an_own_write_is_known_as_an_echo_before_it_is_posted(server, thing, mp):
    run = mp(tt(server.url, thing) + ECHO)
    # Expected from the first byte of the POST on, and taken for an echo once only.
    assert run.result == [[[["led", "on"]]], True, False]


def test_a_write_that_fails_is_not_expected_as_an_echo(mp):
    raw = RawServer(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    try:
        run = mp(tt(raw.url, "TOK") + """
print(attempt(tt.write, {"led": "on"}))
out([tt._echoes, tt._own_echo("led", "on")])
""")
        assert run.result == [[], False]
    finally:
        raw.stop()
