"""Fuzzing the real firmware with random RPCs: it never dies, never touches a pin outside the
allowlist, answers every request, and its heap stays bounded.

One virtual board (boot.py + main.py) runs for the whole module; hypothesis queues each RPC on
the devserver and waits for the board's reply, so the examples run at the board's pace.
"""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import config, flash, records, telemetry, wait_until

from iotlink_tools.devserver import DevServer
from iotlink_tools.vboard import Board

pytestmark = pytest.mark.slow  # the firmware's loop on a virtual board

PINS = {"23": 23, "led": "LED"}
ALLOWED_IDS = set(PINS.values())

scalars = st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=12)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
pin_names = st.sampled_from(["23", "led", "24", "LED", "0", "", " 23", "../23"]) | st.integers(-3, 40) | scalars
gpio_params = st.fixed_dictionaries({}, optional={
    "pin": pin_names, "value": st.sampled_from([0, 1, True, False, 2, -1, "1", None, 0.5]),
    "enabled": st.sampled_from([True, False, 1, 0, "yes", None]), "extra": json_values})
methods = st.sampled_from(["setGpio", "getGpio", "setGpioStatus", "getGpioStatus"]) | st.text(max_size=16)


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz-rpc")
    server = DevServer(async_timeout_ms=3000).start()
    server.add_device("test-device", "TEST_TOKEN")
    b = Board(flash(tmp, config(server, pins=PINS, interval_s=1)), heapsize="256K").start()
    wait_until(lambda: records(telemetry(server)), 15, "the board's first telemetry")
    state = {"server": server, "board": b, "n": 0}
    yield state
    b.stop()
    server.stop()
    # Never died, never rebooted: every RPC was answered by the same boot.
    assert b.boots == 1 and b.returncode in (None, -15, 0), b.console()[-2000:]
    # Only allowlisted pins ever moved.
    assert {w["pin"] for w in b.pin_writes()} <= ALLOWED_IDS
    # Bounded heap: after the first minute of requests, free memory does not keep falling.
    free = [r["values"]["mem_free"] for r in records(telemetry(server))]
    assert len(free) >= 4
    assert min(free[len(free) // 2:]) > min(free[:len(free) // 2]) - 8192, free


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(method=methods, params=gpio_params | json_values)
def test_any_rpc_gets_a_reply_and_moves_only_allowed_pins(board, method, params):
    server = board["server"]
    reply = server.call_rpc("test-device", method, params, timeout_s=15)
    assert isinstance(reply, dict)
    allowed_pin = isinstance(params, dict) and params.get("pin") in ("23", "led")
    if method == "setGpio" and allowed_pin and params.get("value") in (0, 1, True, False):
        assert reply == {"pin": params["pin"], "value": int(params["value"])}
    elif method == "getGpio" and allowed_pin:
        assert reply["pin"] == params["pin"] and reply["value"] in (0, 1)
    elif method not in ("setGpio", "getGpio", "setGpioStatus", "getGpioStatus"):
        assert "error" in reply
    board["n"] += 1
    json.dumps(reply)  # the reply crossed the wire as JSON
