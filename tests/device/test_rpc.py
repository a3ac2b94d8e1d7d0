"""The RPC dispatcher in micropython: the four GPIO methods, the allowlist, every bad input."""

import json

import pytest

PINS = {"23": 23, "led": "LED", "5": 5}

SETUP = f"""
from iotlink.rpc import Dispatcher
d = Dispatcher({PINS!r})
"""


def run(mp, code, pins=None):
    """Run dispatcher code with the pin log on; returns (results, pin writes)."""
    log = mp.flash / "pins.jsonl"
    setup = SETUP if pins is None else f"from iotlink.rpc import Dispatcher\nd = Dispatcher({pins!r})\n"
    result = mp(setup + code, env={"IOTLINK_PIN_LOG": str(log)})
    writes = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result.results, writes


def test_set_gpio_drives_the_pin_and_replies_as_the_contract_says(mp):
    results, writes = run(mp, """
out(d.handle("setGpio", {"pin": "23", "value": 1}))
out(d.handle("setGpio", {"pin": 23, "value": False}))
out(d.handle("setGpio", {"pin": "led", "value": True}))
""")
    assert results == [{"pin": "23", "value": 1}, {"pin": "23", "value": 0}, {"pin": "led", "value": 1}]
    assert writes == [{"pin": 23, "value": 1}, {"pin": 23, "value": 0}, {"pin": "LED", "value": 1}]


def test_get_gpio_reads_what_was_driven_and_leaves_it_an_output(mp):
    results, writes = run(mp, """
import machine
out(d.handle("getGpio", {"pin": "5"}))
out(d._pins["5"][0].mode() == machine.Pin.IN)
d.handle("setGpio", {"pin": "23", "value": 1})
out(d.handle("getGpio", {"pin": 23}))
out(d._pins["23"][0].mode() == machine.Pin.OUT)
d.handle("setGpio", {"pin": "5", "value": 1})
out(d._pins["5"][0].mode() == machine.Pin.OUT)
out(d.handle("getGpio", {"pin": "5"}))
""")
    assert results == [{"pin": "5", "value": 0}, True, {"pin": "23", "value": 1}, True, True,
                       {"pin": "5", "value": 1}]
    assert writes == [{"pin": 23, "value": 1}, {"pin": 5, "value": 1}]  # reads wrote nothing


def test_gpio_status_methods_report_every_allowed_pin(mp):
    results, writes = run(mp, """
out(d.handle("getGpioStatus", None))
out(d.handle("setGpioStatus", {"pin": 23, "enabled": True}))
out(d.handle("setGpioStatus", {"pin": "led", "enabled": 1}))
out(d.handle("getGpioStatus", {"anything": [1]}))
out(d.handle("setGpioStatus", {"pin": "23", "enabled": False}))
""")
    assert results == [
        {"23": False, "led": False, "5": False},
        {"23": True, "led": False, "5": False},
        {"23": True, "led": True, "5": False},
        {"23": True, "led": True, "5": False},
        {"23": False, "led": True, "5": False},
    ]
    assert writes == [{"pin": 23, "value": 1}, {"pin": "LED", "value": 1}, {"pin": 23, "value": 0}]


@pytest.mark.parametrize("method,params,says", [
    ("reboot", {}, "unknown method 'reboot'"),
    (None, {}, "unknown method None"),
    (7, {"pin": "23", "value": 1}, "unknown method 7"),
    ("setgpio", {"pin": "23", "value": 1}, "unknown method 'setgpio'"),
    ("setGpio", None, "params must be an object"),
    ("setGpio", [23, 1], "params must be an object"),
    ("setGpio", "23=1", "params must be an object"),
    ("setGpio", {"value": 1}, "missing 'pin'"),
    ("setGpio", {"pin": "99", "value": 1}, "pin '99' is not allowed"),
    ("setGpio", {"pin": 99, "value": 1}, "pin '99' is not allowed"),
    ("setGpio", {"pin": "LED", "value": 1}, "pin 'LED' is not allowed"),  # a pin id, not a name
    ("setGpio", {"pin": " 23", "value": 1}, "pin ' 23' is not allowed"),
    ("setGpio", {"pin": True, "value": 1}, "'pin' must be a string or an integer"),
    ("setGpio", {"pin": 23.0, "value": 1}, "'pin' must be a string or an integer"),
    ("setGpio", {"pin": [23], "value": 1}, "'pin' must be a string or an integer"),
    ("setGpio", {"pin": None, "value": 1}, "'pin' must be a string or an integer"),
    ("setGpio", {"pin": "23"}, "missing 'value'"),
    ("setGpio", {"pin": "23", "value": 2}, "'value' must be 0, 1, true or false"),
    ("setGpio", {"pin": "23", "value": "1"}, "'value' must be 0, 1, true or false"),
    ("setGpio", {"pin": "23", "value": None}, "'value' must be 0, 1, true or false"),
    ("setGpio", {"pin": "23", "value": 1.0}, "'value' must be 0, 1, true or false"),
    ("setGpio", {"pin": "23", "value": -1}, "'value' must be 0, 1, true or false"),
    ("getGpio", {"pin": "24"}, "pin '24' is not allowed"),
    ("getGpio", 23, "params must be an object"),
    ("getGpio", {}, "missing 'pin'"),
    ("setGpioStatus", {"pin": 23}, "missing 'enabled'"),
    ("setGpioStatus", {"pin": 23, "enabled": "yes"}, "'enabled' must be 0, 1, true or false"),
    ("setGpioStatus", {"pin": 2, "enabled": True}, "pin '2' is not allowed"),
    ("setGpioStatus", {"pin": "x" * 100, "enabled": True}, "pin '" + "x" * 36 + "... is not allowed"),
])
def test_bad_input_gets_an_error_reply_and_touches_no_pin(mp, method, params, says):
    results, writes = run(mp, f"""
out(d.handle({method!r}, {params!r}))
import machine
out(machine._levels)
""")
    assert results[0] == {"error": says}
    assert results[1] == {}  # the fake machine saw no level set on any pin
    assert writes == []


def test_a_pin_the_port_refuses_is_an_error_reply(mp):
    results, writes = run(mp, """
out(d.handle("setGpio", {"pin": "bad", "value": 1}))
out(d.handle("getGpio", {"pin": "bad"}))
out(d.handle("setGpio", {"pin": "ok", "value": 1}))
""", pins={"bad": 99, "ok": "GP15"})
    assert results == [{"error": "pin 'bad': invalid pin"}, {"error": "pin 'bad': invalid pin"},
                       {"pin": "ok", "value": 1}]
    assert writes == [{"pin": "GP15", "value": 1}]


def test_application_methods_are_registered_and_their_failures_reported(mp):
    results, writes = run(mp, """
def add(params):
    if not isinstance(params, dict) or "a" not in params:
        raise ValueError("need a")
    return {"sum": params["a"] + params.get("b", 0)}
d.register("add", add)
d.register("nothing", lambda params: None)
d.register("crash", lambda params: 1 // 0)
out(d.handle("add", {"a": 2, "b": 3}))
out(d.handle("add", []))
out(d.handle("nothing", None))
out(d.handle("crash", {}))
out(d.handle("setGpio", {"pin": "23", "value": 1}))
""")
    assert results == [{"sum": 5}, {"error": "add: need a"}, {},
                       {"error": "crash failed: ZeroDivisionError divide by zero"},
                       {"pin": "23", "value": 1}]
    assert writes == [{"pin": 23, "value": 1}]


def test_names_lists_the_allowlist(mp):
    results, _ = run(mp, "out(d.names())")
    assert results == [["23", "5", "led"]]
