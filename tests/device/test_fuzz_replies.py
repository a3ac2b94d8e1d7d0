"""Fuzzing: random server replies never crash the device library or grow its heap.

One micropython process serves every example (reading which call to make from stdin), so
thousands of replies cost seconds. Hypothesis builds the replies: valid and broken status lines,
right and wrong Content-Length, chunked framing, JSON of every shape, and plain garbage.
"""

import json
import os
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import MICROPYPATH, MICROPYTHON, RawServer

DEVICE = """
import sys, gc, json
from iotlink.thingsboard import ThingsBoard
from iotlink.http_conn import Connection
from iotlink import errors
URL = sys.argv[1]
clients = {"requests": ThingsBoard(URL, "T", timeout=2), "keepalive": ThingsBoard(URL, "T", timeout=2, keepalive=True)}
calls = {
    "wait_rpc": lambda tb: tb.wait_rpc(100),
    "wait_attributes": lambda tb: tb.wait_attributes(100),
    "request_attributes": lambda tb: tb.request_attributes(shared_keys=["a"]),
    "send_telemetry": lambda tb: tb.send_telemetry({"a": 1}),
    "call_rpc": lambda tb: tb.call_rpc("m"),
    "provision": lambda tb: ThingsBoard.provision(URL, "d", "k", "s", timeout=2),
}
gc.collect()
print(json.dumps({"mem_free": gc.mem_free()}))
while True:
    line = sys.stdin.readline()
    if not line:
        break
    transport, name = line.split()
    try:
        calls[name](clients[transport])
        outcome = "ok"
    except errors.IotlinkError as e:
        outcome = type(e).__name__
    gc.collect()
    print(json.dumps({"outcome": outcome, "mem_free": gc.mem_free()}))
"""

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
rpc_like = st.fixed_dictionaries({}, optional={
    "id": st.integers(-5, 2**31) | st.text(max_size=3) | st.none(),
    "method": st.text(max_size=10) | st.integers(),
    "params": json_values,
})
bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    rpc_like.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
)


@st.composite
def replies(draw):
    status = draw(st.sampled_from([b"200 OK", b"400 Bad", b"401 X", b"408 T", b"413 L", b"500 E",
                                   b"503 U", b"504 G", b"999 ?", b"abc", b""]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/9", b""]))
    body = draw(bodies)
    framing = draw(st.sampled_from(["length", "short", "long", "none", "chunked", "bad-chunk"]))
    head = [version + b" " + status]
    if framing == "length":
        head.append(b"Content-Length: %d" % len(body))
    elif framing == "short":
        head.append(b"Content-Length: %d" % max(len(body) - 3, 0))
    elif framing == "long":
        head.append(b"Content-Length: %d" % (len(body) + draw(st.integers(1, 10**9))))
    elif framing in ("chunked", "bad-chunk"):
        head.append(b"Transfer-Encoding: chunked")
        size = b"%x" % len(body) if framing == "chunked" else b"zz"
        body = size + b"\r\n" + body + b"\r\n0\r\n\r\n"
    head += draw(st.lists(st.sampled_from([b"Connection: close", b"Connection: keep-alive",
                                           b"X-Pad: " + b"p" * 400, b"Content-Type: text/plain",
                                           b"Retry-After: soon", b"no colon here"]), max_size=4))
    return b"\r\n".join(head) + b"\r\n\r\n" + body


@pytest.fixture(scope="module")
def board():
    raw = RawServer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    proc = subprocess.Popen([MICROPYTHON, "-X", "heapsize=96k", "-c", DEVICE, raw.url],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={"MICROPYPATH": MICROPYPATH, "PATH": os.environ["PATH"]})
    start = json.loads(proc.stdout.readline())
    state = {"raw": raw, "proc": proc, "start": start["mem_free"], "low": start["mem_free"], "n": 0,
             "outcomes": {}}
    yield state
    proc.stdin.close()
    proc.wait(timeout=10)
    raw.stop()
    # Bounded heap: after every reply was handled and collected, the free heap is where it began.
    assert state["n"] > 0
    assert state["start"] - state["low"] < 4096, state
    # The replies reached every outcome: parsed, refused by status, refused as malformed.
    assert {"ok", "HTTPError", "ProtocolError"} <= set(state["outcomes"]), state["outcomes"]


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@pytest.mark.slow
@given(reply=replies(), call=st.sampled_from(["wait_rpc", "wait_attributes", "request_attributes",
                                               "send_telemetry", "call_rpc", "provision"]),
       transport=st.sampled_from(["requests", "keepalive"]))
def test_random_replies_end_in_a_result_or_an_iotlink_error(board, reply, call, transport):
    board["raw"].reply = reply
    board["proc"].stdin.write(f"{transport} {call}\n")
    board["proc"].stdin.flush()
    line = board["proc"].stdout.readline()
    assert line, f"the board died on {reply!r}"  # anything but an IotlinkError kills the loop
    result = json.loads(line)
    assert result["outcome"] in {"ok", "HTTPError", "ProtocolError", "ProvisionError", "Timeout",
                                 "ConnectionFailed"}
    board["n"] += 1
    board["outcomes"][result["outcome"]] = board["outcomes"].get(result["outcome"], 0) + 1
    board["low"] = min(board["low"], result["mem_free"])
