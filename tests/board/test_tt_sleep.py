"""Deep-sleep mode on thethings.iO: the real boot.py + main.py with `"platform": "thethings"` on a
virtual board, woken after each machine.deepsleep(), its sleeps scaled down (time_scale), against
the devserver's thethings.iO emulation behind a fault proxy that makes the server unreachable for
a while.

thethings.iO has no persistent RPC: a command is the latest value of a command resource, and each
exchange reads it once. A command written while the board sleeps runs at its next exchange, and,
being a state rather than an event, again at every exchange after it."""

from __future__ import annotations

import json
import re
import time

import pytest
from support import config, flash, sending_wakes, unix_s, wait_until, wake_part, wakes, wakes_with_an_outage

from iotlink_lab.faultproxy import FaultProxy
from iotlink_tools.vboard import Board
from iotlink_tools.vboard.sensors import numbered_sensors, readings

pytestmark = pytest.mark.slow  # the firmware on a virtual board, 30 wakes

INTERVAL_S = 120
# A 120 s sleep takes 1.2 s: readings more than a second apart, as thethings.iO's datetime (whole
# seconds) can tell them apart.
SCALE = 0.01
SEND_EVERY = 3
SEQ = "s00"
CODE = "ACT-SLEEP"


def quiet_after_an_exchange(board, later_than):
    """The number of the wake now running if it comes after wake `later_than` and is the quiet
    one right after an exchange (the next exchange is SEND_EVERY - 1 wakes away), else None."""
    seen = wakes(board)
    if len(seen) >= 2 and seen[-2][1] and not seen[-1][1] and seen[-1][0] > later_than:
        return seen[-1][0]
    return None


def test_a_deep_sleeping_thethings_board_delivers_every_reading_and_follows_commands_and_settings(server, tmp_path):
    token = server.thethings.add_thing(activation_code=CODE)["token"]
    proxy = FaultProxy(server.url, rate=0, faults=("refuse",)).start()
    cfg = config(proxy, platform="thethings", token=None, activation_code=CODE, interval_s=INTERVAL_S,
                 sleep={"mode": "deep", "send_every": SEND_EVERY})
    folder = flash(tmp_path, cfg, numbered_sensors(keys=1))
    board = Board(folder, time_scale=SCALE).start()
    try:
        down_from, down_until = wakes_with_an_outage(folder, proxy, before=7, during=9, timeout=60)

        # Written while the board sleeps, right after an exchange: a command, and a new interval.
        quiet = wait_until(lambda: quiet_after_an_exchange(board, down_until), 60, "a quiet wake after an exchange")
        server.thethings.write(token, {"setGpio": {"pin": "23", "value": 1}})
        server.thethings.write(token, [{"key": "$settings.interval_s", "value": 2 * INTERVAL_S}])
        # Stopped in a quiet wake, so that every exchange it made is whole.
        wait_until(lambda: readings(folder) >= 30 and sum(ms > INTERVAL_S * 1000 for ms in board.sleeps) >= 3
                   and not wakes(board)[-1][1], 90, "thirty wakes, the last ones on the new interval")
    finally:
        board.stop()
        proxy.stop()
    console = board.console()

    # Activated once, at the first wake; the token is in config.json for the wakes after it.
    activations = [e for e in server.exchanges if e.method == "POST" and e.path.rstrip("/") == "/v2/things"]
    assert [(e.status, e.json()) for e in activations] == [(201, {"activationCode": CODE})]
    assert json.loads((folder / "config.json").read_text()) == {**cfg, "token": token}

    # Every reading arrives once, in order, with the time it was taken: the ones taken while the
    # server was away too.
    writes = [e.json()["values"] for e in server.requests_to(f"/v2/things/{token}", "POST") if e.status == 201]
    sent = [(v["value"], v["datetime"]) for values in writes for v in values if v["key"] == SEQ]
    seq = [n for n, _ in sent]
    assert seq == list(range(1, len(seq) + 1)), console
    taken = readings(folder)
    assert taken >= 30 and taken - len(seq) < SEND_EVERY  # the rest still queued for the next exchange
    stamps = [unix_s(stamp) for _, stamp in sent]
    assert stamps == sorted(set(stamps)) and abs(stamps[-1] - time.time()) < 60
    assert [v["value"] for v in reversed(server.thethings.values(token, SEQ))] == seq  # newest first

    # Wi-Fi only on the wakes that talk to the server: every send_every wakes, tried in the outage too.
    talked = sending_wakes(board)
    assert talked[0] == 1 and all(b - a == SEND_EVERY for a, b in zip(talked, talked[1:]))
    failed = [n for n in talked if re.search(r"^sleep: \w+ .*; \d+ queued for the next exchange$",
                                             wake_part(console, n), re.M)]
    assert failed and all(down_from <= n <= down_until for n in failed)
    assert console.count("wifi: connecting") == len(talked)
    assert len([e for e in board.radio_events() if e["event"] == "up"]) == len(talked)

    # The command runs at the first exchange after it was written, and at every exchange after
    # that: each one reads the latest value of each command resource.
    later = [n for n in talked if n > quiet]
    assert len(later) >= 3
    assert all("rpc 1 setGpio pin=23 value=1 -> ok" in wake_part(console, n) for n in later)
    assert "setGpio" not in console.split(f"wake {later[0]}: ")[0]
    assert board.pin_writes() == [{"pin": 23, "value": 1}] * len(later)
    assert [v["value"] for v in server.thethings.values(token, "setGpio.result")] == \
        [{"pin": "23", "value": 1}] * len(later)

    # The interval from $settings: read at that exchange, kept by the wakes after it.
    assert f"interval: {2 * INTERVAL_S} s" in wake_part(console, later[0])
    changed = next(i for i, ms in enumerate(board.sleeps) if ms > INTERVAL_S * 1000)
    assert changed == later[0] - 1  # the sleep that follows that wake
    assert all(INTERVAL_S * 1000 * 0.5 < ms <= INTERVAL_S * 1000 for ms in board.sleeps[:changed])
    assert all(INTERVAL_S * 1000 < ms <= 2 * INTERVAL_S * 1000 for ms in board.sleeps[changed:])
    assert "## reboot" not in console
