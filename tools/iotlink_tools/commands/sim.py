"""Run virtual boards: the real firmware in the MicroPython unix port, one folder of flash each.

One board:   iotlink sim --server http://127.0.0.1:8080 --token TOKEN
A fleet:     iotlink sim --server URL --tokens FLEET.txt [--count N]
             FLEET.txt: one board a line, `TOKEN` or `NAME,TOKEN` (blank lines, # comments skipped)
New devices: iotlink sim --server URL --create --count N [--user U --password P]
             creates devices sim-1..sim-N through the server's REST API (ThingsBoard or the
             devserver, whose tenant is tenant@thingsboard.org / tenant) or reuses those names

Each board's flash is DIR/NAME/ (boot.py, main.py, lib/iotlink/, config.json), its console is
DIR/NAME.console.log and its pin writes DIR/NAME.pins.jsonl. Console lines are streamed here,
prefixed by the board's name. A board that calls machine.reset() reboots; Ctrl-C stops them all.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

from rich.console import Console
from rich.text import Text

from .. import ui
from ..errors import ToolError
from ..options import add_secret
from ..rest import RestError, ThingsBoardREST
from ..vboard import Board, prepare_flash

DEFAULT_PINS = "23=23,led=LED"
COLORS = ("cyan", "magenta", "green", "yellow", "blue", "red")


def parse_pins(text: str) -> dict:
    """"23=23,led=LED" -> {"23": 23, "led": "LED"}: allowed name = machine.Pin id (int or name)."""
    pins = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, pin_id = item.partition("=")
        if not sep or not name or not pin_id:
            raise argparse.ArgumentTypeError(f"bad pin {item!r}: expected NAME=ID, e.g. 23=23 or led=LED")
        pins[name] = int(pin_id) if pin_id.lstrip("-").isdigit() else pin_id
    return pins


def create_devices(server: str, user: str, password: str, names: list[str]) -> list[tuple[str, str]]:
    """(name, token) per name: the tenant's device of that name, created when missing."""
    rest = ThingsBoardREST(server, user, password)
    boards = []
    for name in names:
        device = rest.find_device(name) or rest.create_device(name)
        boards.append((name, rest.access_token(device["id"]["id"])))
    return boards


def read_tokens(path: Path, prefix: str = "sim") -> list[tuple[str, str]]:
    """(name, token) per board from a fleet file: `TOKEN` or `NAME,TOKEN` lines."""
    boards = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, token = line.rpartition(",")
        name, token = name.strip() or f"{prefix}-{len(boards) + 1}", token.strip()
        if not token:
            raise ToolError(f"{path}:{number}: no token")
        boards.append((name, token))
    names = [name for name, _ in boards]
    if len(set(names)) != len(names):
        raise ToolError(f"{path}: board names must be unique")
    return boards


def board_config(server: str, token: str, pins: dict, interval_s: int) -> dict:
    """config.json of a virtual board (DESIGN section 4); the fake Wi-Fi accepts any network."""
    return {
        "platform": "thingsboard",
        "server": server,
        "token": token,
        "wifi": {"ssid": "iotlink-sim", "password": "iotlink-sim"},
        "interval_s": interval_s,
        "pins": pins,
    }


class ConsolePrinter:
    """Prints console lines of many boards, each prefixed by its board's name in its own color
    (and, with clock, by the time it came)."""

    def __init__(self, names: list[str], console: Console | None = None, clock: bool = False):
        self.console = console or ui.console()
        self.width = max(map(len, names), default=0)
        self.styles = {name: COLORS[i % len(COLORS)] for i, name in enumerate(names)}
        self.clock = clock

    def __call__(self, board: Board, line: str) -> None:
        self.line(board.name, line)

    def line(self, name: str, text: str) -> None:
        prefix = Text(f"{time.strftime('%H:%M:%S')} " if self.clock else "")
        prefix.append(f"{name:<{self.width}} | ", style=self.styles.get(name, ""))
        self.console.print(prefix + Text(text))


