"""See iotlink work: the local server, a virtual board reporting to it, and the web page.

Starts the devserver, creates the device "demo-board" (token DEMO_TOKEN), runs one virtual
board against it (pins 23 and LED, telemetry every 5 s, a simulated room sensor), and prints
each telemetry the server stores. Open the printed address to watch it live, switch the board's
pins and set its shared attributes. Ctrl-C stops all.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from ..devserver import DevServer
from ..vboard.sensors import ROOM_SENSORS
from .devserver import start_server
from .sim import ConsolePrinter, parse_pins, start_boards, stop_boards

DEVICE = "demo-board"
TOKEN = "DEMO_TOKEN"
PINS = {"23": 23, "led": "LED"}
INTERVAL_S = 5

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="server port (default: %(default)s; 0 = any free port)")
    p.add_argument("--dir", type=Path, help="keep the board's flash here (default: a temporary folder)")
    p.add_argument("--pins", type=parse_pins, default=PINS, help="allowed pins NAME=ID,... (default: 23=23,led=LED)")
    p.add_argument("--interval", type=int, default=INTERVAL_S, help="seconds between telemetry sends")


def follow_telemetry(srv: DevServer, printer: ConsolePrinter) -> None:
    """Print every telemetry record the server stores, as it arrives (until interrupted)."""
    last_row = 0

    def new_rows():
        return srv.sql("SELECT t.rowid, d.name, t.ts, t.key, t.value FROM telemetry t "
                       "JOIN devices d ON d.id = t.device_id WHERE t.rowid > ? ORDER BY t.rowid", (last_row,))

    while True:
        rows = srv.wait_for(new_rows, 1.0)
        records: dict[tuple[str, int], list[str]] = {}
        for row in rows:
            last_row = row["rowid"]
            records.setdefault((row["name"], row["ts"]), []).append(f"{row['key']}={json.loads(row['value'])}")
        for (name, ts), values in records.items():
            stamp = time.strftime("%H:%M:%S", time.localtime(ts / 1000))
            printer.console.print(f"[bold green]telemetry[/] {stamp} {name}: " + " ".join(values), highlight=False)


def run(args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        srv = start_server(args.host, args.port)
        stack.callback(srv.stop)
        srv.add_device(DEVICE, TOKEN)
        folder = args.dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="iotlink-demo-")))
        printer = ConsolePrinter([DEVICE])
        (folder / DEVICE).mkdir(parents=True, exist_ok=True)
        (folder / DEVICE / "sensors.py").write_text(ROOM_SENSORS)  # the flash keeps it: start_boards adds the firmware
        boards = start_boards([(DEVICE, TOKEN)], folder, srv.url, args.pins, args.interval, printer)
        stack.callback(stop_boards, boards)
        printer.console.print(f"iotlink demo: server and web page on [bold]{srv.url}/[/]  "
                              f"(device {DEVICE}, token {TOKEN}; board flash in {folder}; Ctrl-C stops)")
        follow_telemetry(srv, printer)
    return 0
