"""thethings.iO's subscription channel: the document splitter and the de-chunking stream client
(run in micropython), and subscribe() against the devserver and against scripted raw servers."""

import json
import threading
import time

import pytest
from support import RawServer, tt

from iotlink_lab.tlsutil import make_pki
from iotlink_tools.devserver import DevServer

STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
SUBSCRIBED = b'{"status":"success","message":"subscribed"}'
# Strings with brackets, escaped quotes and backslashes, a heartbeat, several documents at once.
DOCS = [SUBSCRIBED, b"{}", b'[{"key":"msg","value":"a } ] { [ \\" quoted \\\\"}]',
        b'[{"key":"led","value":"on"},{"key":"n","value":[1,{"x":"}"}]}]', b"{}",
        b'[{"key":"path","value":"C:\\\\dir\\\\"}]']


def chunked(body: bytes, sizes) -> bytes:
    """body as HTTP chunks of the given sizes (cycled), the first with an extension."""
    out, i, k = b"", 0, 0
    while i < len(body):
        n = sizes[k % len(sizes)]
        ext = b";x=1" if not k else b""
        out += b"%x%s\r\n%s\r\n" % (len(body[i:i + n]), ext, body[i:i + n])
        i, k = i + n, k + 1
    return out


def in_background(fn):
    """Run fn in a thread; returns (thread, holder) with holder["result"] once it is done."""
    holder = {}
    thread = threading.Thread(target=lambda: holder.setdefault("result", fn()), daemon=True)
    thread.start()
    return thread, holder


