"""Heap over a long run: the real firmware answering an RPC every second, for N minutes.

The board reports `mem_free` with every telemetry record, measured right after a collection,
so it is the live heap. The figure is the free heap's lowest point in the first and in the
last minute: a leak shows as the second falling below the first.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from iotlink_tools.devserver import DevServer
from iotlink_tools.vboard import Board, prepare_flash

TOKEN = "HEAP_BENCH_TOKEN"


def run(minutes: float = 10, heap_kb: int = 256) -> dict:
    with tempfile.TemporaryDirectory() as tmp, DevServer(async_timeout_ms=3000) as server:
        server.add_device("heap-bench", TOKEN)
        flash = prepare_flash(Path(tmp) / "flash", {
            "server": server.url, "token": TOKEN, "interval_s": 5, "pins": {"23": 23}})
        rpcs = 0
        with Board(flash, "heap", heapsize=f"{heap_kb}K") as board:
            end = time.monotonic() + minutes * 60
            while time.monotonic() < end:
                started = time.monotonic()
                server.call_rpc(TOKEN, "setGpio", {"pin": "23", "value": rpcs % 2}, timeout_s=10)
                rpcs += 1
                time.sleep(max(0.0, 1 - (time.monotonic() - started)))
            boots = board.boots
        points = server.telemetry(TOKEN, "mem_free")
    start_ts = points[0][0]
    first = [v for ts, _, v in points if ts < start_ts + 60_000]
    last = [v for ts, _, v in points if ts >= points[-1][0] - 60_000]
    return {"minutes": minutes, "rpcs": rpcs, "heapsize_kib": heap_kb, "boots": boots,
            "mem_free_min_first_minute": min(first), "mem_free_min_last_minute": min(last),
            "growth_bytes": min(first) - min(last)}


if __name__ == "__main__":
    print(run())
