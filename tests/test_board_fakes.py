"""The hardware fakes (tests/fakes/machine.py, network.py) keep the contracts the host relies on."""

import json

import pytest


def pin_log(mp):
    log = mp.flash / "pins.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def run_pins(mp, code):
    return mp("import machine\nfrom machine import Pin\n" + code,
              env={"IOTLINK_PIN_LOG": str(mp.flash / "pins.jsonl")})


def test_pin_writes_are_logged_and_inputs_read_the_last_write(mp):
    run = run_pins(mp, """
led = Pin("LED", Pin.OUT)
led.on()
led(0)
led.toggle()
led.high()
p = Pin(23, Pin.OUT, value=1)
p.value(False)
p.low()
out([led.value(), led(), p.value()])
out([Pin(23, Pin.IN).value(), Pin("LED", Pin.IN).value(), Pin(4, Pin.IN).value(),
     Pin(4, Pin.IN, Pin.PULL_UP).value()])
q = Pin(5, Pin.IN)
q.value(1)  # kept in the output register: an input drives nothing
q.init(Pin.OUT)
s = machine.Signal(Pin(18, Pin.OUT), invert=True)
s.on()
out([s.value(), Pin(18, Pin.IN).value()])
out(p.irq(lambda pin: None, Pin.IRQ_RISING) is p)
""")
    assert run.results == [[1, 1, 0], [0, 1, 0, 1], [1, 0], True]
    assert pin_log(mp) == [
        {"pin": "LED", "value": 0}, {"pin": "LED", "value": 1}, {"pin": "LED", "value": 0},
        {"pin": "LED", "value": 1}, {"pin": "LED", "value": 1},
        {"pin": 23, "value": 1}, {"pin": 23, "value": 0}, {"pin": 23, "value": 0},
        {"pin": 5, "value": 1}, {"pin": 18, "value": 0}, {"pin": 18, "value": 0},
    ]


@pytest.mark.parametrize("pin_id", [-1, 49, "LED2", "GP30", "D4", 2.0, None, True])
def test_invalid_pin_ids_raise_value_error(mp, pin_id):
    run = run_pins(mp, f"""
try:
    Pin({pin_id!r}, Pin.OUT)
    out("accepted")
except ValueError as e:
    out(str(e))
""")
    assert run.result == "invalid pin"
    assert pin_log(mp) == []


@pytest.mark.parametrize("call", ["machine.reset()", "machine.soft_reset()", "machine.deepsleep(10)"])
def test_resets_end_the_process_with_the_reboot_status(mp, call):
    run = mp(f"import machine\nprint('before')\n{call}\nprint('after')", check=False)
    assert run.returncode == 75
    assert "before" in run.stdout and "after" not in run.stdout


def test_bootloader_leaves_the_application_without_a_reboot(mp):
    run = mp("import machine\nmachine.bootloader()\nprint('after')", check=False)
    assert run.returncode == 0 and "after" not in run.stdout


def test_a_fed_watchdog_keeps_the_board_and_a_starved_one_resets_it(mp):
    run = mp("""
import machine, time
wdt = machine.WDT(timeout=300)
for _ in range(6):
    time.sleep_ms(100)
    wdt.feed()
out("fed")
time.sleep_ms(400)   # a hang: nothing calls machine
machine.Pin(2, machine.Pin.IN)  # the first call after it: the watchdog has fired
out("survived")
""", check=False)
    assert run.returncode == 75
    assert run.results == ["fed"]
    assert "machine: WDT not fed for 300 ms: reset" in run.stdout


def test_board_identity_clock_and_reset_cause(mp):
    code = """
import machine
out([len(machine.unique_id()), list(machine.unique_id()), machine.freq(), machine.reset_cause()])
rtc = machine.RTC()
rtc.datetime((2030, 1, 2, 2, 3, 4, 5, 0))
out(list(rtc.datetime()[:7]))
"""
    first = mp(code).results
    again = mp(code, env={"IOTLINK_RESET_CAUSE": "3"}).results
    assert first[0][0] == 6 and first[0][2] == 160000000 and first[0][3] == 1
    assert again[0][1] == first[0][1]  # stable for one flash folder
    assert again[0][3] == 3  # WDT_RESET
    assert first[1][:6] == [2030, 1, 2, 2, 3, 4]


def test_network_needs_an_active_interface_and_answers_like_a_port(mp):
    run = mp("""
import network
w = network.WLAN(network.WLAN.IF_STA)
try:
    w.connect("lab", "pw")
except OSError as e:
    out(str(e))
w.active(True)
out([w.status() == network.STAT_IDLE, w.isconnected(), w.ifconfig()[0]])
w.connect("lab", "pw")
out([w.status() == network.STAT_GOT_IP, w.status("rssi"), w.config("ssid"), len(w.scan())])
w.config(pm=w.PM_NONE, txpower=8)
out([w.config("pm"), w.config("txpower"), w.ipconfig("addr4")[0]])
try:
    w.config("nonsense")
except ValueError as e:
    out("ValueError")
w.disconnect()
out(w.isconnected())
""")
    assert run.results == ["Wifi Not Started", [True, False, "0.0.0.0"], [True, -55, "lab", 1],
                           [0, 8, "10.0.0.2"], "ValueError", False]
