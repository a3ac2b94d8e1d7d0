"""`make soak MINUTES=N`: a virtual board behind a faulty network, killed again and again.

The board runs the real firmware against the devserver through the fault proxy (30% of
requests refused, answered with errors, delayed, truncated, corrupted or with the reply lost),
and gets SIGKILL every 30 s (a power cut), then boots again. Its sensors.py numbers every
reading and writes the count to flash first. At the end the faults stop, the board drains its
queue, and the run prints the points produced, delivered, duplicated on the wire and lost, how
many went without a client timestamp, and how many are stored out of order.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path

from iotlink_tools.devserver import DevServer
from iotlink_tools.vboard import Board, prepare_flash
from iotlink_tools.vboard.sensors import numbered_sensors, readings

from .faultproxy import FaultProxy

KEYS = 20  # points per reading: one per key
TOKEN = "SOAK_TOKEN"
def points_on_the_wire(server: DevServer) -> tuple[Counter, int]:
    """(key, seq) -> how many accepted telemetry requests carried it; and how many of those
    points came without a client timestamp (the server stamped them on arrival)."""
    seen: Counter = Counter()
    unstamped = 0
    for exchange in server.requests_to(f"/api/v1/{TOKEN}/telemetry", "POST"):
        if exchange.status != 200:
            continue
        body = exchange.json()
        for item in body if isinstance(body, list) else [body]:
            values = item["values"] if "ts" in item else item
            for key, value in values.items():
                if key.startswith("s") and key[1:].isdigit():
                    seen[(key, value)] += 1
                    unstamped += "ts" not in item
    return seen, unstamped


def inversions(stored: list[tuple[int, str, object]]) -> int:
    """Points whose reading number is lower than the one stored just before them (by time)."""
    last: dict[str, int] = {}
    count = 0
    for _, key, value in stored:
        if key.startswith("s") and key[1:].isdigit():
            count += value < last.get(key, value)
            last[key] = value
    return count


def run(minutes: float, rate: float, seed: int, kill_every_s: float, interval_s: float,
        drain_s: float = 120, log=print) -> dict:
    with tempfile.TemporaryDirectory() as tmp, DevServer() as server:
        server.add_device("soak-board", TOKEN)
        flash = prepare_flash(Path(tmp) / "flash", {
            "server": "", "token": TOKEN, "interval_s": interval_s, "backoff_max_s": 4, "pins": {}})
        (flash / "sensors.py").write_text(numbered_sensors(KEYS))
        with FaultProxy(server.url, rate=rate, seed=seed, max_delay_s=3) as proxy:
            config = json.loads((flash / "config.json").read_text())
            config["server"] = proxy.url
            (flash / "config.json").write_text(json.dumps(config))
            kills = 0
            end = time.monotonic() + minutes * 60
            while time.monotonic() < end:
                board = Board(flash, "soak").start()
                time.sleep(min(kill_every_s, max(end - time.monotonic(), 0)))
                if time.monotonic() < end and board.pid:
                    os.kill(board.pid, signal.SIGKILL)
                    kills += 1
                    board.wait(10)
                    log(f"  {kills} power cuts, {readings(flash)} readings so far")
            log("faults off: draining the queue")
            proxy.rate = 0
            produced = readings(flash) * KEYS
            deadline = time.monotonic() + drain_s
            while len(points_on_the_wire(server)[0]) < produced and time.monotonic() < deadline:
                time.sleep(1)
            board.stop()
            produced = readings(flash) * KEYS
            faults = dict(proxy.stats)
        wire, unstamped = points_on_the_wire(server)
        stored = server.telemetry(TOKEN)
    delivered = len(wire)
    return {"minutes": minutes, "power cuts": kills, "fault rate": rate, "requests by fault": faults,
            "produced": produced, "delivered": delivered,
            "duplicated": sum(n - 1 for n in wire.values()), "lost": produced - delivered,
            "server-stamped": unstamped, "out of order": inversions(stored)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make soak", description=__doc__)
    p.add_argument("--minutes", type=float, default=5)
    p.add_argument("--rate", type=float, default=0.3, help="share of requests that get a fault")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--kill-every", type=float, default=30, help="seconds between power cuts")
    p.add_argument("--interval", type=float, default=0.5, help="the board's interval_s")
    args = p.parse_args(argv)
    result = run(args.minutes, args.rate, args.seed, args.kill_every, args.interval)
    for key, value in result.items():
        print(f"{key:>20}: {value}")
    return 0 if result["lost"] == 0 and result["out of order"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
