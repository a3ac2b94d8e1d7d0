"""OTA bench: a 1 MiB package updates a virtual board running in a 68 KiB MicroPython heap.

The board's flash gets the real firmware (main.py, lib/iotlink as .mpy: at 68 KiB, compiling
the .py sources alone would take most of the heap; the bytecode of the modules an update uses,
~30 KiB, is counted in the heap, where a board with iotlink frozen would keep it in flash); the
package is the app bundle (`iotlink bundle --mpy`) plus a data file that brings it to 1 MiB. Boot 1 downloads it in chunks,
verifies and journals it, then resets; boot 2's boot.py swaps it in, the new app reports UPDATED. Figures:
download throughput, and the live heap (gc.collect() then gc.mem_alloc()) sampled after each
chunk, against the heap in use before the update started.

    python -m iotlink_lab.bench_ota [--server URL] [--size BYTES] [--heapsize 68k]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
from contextlib import ExitStack
from pathlib import Path

from iotlink_tools.commands.bundle import app_files, build, publish
from iotlink_tools.firmware import compile_library
from iotlink_tools.devserver import DevServer
from iotlink_tools.rest import ThingsBoardREST
from iotlink_tools.vboard import REBOOT_STATUS, board_env, micropython_command, prepare_flash

TOKEN = "OTA_BENCH_TOKEN"

BOARD = """
import gc, json, sys, time
import machine
import boot
boot.resume()
del boot, sys.modules["boot"]  # as on a board, boot.py is gone from the heap before the app runs
from iotlink import ota, ota_swap
from iotlink.thingsboard import ThingsBoard
up = ota.Updater(ThingsBoard(URL, TOKEN, timeout=10), chunk_size=CHUNK)
gc.collect()
figures = {"heap_before": gc.mem_alloc(), "heap_peak": 0, "chunks": 0}
t0 = time.ticks_ms()

def sample(step):
    gc.collect()
    figures["heap_peak"] = max(figures["heap_peak"], gc.mem_alloc())
    if step.startswith("chunk"):
        figures["chunks"] += 1
        figures["download_ms"] = time.ticks_diff(time.ticks_ms(), t0)
    elif step == "reset":
        figures["apply_ms"] = time.ticks_diff(time.ticks_ms(), t0) - figures["download_ms"]
        print("@@" + json.dumps(figures))

ota_swap.hook = sample
if up.report_boot():
    up.check(ThingsBoard(URL, TOKEN).request_attributes(shared_keys=up.KEYS)["shared"])
print("@@" + json.dumps({"idle": True}))
"""


# On a board `machine` is built in and takes no heap; vboard/fakes/machine.py would take ~10 KiB
# of the 68 here. The bench's board gets this stand-in: reset() is all an update calls.
MACHINE = """import sys
def reset():
    sys.exit(75)
"""


def _rom_machine(folder: Path) -> Path:
    (folder / "machine.py").write_text(MACHINE)
    return folder


def _boot(flash: Path, fakes: Path, url: str, heapsize: str, chunk: int) -> tuple[int, list[dict], str]:
    script = flash / "_bench_ota.py"
    script.write_text(f"URL = {url!r}\nTOKEN = {TOKEN!r}\nCHUNK = {chunk}\n" + BOARD)
    env = board_env(os.devnull, extra={"MICROPYPATH": f"{fakes}:lib:.frozen"})
    proc = subprocess.run(micropython_command(heapsize) + [script.name], cwd=flash, env=env,
                          capture_output=True, text=True, timeout=300)
    lines = [json.loads(line[2:]) for line in proc.stdout.splitlines() if line.startswith("@@")]
    return proc.returncode, lines, proc.stdout + proc.stderr


def run(server_url: str | None = None, size: int = 1 << 20, heapsize: str = "68k",
        chunk: int = 4096, algorithm: str = "SHA256") -> dict:
    """Update one virtual board with a `size`-byte package; returns the figures.

    server_url: an iotlink devserver or a ThingsBoard with the devserver's demo tenant (the device
    is made and the package published through the REST API); None starts one for the run.
    """
    with ExitStack() as stack:
        if server_url is None:
            server_url = stack.enter_context(DevServer(port=0)).url
        rest = ThingsBoardREST(server_url, "tenant@thingsboard.org", "tenant")
        name = f"ota-bench-{os.getpid()}"
        if rest.find_device(name) is None:
            rest.create_device(name, token=TOKEN)
        files: dict[str, Path | bytes] = dict(app_files(mpy=True))
        blob = max(size - len(build(files)), 0)
        while True:  # tar pads to 10 KiB records: grow the data file until the package is `size`
            files["assets/blob.bin"] = os.urandom(blob)
            package = build(files)
            if len(package) >= size:
                break
            blob += size - len(package)
        version = f"bench-{os.urandom(4).hex()}"
        publish(rest, package, "iotlink", version, algorithm=algorithm, device=name)

        flash = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ota-bench-")))
        prepare_flash(flash, {"platform": "thingsboard", "server": server_url, "token": TOKEN})
        shutil.rmtree(flash / "lib" / "iotlink")  # as bytecode, as a board short of RAM runs it
        compile_library(flash / "lib")
        fakes = _rom_machine(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ota-bench-"))))
        device_id = rest.find_device(name)["id"]["id"]
        status, first, err = _boot(flash, fakes, server_url, heapsize, chunk)
        if status != REBOOT_STATUS or not first or "download_ms" not in first[-1]:
            reported = rest.latest_telemetry(device_id, ["fw_state", "fw_error"])
            raise RuntimeError(f"the update did not apply (exit {status}, {reported}): {err.strip()[-800:]}")
        status, second, err = _boot(flash, fakes, server_url, heapsize, chunk)
        if status != 0:
            raise RuntimeError(f"the updated board failed (exit {status}): {err.strip()[-500:]}")
        latest = rest.latest_telemetry(device_id, ["fw_state", "current_fw_version"])
        fig = first[-1]
        return {
            "package_bytes": len(package),
            "chunk_bytes": chunk,
            "chunks": fig["chunks"],
            "algorithm": algorithm,
            "heapsize": heapsize,
            "download_s": fig["download_ms"] / 1000,
            "throughput_kib_s": round(len(package) / 1024 / (fig["download_ms"] / 1000), 1),
            "verify_and_journal_s": fig["apply_ms"] / 1000,
            "heap_before_update_bytes": fig["heap_before"],
            "heap_peak_bytes": fig["heap_peak"],
            "heap_update_bytes": fig["heap_peak"] - fig["heap_before"],
            "fw_state": latest["fw_state"][1],
            "updated_to": latest["current_fw_version"][1],
            "expected_version": version,
            "app_swapped": (flash / "assets" / "blob.bin").stat().st_size == len(files["assets/blob.bin"]),
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", help="an iotlink devserver URL (default: start one)")
    p.add_argument("--size", type=int, default=1 << 20, help="package size in bytes (default 1 MiB)")
    p.add_argument("--heapsize", default="68k", help="the board's MicroPython heap (default 68k)")
    p.add_argument("--algorithm", default="SHA256", help="checksum algorithm (default SHA256)")
    args = p.parse_args(argv)
    print(json.dumps(run(args.server, args.size, args.heapsize, algorithm=args.algorithm), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
