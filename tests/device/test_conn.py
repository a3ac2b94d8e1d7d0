"""iotlink's own HTTP/1.1 client: keep-alive, chunked replies, verified TLS; run in micropython."""

import pytest
from support import RawServer, SegmentServer

from iotlink_lab.tlsutil import make_pki
from iotlink_tools.devserver import DevServer

ATTEMPT = """
from iotlink import errors
def attempt(fn, *a, **k):
    try:
        return ["ok", fn(*a, **k)]
    except errors.IotlinkError as e:
        return [type(e).__name__, str(e)]
"""


def peers(server, path):
    return {e.peer for e in server.requests_to(path)}


def test_keepalive_sends_every_request_on_one_connection(server, device, mp):
    server.queue_rpc("test-device", "getGpio", {"pin": "23"})
    run = mp(f"""
from iotlink.thingsboard import ThingsBoard
tb = ThingsBoard({server.url!r}, "TEST_TOKEN", keepalive=True)
for i in range(5):
    tb.send_telemetry({{"n": i}}, ts=1700000000000 + i)
out(tb.request_attributes())
r = tb.wait_rpc(timeout_ms=1000)
tb.reply_rpc(r["id"], {{"pin": "23", "value": 0}})
""")
    assert [v for _, _, v in server.telemetry("test-device", "n")] == [0, 1, 2, 3, 4]
    assert run.result == {"client": {}, "shared": {}}
    assert server.wait_rpc_reply("test-device", 0, 1) == {"pin": "23", "value": 0}
    assert len(peers(server, "/api/v1/TEST_TOKEN")) == 1  # one TCP connection for all 8
    first = server.requests_to("/telemetry")[0]
    assert first.headers["host"] == f"127.0.0.1:{server.port}"
    assert first.body == b'{"ts": 1700000000000, "values": {"n": 0}}'


def test_the_clock_is_set_over_the_kept_alive_connection(server, device, mp):
    # A HEAD reply announces a body it does not send: reading none keeps the connection usable.
    run = mp(f"""
from iotlink import clock, clock_once
from iotlink.thingsboard import ThingsBoard
tb = ThingsBoard({server.url!r}, "TEST_TOKEN", keepalive=True)
tb.send_telemetry({{"n": 1}})
out(clock_once.sync({server.url!r}, timeout=5, transport=tb.transport))
tb.send_telemetry({{"n": 2}})
out(clock.now_ms())
""")
    synced, now = run.results
    heads = server.requests_to("/", "HEAD")
    assert synced and len(heads) >= 2  # the first Date, then probes until its second turns
    assert peers(server, "/") == {server.requests_to("/telemetry")[0].peer}  # one TCP connection
    assert abs(now - server.requests_to("/telemetry")[-1].at * 1000) < 1500


def test_a_connection_the_server_closed_while_idle_is_replaced(mp):
    # Each reply says keep-alive, then the server closes anyway (an idle timeout).
    raw = RawServer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    try:
        run = mp(f"""
from iotlink.http_conn import Connection
c = Connection({raw.url!r})
out([c.request("POST", {raw.url!r} + "/x", b"1")[0], c.request("POST", {raw.url!r} + "/x", b"2")[0]])
""")
        assert run.result == [200, 200]
        assert [r.split(b"\r\n\r\n")[1] for r in raw.requests] == [b"1", b"2"]
    finally:
        raw.stop()


@pytest.mark.parametrize("reply,expected", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3;x=1\r\n:12\r\n1\r\n}\r\n0\r\n\r\n",
     ["ok", {"a": 12}]),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n", ["ProtocolError", "reply truncated"]),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", ["ProtocolError", "bad chunk header"]),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n{}", ["ProtocolError", "bad chunk header"]),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\n{}", ["ProtocolError", "bad chunk header"]),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n" + b"X-Trailer: 1\r\n" * 100,
     ["ProtocolError", "too many trailer lines"]),
    (b"HTTP/1.0 200 OK\r\n\r\n{\"until\": \"eof\"}", ["ok", {"until": "eof"}]),
    (b"HTTP/1.1 200 OK\r\n" + b"X-Junk: 1\r\n" * 100 + b"\r\n{}", ["ProtocolError", "too many header lines"]),
    # A long header line (a cookie, a policy) is read past in pieces; the lines after it still count.
    (b"HTTP/1.1 200 OK\r\nX-Policy: " + b"p" * 1000 + b"\r\nContent-Length: 2\r\n\r\n{}", ["ok", {}]),
    (b"HTTP/1.1 200 OK\r\nX-Policy: " + b"p" * 5000 + b"\r\n\r\n{}", ["ProtocolError", "line too long"]),
    (b"SSH-2.0-OpenSSH\r\n\r\n", ["ProtocolError", "bad status line"]),
])
def test_replies_are_framed_and_bounded(mp, reply, expected):
    raw = RawServer(reply)
    try:
        run = mp(ATTEMPT + f"""
from iotlink.http_conn import Connection
from iotlink import http
def get():
    status, body, _ = Connection({raw.url!r}, timeout=3).request("GET", {raw.url!r} + "/x")
    return http.loads(body)
out(attempt(get))
""", heapsize="52k")  # the library is compiled from source in this heap too: http_conn takes most
        assert run.result == expected
    finally:
        raw.stop()


