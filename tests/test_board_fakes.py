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


# 2030-07-01 12:00:00 UTC, mid-year so that any host time zone reads the same year.
JULY_2030_MS = 1909224000000


def test_the_device_loop_never_loads_the_rarely_used_part_of_the_fakes(mp):
    # What lib/iotlink does with machine and network, through the library's own code.
    run = mp(f"""
import sys
import iotlink.app
import machine, network
from iotlink import clock, net
from iotlink.rpc import Dispatcher
ip = net.connect({{"ssid": "lab", "password": "pw", "country": "DE", "hostname": "board-1"}})
d = Dispatcher({{"led": "LED", "5": 5}})
replies = [d.handle("getGpio", {{"pin": "5"}}), d.handle("setGpio", {{"pin": "5", "value": 1}}),
           d.handle("setGpio", {{"pin": "led", "value": True}})]
wdt = machine.WDT(timeout=5000)
wdt.feed()
clock.set_unix_ms({JULY_2030_MS})
led = machine.Pin("LED", machine.Pin.OUT, value=0)
led.on()
led(0)
led.off()
out([ip, network.country(), network.hostname(), net.isconnected(), replies,
     machine.RTC().datetime()[:2], machine.reset_cause()])
out([name for name in ("_machine_more", "_network_more") if name in sys.modules])
""", env={"IOTLINK_PIN_LOG": str(mp.flash / "pins.jsonl")})
    assert run.results[0] == ["10.0.0.2", "DE", "board-1", True,
                              [{"pin": "5", "value": 0}, {"pin": "5", "value": 1}, {"pin": "led", "value": 1}],
                              [2030, 7], 1]
    assert pin_log(mp) == [{"pin": 5, "value": 1}, {"pin": "LED", "value": 1},
                           {"pin": "LED", "value": 0}, {"pin": "LED", "value": 1},
                           {"pin": "LED", "value": 0}, {"pin": "LED", "value": 0}]
    assert run.results[1] == []


def test_what_firmware_has_built_in_and_common_code_uses_stays_resident(mp):
    # make bench subtracts the fakes' resident heap from every footprint row: a common call that
    # loaded the lazy part would cost the loop heap no board pays, and not be subtracted.
    run = mp("""
import sys, machine, network
from machine import Pin, RTC, WDT
wlan = network.WLAN(network.STA_IF)
wlan.active(True)
wlan.connect("lab", "pw")
out([len(machine.unique_id()), machine.reset_cause() == machine.PWRON_RESET,
     machine.reset_cause() in (machine.HARD_RESET, machine.WDT_RESET, machine.DEEPSLEEP_RESET,
                               machine.SOFT_RESET),
     machine.freq(), Pin(2, Pin.OUT).value(), len(RTC().datetime()), wlan.isconnected()])
WDT(timeout=5000).feed()
machine.idle()
machine.lightsleep(1)
out([name for name in ("_machine_more", "_network_more") if name in sys.modules])
""")
    assert run.results == [[6, True, False, 160000000, 0, 8, True], []]


def test_lazily_loaded_pin_methods_keep_their_official_signatures(mp):
    run = run_pins(mp, """
import sys
p = Pin(4, Pin.IN, Pin.PULL_UP)
loaded = "_machine_more" in sys.modules
out([loaded, p.mode() == Pin.IN, p.pull() == Pin.PULL_UP, p.value(), "_machine_more" in sys.modules])
p.mode(Pin.OUT)          # drives what its register holds: 0
p.high()
p.toggle()
p.low()
p.toggle()
p.pull(Pin.PULL_DOWN)
handler = lambda pin: None
out([p.mode() == Pin.OUT, p.pull() == Pin.PULL_DOWN, p.drive() == Pin.DRIVE_0, p.drive(Pin.DRIVE_3),
     p.irq(handler=handler, trigger=Pin.IRQ_LOW_LEVEL | Pin.IRQ_HIGH_LEVEL, priority=1, wake=None,
           hard=True) is p, p._irq == (handler, 12), Pin(7).irq() is not None])
out([hasattr(p, "nonsense"), getattr(p, "__name__", "missing"), hasattr(Pin(5), "toggle")])
""")
    assert run.results == [[False, True, True, 1, True], [True, True, True, None, True, True, True],
                           [False, "missing", True]]
    assert pin_log(mp) == [{"pin": 4, "value": 0}, {"pin": 4, "value": 1}, {"pin": 4, "value": 0},
                           {"pin": 4, "value": 0}, {"pin": 4, "value": 1},
                           {"pin": 4, "value": 1}]  # init(pull=) drives the output again


