"""Radio-on time per reading: the figure that stands for a battery board's energy.

The Wi-Fi radio is the board's big consumer (an ESP32 draws about 100 mA receiving, up to 240 mA
sending, 10 µA in deep sleep), so the time it is on per reading sets how long a battery lasts.
Four ways to send a reading, each on a virtual board whose fake Wi-Fi logs when the radio goes
up and down (network.WLAN.active(True/False)) and takes JOIN_MS to join, as a real network does:

  always-on loop    the firmware's default loop: Wi-Fi stays up, the radio with it;
  deep sleep, N=1   "sleep": {"mode": "deep", "send_every": 1}: every wake joins, exchanges, sleeps;
  deep sleep, N=6   the same, talking to the server every 6th wake;
  naive loop        connect, one `requests.post`, disconnect, sleep: the usual first sketch.

The deep-sleep boards wake at the nominal interval, their sleeps time-scaled (a board waits a
fraction of each); the always-on loop runs at a short interval and its share of radio time is
applied to the nominal one. A deep-sleep wake's exchange does more than the naive post: the
start-up report, the shared attributes and a short poll for waiting RPCs. The first wake after
power-on (which also sets the clock) is left out: a battery board lives on the wakes after it.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from iotlink_tools.devserver import DevServer
from iotlink_tools.vboard import Board, board_env, micropython_command, prepare_flash, radio_on_ms, read_radio_log
from iotlink_tools.vboard.sensors import numbered_sensors, readings

TOKEN = "RADIO_BENCH_TOKEN"
JOIN_MS = 1000  # joining the network (association, DHCP): the fake Wi-Fi's "slow:" script
INTERVAL_S = 300  # the nominal interval: a reading every 5 minutes
LOOP_INTERVAL_S = 2  # the always-on loop's, in this run
SLEEP_S = 0.1  # what a deep-sleep board really waits per sleep here
READINGS = 12  # per case (a multiple of 6)

NAIVE = """
import network, requests, time
wlan = network.WLAN(network.STA_IF)
for i in range({n}):
    wlan.active(True)
    wlan.connect("lab", "pw")
    while not wlan.isconnected():
        time.sleep_ms(100)
    requests.post({url!r} + "/api/v1/" + {token!r} + "/telemetry", json={{"temperature": i}}).close()
    wlan.disconnect()
    wlan.active(False)
    time.sleep_ms(50)
"""


def config(server: DevServer, **changes) -> dict:
    return {"server": server.url, "token": TOKEN, "backoff_max_s": 1, "wifi": {"ssid": "lab", "password": "pw"},
            **changes}


def always_on(server: DevServer, work: Path, n: int) -> dict:
    """The default loop: radio-on time over the run, as a share of it."""
    flash = prepare_flash(work / "always-on", config(server, interval_s=LOOP_INTERVAL_S))
    (flash / "sensors.py").write_text(numbered_sensors(keys=1))
    with Board(flash, wifi=f"slow:{JOIN_MS}") as board:
        deadline = time.monotonic() + n * LOOP_INTERVAL_S * 3 + 30
        while readings(flash) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        end = time.time_ns() // 1_000_000
    events = board.radio_events()
    start = events[0]["t"]
    on = radio_on_ms(events, start, end)
    share = on / (end - start)
    return {"readings": readings(flash), "radio_on_share": round(share, 3),
            "ms_per_reading": round(share * INTERVAL_S * 1000)}


def deep_sleep(server: DevServer, work: Path, n: int, send_every: int) -> dict:
    """Deep-sleep mode: radio-on time from the end of the first wake to the end of wake n + 1."""
    flash = prepare_flash(work / f"deep-{send_every}", config(
        server, interval_s=INTERVAL_S, sleep={"mode": "deep", "send_every": send_every}))
    (flash / "sensors.py").write_text(numbered_sensors(keys=1))
    with Board(flash, wifi=f"slow:{JOIN_MS}", time_scale=SLEEP_S / INTERVAL_S) as board:
        deadline = time.monotonic() + n * 10 + 30
        while len(board.sleeps) <= n and time.monotonic() < deadline:
            time.sleep(0.05)
    if len(board.sleeps) <= n:
        raise RuntimeError(f"deep sleep, N={send_every}: {len(board.sleeps)} wakes in time\n{board.console()}")
    events = board.radio_events()
    resets = [e["t"] for e in events if e["event"] == "reset"]  # one as each wake ends
    return {"readings": n, "sending_wakes": n // send_every,
            "ms_per_reading": round(radio_on_ms(events, resets[0], resets[n]) / n)}


def naive(server: DevServer, work: Path, n: int) -> dict:
    """connect, post, disconnect, sleep: radio-on time over its n readings."""
    log = work / "naive.radio.jsonl"
    env = board_env(wifi=f"slow:{JOIN_MS}", radio_log=log)
    env["MICROPYPATH"] = env["MICROPYPATH"].replace(":lib:", ":")
    code = NAIVE.format(n=n, url=server.url, token=TOKEN)
    subprocess.run(micropython_command() + ["-c", code], cwd=work, env=env, check=True, capture_output=True,
                   timeout=n * 10 + 30)
    return {"readings": n, "ms_per_reading": round(radio_on_ms(read_radio_log(log)) / n)}


def run(n: int = READINGS) -> dict:
    with tempfile.TemporaryDirectory() as tmp, DevServer(async_timeout_ms=3000) as server:
        work = Path(tmp)
        server.add_device("radio-bench", TOKEN)
        return {"join_ms": JOIN_MS, "interval_s": INTERVAL_S,
                "always-on loop": always_on(server, work, n // 2),
                "deep sleep, N=1": deep_sleep(server, work, n // 2, 1),
                "deep sleep, N=6": deep_sleep(server, work, n, 6),
                "naive loop": naive(server, work, n // 2)}


CASES = ("always-on loop", "deep sleep, N=1", "deep sleep, N=6", "naive loop")


def report(figures: dict) -> str:
    naive_ms = figures["naive loop"]["ms_per_reading"]
    loop_ms = figures["always-on loop"]["ms_per_reading"]
    lines = [f"Radio-on time per reading (a reading every {figures['interval_s']} s, Wi-Fi joining in "
             f"{figures['join_ms']} ms)",
             f"  {'':20s} {'ms/reading':>11s} {'x naive':>8s} {'always-on / this':>17s}"]
    for name in CASES:
        ms = figures[name]["ms_per_reading"]
        lines.append(f"  {name:20s} {ms:11d} {ms / naive_ms:8.2f} {loop_ms / ms:17.0f}")
    share = figures["always-on loop"]["radio_on_share"]
    lines.append(f"  (the always-on loop had its radio on {share:.0%} of the time)")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(run()))