def wait_until(predicate, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def done_requests(server, path):
    """Requests whose handler has answered (the status is set)."""
    return [e for e in server.requests_to(path, "GET") if e.status]


def subscribes(server, token):
    return [e for e in server.requests_to(f"/v2/things/{token}", "GET") if e.path.endswith(token)]


# ---- the splitter ------------------------------------------------------------------------
@pytest.mark.parametrize("sizes", [[1], [2], [3], [5, 1, 7], [64], [10000]])
def test_splitter_finds_each_document_whatever_the_chunk_sizes(mp, sizes):
    body = b"".join(DOCS[:3]) + b"\r\n " + b"".join(DOCS[3:])
    run = mp(f"""
from iotlink.http_stream import Splitter
s = Splitter()
body = {body!r}
sizes = {sizes!r}
docs, i, k = [], 0, 0
while i < len(body):
    n = sizes[k % len(sizes)]
    s.feed(memoryview(body)[i:i + n], docs)
    i, k = i + n, k + 1
out([d.decode() for d in docs])
""")
    assert [d.encode() for d in run.result] == DOCS
    assert [json.loads(d) for d in run.result][2] == [{"key": "msg", "value": 'a } ] { [ " quoted \\'}]


def test_splitter_refuses_an_oversized_document_and_garbage(mp):
    run = mp("""
from iotlink.http_stream import Splitter
from iotlink.errors import ProtocolError
s = Splitter(64)
for data in (b'{}[' + b'1,' * 40 + b'1]', b'{"a":1} x', b'"top-level string"'):
    docs = []
    try:
        s.feed(data, docs)
        out(["ok", len(docs)])
    except ProtocolError as e:
        out([str(e), [d.decode() for d in docs]])
    s.reset()
docs = []
s.feed(b'{"after":"reset"}', docs)
out(docs[0].decode())
""")
    assert run.results == [
        ["stream: document over 64 bytes", ["{}"]],
        ["stream: byte outside a JSON document", ['{"a":1}']],
        ["stream: byte outside a JSON document", []],
        '{"after":"reset"}']


# ---- subscribe against the devserver -----------------------------------------------------
def test_a_subscribed_board_sees_another_clients_value_and_never_its_own(server, mp):
    token = server.thethings.add_thing()["token"]
    thread, board = in_background(lambda: mp(tt(server.url, token) + """
got = []
def seen(key, value):
    got.append([key, value])
    return key == "led" and value == "other"
out(tt.subscribe(seen, keep_alive_ms=300, duration_ms=200))  # opens the channel
tt.write({"led": "mine", "temp": 21})                        # echoed by the server
out(tt.subscribe(seen, keep_alive_ms=300, duration_ms=8000))
out(got)
"""))
    assert server.thethings.wait_subscribed(token)
    wait_until(lambda: server.thethings.values(token, "temp"))  # the board's own write is in
    server.thethings.write(token, {"led": "other"})
    thread.join(20)
    assert board["result"].results == [False, True, [["led", "other"]]]
    sent = [json.loads(d) for d in server.thethings.streamed(token)]
    echoed = [v["value"] for doc in sent if isinstance(doc, list) for v in doc if v["key"] == "led"]
    assert echoed == ["mine", "other"]  # the echo crossed the wire; the board dropped it
    opened = subscribes(server, token)
    assert len(opened) == 1 and opened[0].query == {"keepAlive": ["300"]}
    assert opened[0].headers["accept"] == "application/json"


def test_a_cut_stream_is_reopened_and_missed_values_caught_up_once(server, mp):
    thing = server.thethings
    token = thing.add_thing()["token"]
    thing.write(token, {"cmd": "initial"}, broadcast=False)
    thread, board = in_background(lambda: mp(tt(server.url, token) + """
got = []
def seen(key, value):
    got.append([key, value])
    return len(got) == 2
out(tt.subscribe(seen, keep_alive_ms=300, duration_ms=8000, keys=("cmd",)))
out(got)
"""))
    catch_ups = f"/v2/things/{token}/resources/cmd"
    wait_until(lambda: len(done_requests(server, catch_ups)) == 1)
    thing.drop_streams(token)  # reconnect with nothing new: "initial" is not given twice
    wait_until(lambda: len(done_requests(server, catch_ups)) == 2)
    thing.write(token, {"cmd": "missed"}, broadcast=False)  # no subscriber hears it
    thing.drop_streams(token, tail=b'[{"key":"cmd","value":"brok')  # ends mid-document
    thread.join(20)
    assert board["result"].results == [True, [["cmd", "initial"], ["cmd", "missed"]]]
    assert len(subscribes(server, token)) == 3
    assert [e.query for e in server.requests_to(catch_ups)] == [{"limit": ["1"]}] * 3


def test_a_value_written_between_opening_and_the_catch_up_read_is_given_once(server, mp):
    thing = server.thethings
    token = thing.add_thing()["token"]
    # The write lands after the channel opened and before the catch-up read is answered: the
    # channel brings it and the read returns it.
    thing.before_next(f"/v2/things/{token}/resources/cmd", lambda: thing.write(token, {"cmd": "go"}))
    run = mp(tt(server.url, token) + """
got = []
def seen(key, value):
    got.append([key, value])
out(tt.subscribe(seen, keep_alive_ms=300, duration_ms=1500, keys=("cmd",)))
out(got)
""")
    assert run.results == [False, [["cmd", "go"]]]
    streamed = [json.loads(d) for d in thing.streamed(token)]
    assert [{"key": "cmd", "value": "go"}] in [[{k: v[k] for k in ("key", "value")} for v in doc]
                                               for doc in streamed if isinstance(doc, list)]


def test_heartbeats_keep_a_quiet_channel_open(server, mp):
    token = server.thethings.add_thing()["token"]
    run = mp(tt(server.url, token) + """
out(tt.subscribe(lambda k, v: True, keep_alive_ms=200, duration_ms=1200))
""")
    assert run.result is False
    assert len(subscribes(server, token)) == 1  # never reconnected
    assert server.thethings.streamed(token).count(b"{}") >= 2


def test_subscribe_retries_push_back_and_raises_final_errors(server, mp):
    token = server.thethings.add_thing()["token"]
    server.thethings.fail_next(503, 2, f"/v2/things/{token}")
    thread, board = in_background(lambda: mp(tt(server.url, token) + """
out(tt.subscribe(lambda k, v: [k, v] == ["led", "on"], keep_alive_ms=300, duration_ms=8000))
"""))
    assert server.thethings.wait_subscribed(token)
    server.thethings.write(token, {"led": "on"})
    thread.join(20)
    assert board["result"].result is True
    assert [e.status for e in subscribes(server, token)] == [503, 503, 200]

    server.thethings.fail_next(410, 1, f"/v2/things/{token}", message="API v1 is gone")
    run = mp(tt(server.url, token) + "out(attempt(tt.subscribe, lambda k, v: True, 300, 3000))")
    assert run.result == ["HTTPError", 410, "API v1 is gone"]


def test_unknown_thing_raises_at_once_without_the_token_in_the_message(server, mp):
    token = "UNKNOWN_THING_TOKEN_0123456789_abcdefghijkl"
    run = mp(tt(server.url, token) + "out(attempt(tt.subscribe, lambda k, v: True, 300, 3000))")
    assert run.result == ["HTTPError", 401, "Thing with thing token '<token>' not found."]
    assert token not in run.stdout + run.stderr
    assert len(server.requests_to("/v2/things/")) == 1


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_subscribe_over_verified_https(pki, mp):
    srv = DevServer(async_timeout_ms=3000, tls=(str(pki["cert"]), str(pki["key"]))).start()
    try:
        token = srv.thethings.add_thing()["token"]
        thread, board = in_background(lambda: mp(f"""
from iotlink.thethings import TheThings
tt = TheThings({srv.url!r}, {token!r}, timeout=5, cadata=open({str(pki["ca"])!r}, "rb").read())
got = []
out(tt.subscribe(lambda k, v: got.append([k, v]) or True, keep_alive_ms=300, duration_ms=8000))
out(got)
"""))
        assert srv.thethings.wait_subscribed(token)
        srv.thethings.write(token, {"led": "tls"})
        thread.join(20)
        assert board["result"].results == [True, [["led", "tls"]]]
    finally:
        srv.stop()


# ---- subscribe against scripted servers ----------------------------------------------------
def collect(url, duration_ms=1500, keep_alive_ms=60000, heapsize=None, mp=None, stop_after=None):
    code = tt(url, "TOK") + f"""
got = []
def seen(key, value):
    got.append([key, value])
    return {stop_after!r} is not None and len(got) >= {stop_after!r}
out(attempt(tt.subscribe, seen, {keep_alive_ms}, {duration_ms}))
out(got)
"""
    return mp(code, heapsize=heapsize, timeout=30)


@pytest.mark.parametrize("sizes", [[1], [3], [7, 2, 50], [4096]])
def test_chunks_split_anywhere_are_reassembled(mp, sizes):
    raw = RawServer(STREAM_HEAD + chunked(b"".join(DOCS), sizes), close=False)
    try:
        run = collect(raw.url, duration_ms=800, mp=mp)
        assert run.results == [["ok", False], [
            ["msg", 'a } ] { [ " quoted \\'], ["led", "on"], ["n", [1, {"x": "}"}]], ["path", "C:\\dir\\"]]]
        assert len(raw.requests) == 1
        assert raw.requests[0].startswith(b"GET /v2/things/TOK?keepAlive=60000 HTTP/1.1\r\n")
    finally:
        raw.stop()


def test_a_stream_without_chunking_is_read_raw(mp):
    raw = RawServer(b"HTTP/1.1 200 OK\r\n\r\n" + b"".join(DOCS), close=False)
    try:
        run = collect(raw.url, duration_ms=800, mp=mp)
        assert [k for k, _ in run.results[1]] == ["msg", "led", "n", "path"]
    finally:
        raw.stop()


@pytest.mark.parametrize("tail", [
    b'5\r\n[{"ke\r\n',                     # ends mid-document, mid-chunk framing
    b'5\r\n[{"ke\r\n0\r\n\r\n',            # a last chunk in the middle of a document
    b"1000\r\n" + b"[" + b'"x",' * 1100,  # a document over the 4 KB buffer
    b"zz\r\n",                             # not a chunk header
    b"-1\r\n" + b"x" * 50,                # a negative size: it must not read backwards
    b"0x10\r\n" + b"x" * 16,              # no prefix in chunk sizes
])
def test_a_broken_stream_is_dropped_and_reopened(mp, tail):
    good = chunked(SUBSCRIBED + b'[{"key":"a","value":1}]', [100])
    raw = RawServer(STREAM_HEAD + good + tail)
    try:
        run = collect(raw.url, duration_ms=1000, mp=mp)
        assert run.results[0] == ["ok", False]
        assert run.results[1][:2] == [["a", 1], ["a", 1]]  # a new value each time it reopened
        assert len(raw.requests) >= 2  # the last one may be cut by the end of the duration
        assert len(raw.requests) - 1 <= len(run.results[1]) <= len(raw.requests)
    finally:
        raw.stop()


def test_a_silent_channel_is_reopened_after_two_keepalives(mp):
    raw = RawServer(STREAM_HEAD + chunked(SUBSCRIBED, [100]), close=False)  # then nothing
    try:
        run = collect(raw.url, duration_ms=1500, keep_alive_ms=200, mp=mp)
        assert run.results == [["ok", False], []]
        assert 2 <= len(raw.requests)
    finally:
        raw.stop()


@pytest.mark.slow
def test_a_server_that_never_answers_or_is_down_only_delays(mp):
    import socket

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    down = "http://127.0.0.1:%d" % probe.getsockname()[1]
    probe.close()
    silent = RawServer(None)
    try:
        for url in (down, silent.url):
            run = mp(tt(url, "TOK", timeout=1) + "out(attempt(tt.subscribe, lambda k, v: True, 300, 1500))",
                     timeout=30)
            assert run.result == ["ok", False]
        assert len(silent.requests) >= 1
    finally:
        silent.stop()


def test_values_after_the_stopping_one_wait_for_the_next_call(mp):
    raw = RawServer(STREAM_HEAD + chunked(
        SUBSCRIBED + b'[{"key":"a","value":1},{"key":"b","value":2}][{"key":"c","value":3}]', [200]),
        close=False)
    try:
        run = mp(tt(raw.url, "TOK") + """
got = []
def first(key, value):
    got.append(key)
    return True
out(tt.subscribe(first, 60000, 2000))
out(tt.subscribe(first, 60000, 2000))
out(tt.subscribe(first, 60000, 2000))
out(got)
""")
        assert run.results == [True, True, True, ["a", "b", "c"]]
        assert len(raw.requests) == 1  # one channel for the three calls
    finally:
        raw.stop()


def test_a_long_stream_runs_in_a_small_heap(mp):
    # 96 KB of heap, of which about 47 KB hold the library compiled from source (frozen on a board).
    body = SUBSCRIBED + b"".join(b'[{"key":"n","value":%d}]{}' % i for i in range(3000))
    raw = RawServer(STREAM_HEAD + chunked(body, [1000, 13]), close=False)
    try:
        run = mp(tt(raw.url, "TOK") + """
count, wrong = [0], []
def seen(key, value):
    if value != count[0]:
        wrong.append(value)
    count[0] += 1
    return count[0] == 3000
out(attempt(tt.subscribe, seen, 60000, 20000))
out([count[0], wrong[:5]])
""", heapsize="96k", timeout=30)
        assert run.results == [["ok", True], [3000, []]]
    finally:
        raw.stop()
