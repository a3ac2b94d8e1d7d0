"""Deep-sleep mode on a virtual board against the devserver: the real boot.py + main.py, woken by
the board after each machine.deepsleep(), its sleeps scaled down (time_scale) so that an hour of
wakes takes seconds. The server goes away behind a fault proxy for a while; commands wait on the
server as ThingsBoard's persistent RPC until the board's next exchange."""

from __future__ import annotations

import re

import pytest
from support import (TENANT, call, config, flash, records, sending_wakes, telemetry, wait_until, wake_part, wakes,
                     wakes_with_an_outage)

from iotlink_lab.faultproxy import FaultProxy
from iotlink_tools.vboard import Board
from iotlink_tools.vboard.sensors import numbered_sensors, readings

pytestmark = pytest.mark.slow  # the firmware on a virtual board, 60 wakes

INTERVAL_S = 10
SCALE = 0.01  # a 10 s sleep takes 0.1 s
SEND_EVERY = 3
SEQ = "s00"


def rpc_status(server, jwt, rpc_id):
    status, reply = call(server, "GET", f"/api/rpc/persistent/{rpc_id}", token=jwt)
    assert status == 200, reply
    return reply


def test_a_deep_sleeping_board_delivers_every_reading_and_gets_commands_and_settings(server, device, tmp_path):
    jwt = call(server, "POST", "/api/auth/login", TENANT)[1]["token"]
    proxy = FaultProxy(server.url, rate=0, faults=("refuse",)).start()
    folder = flash(tmp_path, config(proxy, interval_s=INTERVAL_S, sleep={"mode": "deep", "send_every": SEND_EVERY}),
                   numbered_sensors(keys=1))
    board = Board(folder, time_scale=SCALE).start()
    try:
        down_from, down_until = wakes_with_an_outage(folder, proxy, before=10, during=20, timeout=30)

        # A command for the sleeping board, sent after a wake that does not talk to the server:
        # queued on the server until the board's next exchange.
        wait_until(lambda: wakes(board)[-1][0] > down_until + 1 and not wakes(board)[-1][1], 30, "a quiet wake")
        quiet = wakes(board)[-1][0]
        status, queued = call(server, "POST", f"/api/rpc/twoway/{device['id']}", token=jwt, body={
            "method": "setGpio", "params": {"pin": "23", "value": 1}, "persistent": True, "timeout": 600000})
        assert status == 200
        wait_until(lambda: rpc_status(server, jwt, queued["rpcId"])["status"] == "SUCCESSFUL", 30, "the RPC answered")

        # A new interval from the server: the sleeps after the next exchange follow it.
        server.set_shared_attributes("test-device", {"interval_s": 3 * INTERVAL_S})
        wait_until(lambda: readings(folder) >= 60 and len(board.sleeps) > 0 and board.sleeps[-1] > 2 * INTERVAL_S * 1000,
                   60, "sixty wakes, the last ones on the new interval")
    finally:
        board.stop()
        proxy.stop()
    console = board.console()

    # Every reading arrives once, in order, stamped: the ones taken while the server was away too.
    sent = records(telemetry(server))
    seq = [r["values"][SEQ] for r in sent]
    assert seq == list(range(1, len(seq) + 1)), console
    taken = readings(folder)
    assert taken >= 60 and taken - len(seq) <= SEND_EVERY  # the rest still queued for the next exchange
    stamps = [r["ts"] for r in sent]
    assert all(isinstance(ts, int) for ts in stamps) and stamps == sorted(set(stamps))
    assert [v for _, _, v in server.telemetry("test-device", SEQ)] == seq  # stored in the order read

    # Wi-Fi only on the wakes that talk to the server: every send_every wakes, tried in the outage too.
    talked = sending_wakes(board)
    assert talked[0] == 1 and all(b - a == SEND_EVERY for a, b in zip(talked, talked[1:]))
    assert any(down_from < n <= down_until for n in talked)  # tried while the server was away
    assert re.search(r"^sleep: \w+ .*; \d+ queued for the next exchange$", console, re.M)
    assert console.count("wifi: connecting") == len(talked)
    ups = [e for e in board.radio_events() if e["event"] == "up"]
    assert len(ups) == len(talked)

    # The command ran at the first exchange after it was queued, and its reply reached the server.
    rpc = rpc_status(server, jwt, queued["rpcId"])
    assert rpc["response"] == {"pin": "23", "value": 1}
    answered_in = [n for n in talked if n > quiet][0]
    assert "rpc 0 setGpio pin=23 value=1 -> ok" in wake_part(console, answered_in)
    assert board.pin_writes() == [{"pin": 23, "value": 1}]

    # The interval: sleeps of the old one (less the wake), then of the new one.
    assert "interval: 30 s" in console
    changed = next(i for i, ms in enumerate(board.sleeps) if ms > INTERVAL_S * 1000)
    assert all(INTERVAL_S * 1000 * 0.5 < ms <= INTERVAL_S * 1000 for ms in board.sleeps[:changed])
    assert all(2 * INTERVAL_S * 1000 < ms <= 3 * INTERVAL_S * 1000 for ms in board.sleeps[changed:]), board.sleeps[changed - 2:]
    assert board.boots - len(board.sleeps) in (0, 1) and "## reboot" not in console
