"""Deep-sleep mode (app_sleep.py), one wake at a time: the real app.run() in micropython, each run
ending in machine.deepsleep() (the fake's exit status 76), the next run started as the board
would wake (machine.reset_cause() from $IOTLINK_RESET_CAUSE). What crossed the wire, the radio
log, the sleeps asked for and the files left on the flash tell what each wake did."""

from __future__ import annotations

import json
import re

import pytest
from support import TOKEN, records, telemetry

from iotlink_lab.faultproxy import FaultProxy
from iotlink_tools.vboard import DEEPSLEEP_STATUS, read_radio_log
from iotlink_tools.vboard.sensors import numbered_sensors

PWRON_RESET, WDT_RESET, DEEPSLEEP_RESET = 1, 3, 4
RUN = "from iotlink.app import run\nrun()\n"
# A Pico W's machine.RTC: no memory(), and a time that starts again at every reset (here: the
# host clock, set or not; the test moves the state's clock instead).
PICO_RTC = """
import machine
class RTC:
    def datetime(self, datetimetuple=None):
        return (2021, 1, 1, 4, 0, 0, 0, 0)
machine.RTC = RTC
"""
# What the board holds open when it falls asleep: the process's file descriptors (Linux).
OPEN_AT_SLEEP = """
import machine, os
_deepsleep = machine.deepsleep
def deepsleep(time_ms=None):
    print("open at sleep: %s" % " ".join(sorted(os.listdir("/proc/self/fd"))))
    _deepsleep(time_ms)
machine.deepsleep = deepsleep
"""
TEMPERATURE = """
def read():
    with open("temperature") as f:
        return {"temperature": float(f.read())}
"""


class Wakes:
    """Runs the firmware's wakes in one flash folder, as a board between deep sleeps."""

    def __init__(self, mp, url, sensors=numbered_sensors(keys=1), **sleep):
        self.mp = mp
        self.radio_log = mp.flash / "radio.jsonl"
        cfg = {"server": url, "token": TOKEN, "interval_s": 60, "pins": {"23": 23},
               "wifi": {"ssid": "lab", "password": "pw"}, "sleep": {"mode": "deep", **sleep}}
        (mp.flash / "config.json").write_text(json.dumps(cfg))
        (mp.flash / "sensors.py").write_text(sensors)

    def wake(self, cause=DEEPSLEEP_RESET, prelude=""):
        """One wake: (its console, the ms of the deep sleep it ended in, the radio's events)."""
        before = len(read_radio_log(self.radio_log))
        run = self.mp(prelude + RUN, check=False, env={"IOTLINK_RESET_CAUSE": str(cause),
                                                       "IOTLINK_RADIO_LOG": str(self.radio_log)})
        assert run.returncode == DEEPSLEEP_STATUS, run.stdout + run.stderr
        events = [e["event"] for e in read_radio_log(self.radio_log)[before:]]
        return run.stdout, int((self.mp.flash / ".deepsleep").read_text()), events

    def state(self):
        return json.loads((self.mp.flash / ".rtc_memory").read_bytes())


def open_at_sleep(out):
    """The descriptors OPEN_AT_SLEEP saw open as the wake fell asleep."""
    return re.search(r"^open at sleep: (.*)$", out, re.M).group(1)


def seqs(server):
    return [r["values"]["s00"] for r in records(telemetry(server))]


