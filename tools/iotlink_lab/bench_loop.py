"""The smallest heap in which the whole device loop runs 1,000 iterations, from .mpy.

An iteration is one telemetry record delivered while the host keeps the board busy with RPCs
(setGpio/getGpio, answered between sends), changes a shared attribute now and then, and the
flash queue carries every record. The firmware runs as a board would get it from
`iotlink deploy` (the hardware fakes compiled too, as a board's machine and network are
built in). Heap sizes are bisected between a floor that fails and a ceiling that works.

The fakes take heap that a board's built-in machine and network do not: the same run measures
that share too, and `make bench` shows every footprint figure both as measured and less it.
"""

from __future__ import annotations

import functools
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

from iotlink_tools.devserver import DevServer
from iotlink_tools.firmware import compile_library
from iotlink_tools.vboard import Board, compiled_fakes, micropython_command, prepare_flash

TOKEN = "LOOP_BENCH_TOKEN"
ITERATIONS = 1000
# What app.report_boot says when the OTA code does not fit: the loop goes on, updates are off.
UPDATES_OFF = "ota: not enough free memory"
STALLED_S = 30  # no record delivered for this long: the run failed (a run takes about 30 s)

# What a loop makes of the fakes: the modules imported, the Wi-Fi station interface (net.py).
FAKES_PROGRAM = """
import gc
gc.collect()
before = gc.mem_alloc()
import {modules}
network.WLAN(network.STA_IF)
gc.collect()
print(gc.mem_alloc() - before)
"""


def fakes_heap_bytes(fakes: Path, modules: tuple[str, ...] = ("machine", "network")) -> int:
    """Heap the compiled hardware fakes a loop imports take (in the firmware on a real board)."""
    program = FAKES_PROGRAM.format(modules=", ".join(modules))
    proc = subprocess.run(micropython_command() + ["-c", program], env={"MICROPYPATH": str(fakes)},
                          capture_output=True, text=True, timeout=60, check=True)
    return int(proc.stdout.split()[-1])


def fakes_env(work: Path) -> dict[str, str]:
    """A bench board's MICROPYPATH: the compiled fakes, the flash's lib, the port's frozen modules."""
    return {"MICROPYPATH": f"{compiled_fakes(work / 'fakes')}:lib:.frozen"}


def mpy_board(flash: Path, heap_kb: int, work: Path) -> Board:
    """The firmware as `iotlink deploy` leaves it: the library as .mpy files on the flash."""
    lib = flash / "lib"
    for f in (lib / "iotlink").glob("*.py"):
        f.unlink()
    compile_library(lib)
    return Board(flash, "loop", heapsize=f"{heap_kb}K", env=fakes_env(work))


# (flash with the firmware installed, heap in KiB, work folder) -> the board, not yet started.
MakeBoard = Callable[[Path, int, Path], Board]


def loop_runs(heap_kb: int, work: Path, iterations: int = ITERATIONS, timeout_s: float = 120,
              make_board: MakeBoard = mpy_board, updates: bool = False) -> bool:
    """Whether the loop delivers `iterations` records in a heap of heap_kb without a crash
    (updates: and the OTA code fitted, so the board still takes updates)."""
    with DevServer(async_timeout_ms=3000) as server:
        server.add_device("loop-bench", TOKEN)
        # A folder of its own: a second run at this size must not find the first one's queue.
        flash = prepare_flash(tempfile.mkdtemp(prefix=f"flash-{heap_kb}-", dir=work), {
            "server": server.url, "token": TOKEN, "interval_s": 0.02, "backoff_max_s": 1,
            "pins": {"23": 23, "led": "LED"}})
        board = make_board(flash, heap_kb, work).start()
        try:
            deadline = time.monotonic() + timeout_s
            n = delivered = 0
            progress = time.monotonic()
            # boots is 0 until the supervisor thread has started the process: not a reboot.
            while time.monotonic() < deadline and board.running and board.boots <= 1:
                count = len(server.telemetry(TOKEN, "uptime_s"))
                if count > delivered:
                    delivered, progress = count, time.monotonic()
                elif time.monotonic() - progress > STALLED_S:
                    return False  # alive, but out of memory at every try
                if delivered >= iterations:
                    return board.boots == 1 and not (updates and UPDATES_OFF in board.console())
                n += 1
                try:
                    server.call_rpc(TOKEN, "setGpio" if n % 2 else "getGpio", {"pin": "23", "value": n % 2},
                                    timeout_s=5)
                except TimeoutError:
                    pass
                if n % 50 == 0:
                    server.set_shared_attributes(TOKEN, {"interval_s": 0.02 + (n % 100) / 10000})
            return False
        finally:
            board.stop()


