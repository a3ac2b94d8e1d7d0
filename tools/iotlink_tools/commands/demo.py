"""See iotlink work: the local server, a virtual board reporting to it, and the web page.

Starts the devserver, creates the device "demo-board" (token DEMO_TOKEN), runs one virtual
board against it (pins 23 and LED, telemetry every 5 s, a simulated room sensor), and prints
each telemetry the server stores, each line with its time. Open the printed address to watch it
live, switch the board's pins and set its shared attributes. Ctrl-C stops all.

  iotlink demo                     # on http://127.0.0.1:8080/
  iotlink demo --http-port 9090 --interval 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from ..devserver import DevServer
from ..devserver.web import Exchange
from ..options import add_http_port
from ..vboard.sensors import ROOM_SENSORS
from .devserver import start_server
from .sim import DEFAULT_PINS, ConsolePrinter, parse_pins, start_boards, stop_boards

DEVICE = "demo-board"
TOKEN = "DEMO_TOKEN"
SERVER = "server"  # the name server events are printed under
INTERVAL_S = 5


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_http_port(p)
    p.add_argument("--dir", type=Path, help="keep the board's flash here (default: a temporary folder)")
    p.add_argument("--pins", type=parse_pins, default=DEFAULT_PINS, help="allowed pins NAME=ID,...")
    p.add_argument("--interval", type=int, default=INTERVAL_S, help="seconds between telemetry sends")


class TelemetryPrinter:
    """Prints the telemetry the server stores, from the request that stored it, before the board
    hears the answer: so the lines come in the order things happened."""

    def __init__(self, srv: DevServer, printer: ConsolePrinter):
        self.srv, self.printer = srv, printer
        self.last_row = 0
        self.lock = threading.Lock()

    def __call__(self, exchange: Exchange) -> None:
        if exchange.method != "POST":  # what stores telemetry: a board's, or one sent through REST
            return
        with self.lock:
            rows = self.srv.sql("SELECT t.rowid, d.name, t.ts, t.key, t.value FROM telemetry t JOIN devices d "
                                "ON d.id = t.device_id WHERE t.rowid > ? ORDER BY t.rowid", (self.last_row,))
            records: dict[tuple[str, int], list[str]] = {}
            for row in rows:
                self.last_row = row["rowid"]
                records.setdefault((row["name"], row["ts"]), []).append(f"{row['key']}={json.loads(row['value'])}")
            for (name, ts), values in records.items():
                late = time.time() - ts / 1000 >= 1  # sent from the board's queue, measured earlier
                when = time.strftime(" (measured %H:%M:%S)", time.localtime(ts / 1000)) if late else ""
                self.printer.line(SERVER, f"telemetry from {name}: " + " ".join(values) + when)


def run(args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        srv = start_server(args.host, args.http_port)
        stack.callback(srv.stop)
        srv.add_device(DEVICE, TOKEN)
        folder = args.dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="iotlink-demo-")))
        printer = ConsolePrinter([DEVICE, SERVER], clock=True)
        srv.listeners.append(TelemetryPrinter(srv, printer))
        (folder / DEVICE).mkdir(parents=True, exist_ok=True)
        (folder / DEVICE / "sensors.py").write_text(ROOM_SENSORS)  # the flash keeps it: start_boards adds the firmware
        boards = start_boards([(DEVICE, TOKEN)], folder, srv.url, args.pins, args.interval, printer)
        stack.callback(stop_boards, boards)
        printer.console.print(f"iotlink demo: server and web page on [bold]{srv.url}/[/]  "
                              f"(device {DEVICE}, token {TOKEN}; board flash in {folder}; Ctrl-C stops)")
        while True:
            time.sleep(3600)
    return 0