def test_a_board_talks_to_the_server_every_send_every_wakes_and_only_then_turns_the_radio_on(mp, server, device):
    wakes = Wakes(mp, server.url, send_every=3)
    out, ms, radio = wakes.wake(PWRON_RESET)
    assert "wake 1: 1 queued, sending" in out and "clock: set" in out
    assert radio == ["up", "connect", "disconnect", "down"]
    assert 50000 < ms <= 60000  # the interval, less the time the wake took
    assert seqs(server) == [1]
    first = wakes.state()
    assert first["wake"] == 1 and first["tried"] == 1 and first["ok"] and first["clock"] is not None
    for n in (2, 3):
        asked = len(server.exchanges)
        out, ms, radio = wakes.wake()
        assert f"wake {n}: {n - 1} queued\n" in out and radio == [] and len(server.exchanges) == asked
        assert 59000 < ms <= 60000
    out, ms, radio = wakes.wake()
    assert "wake 4: 3 queued, sending" in out and "queue: sent 3, 0 left" in out and "clock: set" not in out
    assert radio == ["up", "connect", "disconnect", "down"]
    assert seqs(server) == [1, 2, 3, 4]
    batch = [b for b in telemetry(server) if isinstance(b, list)][-1]
    assert [r["values"]["s00"] for r in batch] == [2, 3, 4]  # one request for the three
    state = wakes.state()
    assert state["boot"] == first["boot"] and state["wake"] == 4 and state["up"] > 4 * 59000
    # Powered on again: a new run of wakes, which talks to the server at once.
    out, _, _ = wakes.wake(PWRON_RESET)
    assert "wake 1: 1 queued, sending" in out and wakes.state()["boot"] != first["boot"]
    assert seqs(server) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("platform", ["thingsboard", "thethings"])
def test_a_wake_that_talked_to_the_server_leaves_no_connection_open_when_it_sleeps(mp, server, device, platform):
    # Deep sleep cuts the radio: the server hears of a closed connection only if the board closes it.
    wakes = Wakes(mp, server.url, send_every=2)
    if platform == "thethings":  # requests on a kept-alive connection, commands on a channel
        cfg = json.loads((mp.flash / "config.json").read_text())
        cfg.update(platform="thethings", token=server.thethings.add_thing()["token"])
        (mp.flash / "config.json").write_text(json.dumps(cfg))
    talked, _, _ = wakes.wake(PWRON_RESET, OPEN_AT_SLEEP)
    quiet, _, _ = wakes.wake(prelude=OPEN_AT_SLEEP)
    assert "wake 1: 1 queued, sending" in talked and "queue: sent 1, 0 left" in talked
    assert "wake 2: 1 queued\n" in quiet
    assert open_at_sleep(talked) == open_at_sleep(quiet)


def test_readings_taken_before_the_clock_was_ever_set_are_placed_by_the_wakes_uptime(mp, server, device):
    with FaultProxy(server.url, rate=1.0, faults=("refuse",)) as proxy:
        wakes = Wakes(mp, proxy.url, send_every=3)
        out, _, _ = wakes.wake(PWRON_RESET)
        assert "wake 1: 1 queued, sending" in out and "1 queued for the next exchange" in out
        assert wakes.state()["clock"] is None and not wakes.state()["ok"]
        wakes.wake()
        wakes.wake()
        proxy.rate = 0
        out, _, _ = wakes.wake()
    assert "queue: sent 4, 0 left" in out
    sent = records(telemetry(server))
    assert [r["values"]["s00"] for r in sent] == [1, 2, 3, 4]
    gaps = [b["ts"] - a["ts"] for a, b in zip(sent, sent[1:])]
    assert all(abs(gap - 60000) < 1000 for gap in gaps), gaps  # an interval apart, as they were read


def test_a_full_queue_or_a_value_outside_its_limits_sends_early_while_the_server_answers(mp, server, device):
    with FaultProxy(server.url, rate=0, faults=("refuse",)) as proxy:
        wakes = Wakes(mp, proxy.url, TEMPERATURE, send_every=10, queue_max=2, limits={"temperature": [0, 40]})
        (mp.flash / "temperature").write_text("21.5")
        assert wakes.wake(PWRON_RESET)[2]  # the first wake talks to the server
        assert wakes.wake()[2] == [] and wakes.wake()[2] == []  # 1, then 2 queued: within queue_max
        out, _, radio = wakes.wake()
        assert "wake 4: 3 queued, sending" in out and radio
        (mp.flash / "temperature").write_text("55")
        out, _, radio = wakes.wake()
        assert "sleep: 'temperature' is outside its limits" in out and "sending" in out and radio
        proxy.rate = 1.0
        assert wakes.wake()[2]  # still too warm: the server is tried, and does not answer
        out, _, radio = wakes.wake()  # the same reading, but the last exchange failed: no radio
        assert "outside its limits" in out and "sending" not in out and radio == []
    assert [r["values"]["temperature"] for r in records(telemetry(server))] == [21.5, 21.5, 21.5, 21.5, 55]


