"""The hardware fakes (machine.py, network.py in iotlink_tools/vboard/fakes/) keep the contracts the
host relies on."""

import json
import time

import pytest

from iotlink_tools.vboard import DEEPSLEEP_STATUS, Board, radio_on_ms, read_radio_log


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


@pytest.mark.parametrize("call", ["machine.reset()", "machine.soft_reset()"])
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
from iotlink import clock, net, net_once
from iotlink.rpc import Dispatcher
ip = net_once.connect({{"ssid": "lab", "password": "pw", "country": "DE", "hostname": "board-1"}})
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


def test_deepsleep_ends_the_process_with_its_own_status_and_leaves_its_time_for_the_host(mp):
    run = mp("import machine\nprint('before')\nmachine.deepsleep(1500)\nprint('after')", check=False)
    assert run.returncode == DEEPSLEEP_STATUS and "after" not in run.stdout
    assert (mp.flash / ".deepsleep").read_text() == "1500"
    assert "machine: deep sleep for 1500 ms" in run.stdout
    run = mp("import machine\nmachine.deepsleep()", check=False)
    assert run.returncode == DEEPSLEEP_STATUS and (mp.flash / ".deepsleep").read_text() == ""


def test_rtc_memory_and_time_outlive_the_process_as_a_board_keeps_them_until_power_off(mp):
    first = mp("""
import machine, sys
rtc = machine.RTC()
out(["_machine_more" in sys.modules, len(rtc.memory())])
rtc.memory(b"wake 1")
rtc.datetime((2030, 1, 2, 2, 3, 4, 5, 0))
try:
    rtc.memory(bytes(2049))
except ValueError as e:
    out(str(e))
out(rtc.memory() == b"wake 1")
""")
    again = mp("import machine\nrtc = machine.RTC()\nout([rtc.memory().decode(), list(rtc.datetime()[:6])])")
    assert first.results == [[False, 0], "buffer too long", True]
    assert again.result[0] == "wake 1"
    assert again.result[1][:5] == [2030, 1, 2, 2, 3]  # still running: seconds (or minutes) on


def test_the_radio_log_has_each_change_of_the_radio(mp):
    log = mp.flash / "radio.jsonl"
    mp("""
import network
w = network.WLAN(network.STA_IF)
w.active(True)
w.active(True)
w.connect("lab", "pw")
w.disconnect()
w.active(False)
w.active(False)
""", env={"IOTLINK_RADIO_LOG": str(log)})
    events = read_radio_log(log)
    assert [e["event"] for e in events] == ["up", "connect", "disconnect", "down"]
    times = [e["t"] for e in events]
    assert times == sorted(times) and abs(times[0] - time.time() * 1000) < 60000
    assert radio_on_ms(events) == times[-1] - times[0]


def test_radio_on_time_runs_from_up_to_down_or_a_reset_within_the_window():
    events = [{"t": 100, "event": "up"}, {"t": 150, "event": "connect"}, {"t": 300, "event": "down"},
              {"t": 400, "event": "up"}, {"t": 450, "event": "reset"}, {"t": 500, "event": "reset"},
              {"t": 900, "event": "up"}]
    assert radio_on_ms(events) == 200 + 50
    assert radio_on_ms(events, end_ms=1000) == 200 + 50 + 100  # still on at the end of the window
    assert radio_on_ms(events, start_ms=200, end_ms=420) == 100 + 20
    assert radio_on_ms([]) == 0


SLEEPER = """
import machine
rtc = machine.RTC()
n = len(rtc.memory())
print("cause %d, memory %d" % (machine.reset_cause(), n))
if n < 3:
    rtc.memory(b"x" * (n + 1))
    machine.deepsleep(2000 * (n + 1))
"""


def test_a_virtual_board_sleeps_scaled_and_wakes_with_the_deep_sleep_cause_and_its_rtc(tmp_path):
    folder = tmp_path / "board"
    folder.mkdir()
    (folder / "main.py").write_text(SLEEPER)
    (folder / ".rtc_memory").write_bytes(b"from a board that lost power since")
    board = Board(folder, time_scale=0.01).start()
    assert board.wait(20) == 0  # main.py ended after its third sleep
    assert board.sleeps == [2000, 4000, 6000] and board.boots == 4
    lines = [line for line in board.console().splitlines() if line.startswith(("cause", "## deep"))]
    assert lines == ["cause 1, memory 0", "## deep sleep 2000 ms", "cause 4, memory 1", "## deep sleep 4000 ms",
                     "cause 4, memory 2", "## deep sleep 6000 ms", "cause 4, memory 3"]
    assert [e["event"] for e in board.radio_events()] == ["reset"] * 4
    assert not (folder / ".deepsleep").exists()


def test_a_deep_sleep_without_a_time_stops_a_virtual_board(tmp_path):
    folder = tmp_path / "board"
    folder.mkdir()
    (folder / "main.py").write_text("import machine\nmachine.deepsleep()\n")
    board = Board(folder).start()
    assert board.wait(10) == DEEPSLEEP_STATUS
    assert board.sleeps == [None] and "## deep sleep with no time to wake up: stopped" in board.console()
