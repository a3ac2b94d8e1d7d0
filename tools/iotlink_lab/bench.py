"""`make bench`: iotlink measured against the naive way, its peers and the limit, in one run.

Every figure comes from the real `micropython` unix port talking to a local devserver (plain
HTTP and TLS), a local MQTT broker (the peers) or a read-only sink (the limit), so ratios between
rows are meaningful; absolute numbers depend on the machine. `--only PART` runs one part.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

from iotlink_tools import firmware
from iotlink_tools.devserver import DevServer
from iotlink_tools.vboard import FAKES, micropython_command

from . import bench_heap, bench_loop, bench_ota, bench_peer, bench_radio, bench_raw, bench_romfs, bench_wasm
from .tlsutil import make_pki

TOKEN = "BENCH_TOKEN"
BATCH = 50

# Device-side programs. Each prints one JSON line: {"points": n, "ms": elapsed}.
THROUGHPUT = {
    # The loop in the seeds: a `requests.post(json=...)` per reading.
    "naive": """
import requests
url = URL + "/api/v1/" + TOKEN + "/telemetry"
for i in range(N):
    requests.post(url, json={"temperature": i}).close()
""",
    "iotlink": """
from iotlink.thingsboard import ThingsBoard
tb = ThingsBoard(URL, TOKEN)
for i in range(N):
    tb.send_telemetry({"temperature": i})
""",
    "iotlink keep-alive": """
from iotlink.thingsboard import ThingsBoard
tb = ThingsBoard(URL, TOKEN, keepalive=True)
for i in range(N):
    tb.send_telemetry({"temperature": i})
""",
    "iotlink batched": """
from iotlink.thingsboard import ThingsBoard
tb = ThingsBoard(URL, TOKEN)
for start in range(0, N, BATCH):
    tb.send_telemetry([{"ts": T0 + i, "values": {"temperature": i}} for i in range(start, start + BATCH)])
""",
    "iotlink batched keep-alive": """
from iotlink.thingsboard import ThingsBoard
tb = ThingsBoard(URL, TOKEN, keepalive=True)
for start in range(0, N, BATCH):
    tb.send_telemetry([{"ts": T0 + i, "values": {"temperature": i}} for i in range(start, start + BATCH)])
""",
    # The limit for one point per request: pre-built bytes on one kept-alive socket.
    "limit (raw socket, 1 point/request)": """
import socket
from iotlink.http_conn import Connection
c = Connection(URL)
body = b'{"temperature": 1}'
req = (b"POST /api/v1/" + TOKEN.encode() + b"/telemetry HTTP/1.1\\r\\nHost: x\\r\\n"
       b"Content-Type: application/json\\r\\nContent-Length: 18\\r\\n\\r\\n" + body)
s = c._connect(10)
for i in range(N):
    s.write(req)
    while s.readline() != b"\\r\\n":  # the reply is headers only (Content-Length: 0)
        pass
""",
}

PROGRAM = """
import time, json
URL = {url!r}
TOKEN = {token!r}
N = {n}
BATCH = {batch}
T0 = 1700000000000
t = time.ticks_ms()
{body}
print(json.dumps({{"points": N, "ms": time.ticks_diff(time.ticks_ms(), t)}}))
"""

HEAP_PER_SEND = {
    "naive": """
import requests
url = URL + "/api/v1/" + TOKEN + "/telemetry"
def send(i):
    requests.post(url, json={"temperature": i, "humidity": 40}).close()
""",
    "iotlink": """
from iotlink.thingsboard import ThingsBoard
tb = ThingsBoard(URL, TOKEN)
def send(i):
    tb.send_telemetry({"temperature": i, "humidity": 40})
""",
    "iotlink keep-alive": """
from iotlink.thingsboard import ThingsBoard
tb = ThingsBoard(URL, TOKEN, keepalive=True)
def send(i):
    tb.send_telemetry({"temperature": i, "humidity": 40})
""",
}

HEAP_PROGRAM = """
import gc, json
URL = {url!r}
TOKEN = {token!r}
{body}
send(0)  # warm up: first-use allocations (imports, caches, the socket) are not per send
gc.collect()
gc.disable()
before = gc.mem_alloc()
for i in range(20):
    send(i)