# ---- the reply read through the connection's buffer, however its segments are cut ---------

HELLO = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
WORLD = [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nworld"]
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
TWO_POSTS = ATTEMPT + """
from iotlink.http_conn import Connection
c = Connection({url!r}, timeout=3)
def post(path, body):
    status, data, _ = c.request("POST", {url!r} + path, body)
    return [status, bytes(data).decode()]
out([attempt(post, "/x", b"1"), attempt(post, "/y", b"22")])
"""


def sent(url, path, body):
    host = url.removeprefix("http://")
    return (b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (path.encode(), host.encode(), len(body), body))


@pytest.mark.parametrize("pieces", [
    [HELLO],
    [b"HTTP/1.1 200 OK\r", b"\nContent-Length: 5\r\n\r", b"\nhe", b"llo"],
    [b"HTTP/1.1 2", b"00 OK\r\nContent-Le", b"ngth: 5\r\n", b"\r\nhello"],
    [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", b"\r", b"\n", b"hello"],
    [CHUNKED + b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n"],
    [CHUNKED + b"2\r", b"\nhe\r\n3", b"\r\nllo\r", b"\n0\r\n", b"\r\n"],
    [CHUNKED[:-1], b"\n2\r\nhe\r\n3\r\nl", b"lo\r\n0\r\nX-Trailer: 1\r\n\r\n"],
], ids=["head and body in one segment", "head cut mid-CRLF", "cut inside a name and a value",
        "blank line in two segments", "chunked body read with the head", "chunk lines cut mid-CRLF",
        "chunks and trailer after a cut head"])
def test_a_reply_cut_anywhere_reads_the_same_and_keeps_the_connection(mp, pieces):
    server = SegmentServer([pieces, WORLD])
    try:
        run = mp(TWO_POSTS.format(url=server.url))
        assert run.result == [["ok", [200, "hello"]], ["ok", [200, "world"]]]
        assert server.requests == [sent(server.url, "/x", b"1"), sent(server.url, "/y", b"22")]
        assert server.connections == 1  # the second request went on the first one's connection
    finally:
        server.stop()


@pytest.mark.parametrize("first", [
    HELLO + b"HTTP/1.1 500 Stale\r\nContent-Length: 5\r\n\r\nstale",
    CHUNKED + b"5\r\nhello\r\n0\r\n\r\nHTTP/1.1 500 Stale\r\n\r\n",
], ids=["after a sized body", "after the last chunk"])
def test_bytes_after_a_reply_are_never_the_next_reply(mp, first):
    # They came in the read that ended the body: the connection is dropped with them, and the
    # next request goes on a new one.
    server = SegmentServer([[first], WORLD])
    try:
        run = mp(TWO_POSTS.format(url=server.url))
        assert run.result == [["ok", [200, "hello"]], ["ok", [200, "world"]]]
        assert server.requests == [sent(server.url, "/x", b"1"), sent(server.url, "/y", b"22")]
        assert server.connections == 2
    finally:
        server.stop()


def test_a_stream_reads_the_body_that_came_with_its_head(mp):
    error = b'{"error":"bad token"}'
    raw = RawServer(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: %d\r\n\r\n%s" % (len(error), error),
                    close=False)  # and the connection open: no end of stream either
    docs = SegmentServer([[CHUNKED[:20], CHUNKED[20:] + b"7\r\n{\"a\":1}\r\n8\r", b"\n{\"b\":22}\r\n"]])
    try:
        run = mp(f"""
from iotlink.http_stream import Stream
s = Stream({raw.url!r} + "/x", timeout=2)
out([s.open(), bytes(s.read_rest()).decode()])
s = Stream({docs.url!r} + "/x", timeout=2)
status = s.open()
got = []
while len(got) < 2:
    got += [bytes(d).decode() for d in s.read(2)]
out([status, got])
""")
        assert run.results == [[401, error.decode()], [200, ['{"a":1}', '{"b":22}']]]
    finally:
        raw.stop()
        docs.stop()


@pytest.fixture
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_server(pki):
    srv = DevServer(async_timeout_ms=3000, tls=(str(pki["cert"]), str(pki["key"]))).start()
    srv.add_device("tls-device", "TLS_TOKEN")
    yield srv
    srv.stop()


def test_https_verifies_the_server_against_the_configured_ca(tls_server, pki, mp):
    run = mp(ATTEMPT + f"""
from iotlink.thingsboard import ThingsBoard
ca = open({str(pki["ca"])!r}, "rb").read()
other = open({str(pki["other_ca"])!r}, "rb").read()
out(attempt(ThingsBoard({tls_server.url!r}, "TLS_TOKEN", cadata=ca).send_telemetry, {{"v": 1}}))
out(attempt(ThingsBoard({tls_server.url!r}, "TLS_TOKEN", cadata=other).send_telemetry, {{"v": 2}}))
import sys
out("iotlink.http_tls_once" in sys.modules)  # the certificate code is in RAM only while a context is built
""")
    assert run.results[0] == ["ok", None]
    assert run.results[2] is False
    assert run.results[1][0] == "TLSError"  # an unknown issuer: nothing was sent
    assert "not correctly signed" in run.results[1][1]
    assert [v for _, _, v in tls_server.telemetry("tls-device", "v")] == [1]


def test_https_keeps_one_connection_for_several_requests(tls_server, mp):
    run = mp(f"""
from iotlink.thingsboard import ThingsBoard
tb = ThingsBoard({tls_server.url!r}, "TLS_TOKEN", keepalive=True)
for v in (5, 6):
    tb.send_telemetry({{"v": v}})
out(tb.request_attributes())
""")
    assert run.result == {"client": {}, "shared": {}}
    assert [v for _, _, v in tls_server.telemetry("tls-device", "v")] == [5, 6]
    assert len(peers(tls_server, "/api/v1/TLS_TOKEN")) == 1


def test_https_without_ca_data_still_encrypts(tls_server, mp):
    mp(f"""
from iotlink.thingsboard import ThingsBoard
ThingsBoard({tls_server.url!r}, "TLS_TOKEN", keepalive=True).send_telemetry({{"v": 3}})
ThingsBoard({tls_server.url!r}, "TLS_TOKEN").send_telemetry({{"v": 4}})
""")
    assert [v for _, _, v in tls_server.telemetry("tls-device", "v")] == [3, 4]


# ---- a deadline per request, however the server drips ----------------------------------------

DRIP_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n"
DRIP_BODY = b"x" * 200


@pytest.mark.parametrize("drip_from", [0, len(DRIP_HEAD)], ids=["head", "body"])
def test_a_server_dripping_its_reply_is_cut_at_the_deadline(mp, drip_from):
    # A byte every 0.5 s: no read ever waits its 1 s timeout out, the whole would take 2 minutes.
    raw = RawServer(DRIP_HEAD + DRIP_BODY, drip=0.5, drip_from=drip_from)
    try:
        run = mp(ATTEMPT + f"""
from iotlink.http_conn import Connection
c = Connection({raw.url!r}, timeout=1)
out(attempt(c.request, "GET", {raw.url!r} + "/x"))
""", timeout=30)
        assert run.result == ["Timeout", "no whole reply within 3 s"]
    finally:
        raw.stop()


def test_a_dripped_body_through_the_port_requests_is_cut_at_the_deadline(mp):
    raw = RawServer(DRIP_HEAD + DRIP_BODY, drip=0.5, drip_from=len(DRIP_HEAD))
    try:
        run = mp(ATTEMPT + f"""
from iotlink import http_oneshot
out(attempt(http_oneshot.request, "GET", {raw.url!r} + "/x", timeout=1))
""", timeout=30)
        assert run.result == ["Timeout", "no whole reply within 3 s"]
    finally:
        raw.stop()


@pytest.mark.parametrize("drip_from", [0, len(DRIP_HEAD)], ids=["head", "error body"])
def test_a_stream_s_head_and_error_body_have_a_deadline(mp, drip_from):
    raw = RawServer(DRIP_HEAD.replace(b"200 OK", b"500 Oops") + DRIP_BODY, drip=0.5, drip_from=drip_from)
    try:
        run = mp(ATTEMPT + f"""
from iotlink.http_stream import Stream
s = Stream({raw.url!r} + "/x", timeout=1)
status = attempt(s.open)
out([status, len(s.read_rest()) if status == ["ok", 500] else None])
""", timeout=30)
        status, rest = run.result
        if drip_from:
            assert status == ["ok", 500] and rest < len(DRIP_BODY)  # what came before the deadline
        else:
            assert status == ["Timeout", "no whole reply within 3 s"]
    finally:
        raw.stop()