def test_pin_constructor_takes_init_arguments_as_the_docs_say(mp):
    run = run_pins(mp, """
p = Pin(6, mode=Pin.OUT, pull=-1, value=1, drive=Pin.DRIVE_1, alt=-1)
q = Pin(p, Pin.OPEN_DRAIN, None, value=0)
out([p.value(), q.value(), Pin(6, Pin.IN).value()])
for args, kwargs in (((6, Pin.OUT, -1, 1), {}), ((6,), {"speed": 1}), ((6, 99), {})):
    try:
        Pin(*args, **kwargs)
        out("accepted")
    except (TypeError, ValueError) as e:
        out(type(e).__name__)
""")
    assert run.results == [[1, 0, 0], "TypeError", "TypeError", "ValueError"]
    assert pin_log(mp) == [{"pin": 6, "value": 1}, {"pin": 6, "value": 0}]


def test_lazily_loaded_machine_api_and_constants(mp):
    run = mp("""
import sys, machine
out("_machine_more" in sys.modules)
out([machine.PWRON_RESET, machine.HARD_RESET, machine.WDT_RESET, machine.DEEPSLEEP_RESET,
     machine.SOFT_RESET, machine.IDLE, machine.SLEEP, machine.DEEPSLEEP])
pin = machine.Pin(3, machine.Pin.OUT)
machine.idle()
machine.lightsleep(1)
out([machine.time_pulse_us(pin, 1, 100), machine.disable_irq(), machine.enable_irq(0),
     machine.ADC(machine.Pin(26)).read_u16(), machine.ADC(4).read_uv()])
machine.freq(240000000)
out(machine.freq())
rtc = machine.RTC(id=0)
rtc.init((2031, 2, 3, 0, 4, 5, 6, 0))
out([list(machine.RTC(0).datetime()[:3]), hasattr(machine, "nonsense"), "_machine_more" in sys.modules])
""")
    assert run.results == [False, [1, 2, 3, 4, 5, 0, 2, 4], [-1, 0, None, 14000, 704966], 240000000,
                           [[2031, 2, 3], False, True]]


def test_lazily_loaded_wlan_methods_and_parameters(mp):
    run = mp("""
import sys, network
w = network.WLAN(network.STA_IF)
w.active(True)
w.connect("lab", "pw", bssid=None)
out([w.isconnected(), w.status() == network.STAT_GOT_IP, "_network_more" in sys.modules])
out([network.AUTH_OPEN, network.AUTH_WPA2_PSK, network.STAT_BEACON_TIMEOUT, network.STAT_ASSOC_FAIL,
     network.STAT_HANDSHAKE_TIMEOUT, network.ipconfig("prefer"), hasattr(network, "nonsense")])
w.config(pm=w.PM_POWERSAVE, txpower=5, hostname="lab-board", ssid="ignored")
out([w.config("pm"), w.config("txpower"), w.config("channel"), w.config("reconnects"),
     len(w.config("mac")), w.config("essid"), w.config("hostname"), network.hostname()])
out([w.status("rssi"), w.status("stations"), w.scan()[0][0], w.scan()[0][4] == network.AUTH_WPA2_PSK,
     w.ipconfig("addr4"), w.ipconfig("dhcp4"), hasattr(w, "nonsense")])
for call in (lambda: w.config("nonsense"), lambda: w.config(nonsense=1), lambda: w.status("nonsense"),
             lambda: w.ipconfig("nonsense"), lambda: network.WLAN(5)):
    try:
        call()
        out("accepted")
    except ValueError:
        out("ValueError")
w.disconnect()
try:
    w.status("rssi")
except OSError as e:
    out(str(e))
""")
    assert run.results == [
        [True, True, False],
        [0, 3, 200, 203, 204, 4, False],
        [2, 5, 1, -1, 6, "lab", "lab-board", "lab-board"],
        [-55, [], "lab", True, ["10.0.0.2", "255.255.255.0"], True, False],
        "ValueError", "ValueError", "ValueError", "ValueError", "ValueError",
        "STA is not connected",
    ]