def smallest_heap_kb(work: Path, low: int = 16, high: int = 256, step: int = 1,
                     make_board: MakeBoard = mpy_board, updates: bool = False) -> int | None:
    """Bisect (in `step` KiB) for the smallest heap the loop runs in; None if not even `high`.

    Near the limit a run can pass or fail by where its allocations happened to fall (RPCs and
    sends interleave by timing), so the size found runs once more; if that run fails, the
    figure is the next size up that passes.
    """
    return bisect_heap_kb(functools.partial(loop_runs, work=work, make_board=make_board, updates=updates),
                          low, high, step)


def bisect_heap_kb(runs: Callable[[int], bool], low: int, high: int, step: int) -> int | None:
    """The smallest heap (KiB, a multiple of step) in which runs(heap_kb) is true; None if not
    even high. Any loop's bench bisects with this, so its figures compare with this loop's."""
    ceiling = high
    if not runs(high):
        return None
    while high - low > step:
        mid = (low + high) // 2 // step * step
        if runs(mid):
            high = mid
        else:
            low = mid
    while high < ceiling and not runs(high):
        high += step
    return high


# A sensors.py that reports the interned names once the loop has run a while (it adds three).
QSTR_PROBE = """
import micropython
_reads = [0]
def read():
    _reads[0] += 1
    if _reads[0] == 200:
        micropython.qstr_info()
    return {}
"""


def interned_names(work: Path) -> dict:
    """The qstrs the running loop has interned, and the pools they take. The pools grow by
    doubling and are never freed: a loop that crosses the last pool's capacity pays a whole
    new pool at once (7 KB here for the 6th)."""
    boards = []

    def probed_board(flash: Path, heap_kb: int, work: Path) -> Board:
        (flash / "sensors.py").write_text(QSTR_PROBE)
        boards.append(mpy_board(flash, heap_kb, work))
        return boards[-1]

    loop_runs(256, work, iterations=300, make_board=probed_board)
    found = re.search(r"n_pool=(\d+), n_qstr=(\d+), n_str_data_bytes=\d+, n_total_bytes=(\d+)", boards[-1].console())
    if found is None:
        return {"qstrs": None, "qstr_pools": None, "qstr_bytes": None}
    return {"qstrs": int(found[2]), "qstr_pools": int(found[1]), "qstr_bytes": int(found[3])}


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        smallest = smallest_heap_kb(work)
        return {"smallest_heap_kib": smallest,
                # Below this the OTA report gives up for want of memory and updates stay off.
                "with_updates_kib": smallest and smallest_heap_kb(work, low=smallest - 1, updates=True),
                "fakes_heap_bytes": fakes_heap_bytes(compiled_fakes(work / "fakes")),
                **interned_names(work)}


def describe(figures: dict) -> str:
    return (f"the loop runs {ITERATIONS} iterations in {figures['smallest_heap_kib']} KiB (from .mpy), "
            f"{figures['with_updates_kib']} KiB with room for the OTA code (updates on), "
            f"of which the hardware fakes (machine, network: built into a board's firmware) take "
            f"{figures['fakes_heap_bytes']} bytes; the running loop has interned {figures['qstrs']} names "
            f"in {figures['qstr_pools']} qstr pools ({figures['qstr_bytes']} bytes)")


if __name__ == "__main__":
    print(describe(run()))