def start_boards(boards: list[tuple[str, str]], folder: Path, server: str, pins: dict, interval_s: int,
                 on_line=None, heapsize: str | None = None, wifi: str | None = None) -> list[Board]:
    """Flash and power on one virtual board per (name, token), each in folder/NAME."""
    started: list[Board] = []
    try:
        for name, token in boards:
            flash = prepare_flash(folder / name, board_config(server, token, pins, interval_s))
            started.append(Board(flash, name, heapsize=heapsize, wifi=wifi, on_line=on_line).start())
    except BaseException:
        stop_boards(started)
        raise
    return started


def stop_boards(boards: list[Board]) -> None:
    for board in boards:
        board.stop()


def heapsize(text: str) -> str:
    """A MicroPython heap size as the unix port's -X heapsize takes it: 2M, 512K, 131072."""
    if not re.fullmatch(r"[1-9]\d*[KkMm]?", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a heap size (a number of bytes, or with K or M: 512K, 2M)")
    return text


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", default="http://127.0.0.1:8080", help="server URL")
    tokens = p.add_argument_group("which boards (one of)").add_mutually_exclusive_group()
    add_secret(p, "--token", "IOTLINK_TOKEN", "access token of the one board", metavar="TOKEN", either=tokens)
    tokens.add_argument("--tokens", type=Path, metavar="FILE", help="fleet file: one `TOKEN` or `NAME,TOKEN` a line")
    tokens.add_argument("--create", action="store_true",
                        help="create devices NAME-1..NAME-COUNT through the server's REST API (or reuse them)")
    p.add_argument("--count", type=int, help="boards to run (default: one per token; 1 with --create)")
    p.add_argument("--name", default="sim", help="board name prefix")
    p.add_argument("--user", default=os.environ.get("IOTLINK_USER", "tenant@thingsboard.org"),
                   help="--create: tenant user ($IOTLINK_USER)")
    add_secret(p, "--password", "IOTLINK_PASSWORD", "--create: the tenant's password (default: the devserver's)",
               metavar="PASSWORD", fallback="tenant")
    p.add_argument("--pins", type=parse_pins, default=DEFAULT_PINS, help="allowed pins NAME=ID,...")
    p.add_argument("--interval", type=int, default=5, help="seconds between telemetry sends")
    p.add_argument("--dir", type=Path, default=Path("sim"), help="where the boards' flash folders go")
    p.add_argument("--heapsize", type=heapsize, help="MicroPython heap per board, e.g. 128K (default: the port's 2M)")
    p.add_argument("--wifi", help="script for the fake Wi-Fi (as $IOTLINK_WIFI; default: it connects)")


def run(args: argparse.Namespace) -> int:
    if args.create:
        names = [f"{args.name}-{i}" for i in range(1, (args.count or 1) + 1)]
        try:
            boards = create_devices(args.server, args.user, args.password, names)
        except RestError as exc:
            raise ToolError(f"--create: {exc}") from exc
    elif args.tokens:
        boards = read_tokens(args.tokens, args.name)
    elif args.token:
        boards = [(f"{args.name}-1", args.token)]
    else:
        raise ToolError("which boards? give --token (or $IOTLINK_TOKEN), --tokens FILE or --create")
    count = len(boards) if args.count is None else args.count
    if not 1 <= count <= len(boards):
        raise ToolError(f"--count {count}: there are tokens for {len(boards)} board(s)")
    boards = boards[:count]
    printer = ConsolePrinter([name for name, _ in boards])
    running = start_boards(boards, args.dir, args.server, args.pins, args.interval, printer,
                           args.heapsize, args.wifi)
    ui.info(f"{len(running)} board(s) running against {args.server}, flash in {args.dir}/ (Ctrl-C stops)")
    try:
        for board in running:
            while board.running:
                board.wait(0.5)
    finally:
        stop_boards(running)
    return max((abs(board.returncode or 0) for board in running), default=0)