def test_a_pico_w_keeps_the_state_in_a_file_and_counts_the_time_on_across_its_reset(mp, server, device):
    wakes = Wakes(mp, server.url, send_every=1)
    wakes.wake(PWRON_RESET, PICO_RTC)
    assert not (mp.flash / ".rtc_memory").exists()
    state = json.loads((mp.flash / "sleep.json").read_text())
    assert state["wake"] == 1 and state["clock"] is not None
    # Its RTC starts again at a reset: a clock behind the time the board fell asleep is not taken.
    # (The host clock cannot go back: the state's time moves a day ahead instead.)
    state["clock"][1] += 24 * 3600 * 1000
    (mp.flash / "sleep.json").write_text(json.dumps(state))
    out, _, _ = wakes.wake(WDT_RESET, PICO_RTC)  # what rp2 reports after machine.deepsleep()
    assert "wake 2: 1 queued, sending" in out and "clock: set" not in out
    stamp = records(telemetry(server))[-1]["ts"]
    expected = state["clock"][1] + state["sleep"]
    assert expected <= stamp < expected + 5000  # the time it fell asleep, the sleep, this wake


def test_an_interval_longer_than_one_sleep_is_slept_in_pieces_without_readings_between(mp, server, device):
    wakes = Wakes(mp, server.url, send_every=5)
    (mp.flash / "config.json").write_text((mp.flash / "config.json").read_text().replace('"interval_s": 60',
                                                                                         '"interval_s": 9000'))
    out, ms, _ = wakes.wake(PWRON_RESET)
    assert "wake 1:" in out and ms == 3600000
    out, ms, _ = wakes.wake()
    assert "wake" not in out and ms == 3600000
    out, ms, _ = wakes.wake()
    assert "wake" not in out and 1799000 < ms <= 1800000
    out, ms, _ = wakes.wake()
    assert "wake 2: 1 queued\n" in out and ms == 3600000
    assert 9000000 + 3600000 <= wakes.state()["up"] < 9000000 + 3600000 + 5000


@pytest.mark.parametrize("cause", [PWRON_RESET, DEEPSLEEP_RESET])
def test_a_broken_state_starts_a_new_run_of_wakes(mp, server, device, cause):
    wakes = Wakes(mp, server.url, send_every=3)
    (mp.flash / ".rtc_memory").write_bytes(b"\x00\xff not json")
    out, _, _ = wakes.wake(cause)
    assert "wake 1: 1 queued, sending" in out


def test_a_new_app_on_trial_reaches_the_server_at_its_first_wake_so_its_update_is_kept(mp, server, device):
    # boot.py rolls a new app back at the next boot unless it reached the server: its first wake
    # talks to the server, even one that the schedule would have slept through (send_every,
    # the rest of a long interval).
    wakes = Wakes(mp, server.url, send_every=5)
    (mp.flash / "config.json").write_text((mp.flash / "config.json").read_text().replace('"interval_s": 60',
                                                                                         '"interval_s": 9000'))
    wakes.wake(PWRON_RESET)
    assert wakes.state()["rest"] > 0
    (mp.flash / ".ota").mkdir()
    job = {"kind": "sw", "to": ["app", "2"], "phase": "trial", "new": ["main.py"], "old": [], "boots": 1}
    (mp.flash / ".ota" / "state.json").write_text(json.dumps({"job": job}))
    out, ms, radio = wakes.wake()
    assert "wake 2: 1 queued, sending" in out and radio == ["up", "connect", "disconnect", "down"]
    assert ms == 3600000 and seqs(server) == [1, 2]
    journal = json.loads((mp.flash / ".ota" / "state.json").read_text())
    assert "job" not in journal and journal["run"] == {"sw": ["app", "2"]} and not journal.get("report")
    assert {"sw_state": "UPDATED"} in [b["values"] for b in telemetry(server) if isinstance(b, dict)]
    out, _, radio = wakes.wake()  # the update kept: the schedule again
    assert "wake" not in out and radio == []