after = gc.mem_alloc()
gc.enable()
print(json.dumps({{"bytes_per_send": (after - before) // 20}}))
"""

IMPORT_PROGRAM = """
import gc, json
import machine, network  # built into a board's firmware: not the library's cost
gc.collect()
before = gc.mem_alloc()
import iotlink.thingsboard
gc.collect()
client = gc.mem_alloc() - before
import iotlink.app
gc.collect()
print(json.dumps({"client": client, "loop": gc.mem_alloc() - before}))
"""


def micropython(code: str, cwd: Path, micropypath: str, heapsize: str | None = None) -> dict:
    cmd = micropython_command(heapsize) + ["-c", code]
    proc = subprocess.run(cmd, cwd=cwd, env={"MICROPYPATH": micropypath}, capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"bench program failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def throughput(url: str, work: Path, n: int) -> dict[str, float]:
    rates = {}
    for name, body in THROUGHPUT.items():
        out = micropython(PROGRAM.format(url=url, token=TOKEN, n=n, batch=BATCH, body=body), work,
                          f"{firmware.lib_dir()}:.frozen")
        rates[name] = out["points"] * 1000 / max(out["ms"], 1)
    return rates


def heap_per_send(url: str, work: Path) -> dict[str, int]:
    return {name: micropython(HEAP_PROGRAM.format(url=url, token=TOKEN, body=body), work,
                              f"{firmware.lib_dir()}:.frozen")["bytes_per_send"]
            for name, body in HEAP_PER_SEND.items()}


def import_ram(work: Path) -> dict[str, int]:
    mpy_dir = work / "mpy"
    files = firmware.compile_library(mpy_dir)
    figures = {}
    for form, path in (("py", firmware.lib_dir()), ("mpy", mpy_dir)):
        ram = micropython(IMPORT_PROGRAM, work, f"{FAKES}:{path}:.frozen")
        figures[f"import thingsboard as .{form} (bytes)"] = ram["client"]
        figures[f"import the whole loop (app) as .{form} (bytes)"] = ram["loop"]
    figures["total .mpy size (bytes)"] = sum(f.stat().st_size for f in files)
    # From ROMFS the bytecode stays in the image: only the objects made at import take heap.
    image = bench_romfs.build_image(work / "iotlink.romfs")
    ram = micropython(bench_romfs.mount_program(image) + IMPORT_PROGRAM, work, f"{FAKES}:.frozen")
    figures["import thingsboard from ROMFS (bytes)"] = ram["client"]
    figures["import the whole loop (app) from ROMFS (bytes)"] = ram["loop"]
    figures["ROMFS image size (bytes)"] = image.stat().st_size
    return figures


def print_rates(title: str, rates: dict[str, float]) -> None:
    base = rates["naive"]
    print(f"\n{title}")
    print(f"  {'':40s} {'points/s':>10s} {'x naive':>8s}")
    for name, rate in rates.items():
        print(f"  {name:40s} {rate:10.1f} {rate / base:8.2f}")


PARTS = ("throughput", "footprint", "peers", "wasm", "limit", "ota", "heap", "radio")


def run_all(n: int, heap_minutes: float, parts: tuple[str, ...] = PARTS) -> dict:
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "throughput" in parts:
            pki = make_pki(work)
            with DevServer() as plain, DevServer(tls=(str(pki["cert"]), str(pki["key"]))) as tls:
                for srv in (plain, tls):
                    srv.add_device("bench", TOKEN)
                results["telemetry over HTTP"] = throughput(plain.url, work, n)
                results["telemetry over TLS"] = throughput(tls.url, work, max(n // 4, BATCH))
                results["heap per telemetry send (bytes)"] = heap_per_send(plain.url, work)
        if "footprint" in parts:
            results["library RAM and size"] = import_ram(work)
    if "footprint" in parts:
        results["the loop in the smallest heap, .mpy"] = bench_loop.run()
        results["the loop in the smallest heap, ROMFS"] = bench_romfs.run()
    if "peers" in parts:
        results["peers in the smallest heap, .mpy"] = bench_peer.run()
    if "footprint" in parts or "peers" in parts:
        results["footprint beside peers"] = bench_peer.footprint_rows(
            results.get("the loop in the smallest heap, .mpy"), results.get("the loop in the smallest heap, ROMFS"),
            results.get("peers in the smallest heap, .mpy"))
    if "wasm" in parts:
        results["import heap, 64-bit unix port and 32-bit WebAssembly port"] = bench_wasm.run()
    if "limit" in parts:
        results["batched limit, raw socket and iotlink"] = bench_raw.run()
    if "ota" in parts:
        results["OTA: 1 MiB package in a 68 KiB heap"] = bench_ota.run()
    if "heap" in parts:
        results["heap over a long run, an RPC a second"] = bench_heap.run(heap_minutes)
    if "radio" in parts:
        results["radio-on time per reading"] = bench_radio.run()
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make bench", description=__doc__)
    p.add_argument("--points", type=int, default=1000, help="telemetry points per throughput row")
    p.add_argument("--json", type=Path, default=Path("build") / "bench.json")
    p.add_argument("--heap-minutes", type=float, default=10, help="length of the heap-growth run")
    p.add_argument("--only", action="append", choices=PARTS,
                   help="run only this part (repeatable): throughput (rates, heap per send), footprint "
                        "(library RAM, the loop's smallest heap), peers (MQTT and naive loops' smallest heap), "
                        "wasm (32-bit import heap), limit (batched vs raw socket), ota, heap (long run), radio (radio-on time per reading)")
    args = p.parse_args(argv)
    results = run_all(args.points, args.heap_minutes, tuple(args.only or PARTS))
    if "telemetry over HTTP" in results:
        print_rates("Telemetry over HTTP (local devserver)", results["telemetry over HTTP"])
        print_rates("Telemetry over TLS (local devserver, ECDSA P-256)", results["telemetry over TLS"])
        heap = results["heap per telemetry send (bytes)"]
        print("\nHeap allocated per telemetry send")
        for name, size in heap.items():
            print(f"  {name:40s} {size:10d} bytes {size / heap['naive']:8.2f} x naive")
    if "library RAM and size" in results:
        print("\nLibrary footprint (imported after machine and network: no fakes in these figures)")
        for name, size in results["library RAM and size"].items():
            print(f"  {name:40s} {size:10d}")
        print(f"\nSmallest heap: {bench_loop.describe(results['the loop in the smallest heap, .mpy'])}")
        print(f"Smallest heap: {bench_romfs.describe(results['the loop in the smallest heap, ROMFS'])}")
    if "footprint beside peers" in results:
        print(f"\n{bench_peer.describe_footprint(results['footprint beside peers'])}")
    if "import heap, 64-bit unix port and 32-bit WebAssembly port" in results:
        print(f"\n{bench_wasm.describe(results['import heap, 64-bit unix port and 32-bit WebAssembly port'])}")
    if "batched limit, raw socket and iotlink" in results:
        print(f"\n{bench_raw.describe(results['batched limit, raw socket and iotlink'])}")
    if "OTA: 1 MiB package in a 68 KiB heap" in results:
        ota = results["OTA: 1 MiB package in a 68 KiB heap"]
        print(f"\nOTA: {ota['package_bytes']} bytes in {ota['chunks']} chunks at {ota['throughput_kib_s']} KiB/s, "
              f"{ota['algorithm']}; heap {ota['heap_before_update_bytes']} before, peak {ota['heap_peak_bytes']} "
              f"(heapsize {ota['heapsize']}), {ota['fw_state']}")
    if "heap over a long run, an RPC a second" in results:
        heap = results["heap over a long run, an RPC a second"]
        print(f"\nHeap over {heap['minutes']} minutes, {heap['rpcs']} RPCs (one a second): free heap at its lowest "
              f"{heap['mem_free_min_first_minute']} bytes in the first minute, {heap['mem_free_min_last_minute']} "
              f"in the last ({heap['growth_bytes']} bytes of growth), {heap['boots']} boot(s)")
    if "radio-on time per reading" in results:
        print("\n" + bench_radio.report(results["radio-on time per reading"]))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nfigures saved to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
