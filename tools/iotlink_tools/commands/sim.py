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
from pathlib import Path

from rich.console import Console
from rich.text import Text

from ..errors import ToolError
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
    """Prints console lines of many boards, each prefixed by its board's name in its own color."""

    def __init__(self, names: list[str], console: Console | None = None):
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.width = max(map(len, names), default=0)
        self.styles = {name: COLORS[i % len(COLORS)] for i, name in enumerate(names)}

    def __call__(self, board: Board, line: str) -> None:
        prefix = Text(f"{board.name:<{self.width}} | ", style=self.styles.get(board.name, ""))
        self.console.print(prefix + Text(line))


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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--server", default="http://127.0.0.1:8080", help="server URL (default: %(default)s)")
    tokens = p.add_mutually_exclusive_group(required=True)
    tokens.add_argument("--token", help="access token of the one board")
    tokens.add_argument("--tokens", type=Path, metavar="FILE", help="fleet file: one `TOKEN` or `NAME,TOKEN` a line")
    tokens.add_argument("--create", action="store_true",
                        help="create devices NAME-1..NAME-COUNT through the server's REST API (or reuse them)")
    p.add_argument("--count", type=int, help="boards to run (default: one per token; 1 with --create)")
    p.add_argument("--name", default="sim", help="board name prefix (default: %(default)s)")
    p.add_argument("--user", default=os.environ.get("IOTLINK_USER", "tenant@thingsboard.org"),
                   help="--create: tenant user (default: $IOTLINK_USER, else the devserver's)")
    p.add_argument("--password", help="--create: password (default: $IOTLINK_PASSWORD, else the devserver's)")
    p.add_argument("--pins", type=parse_pins, default=parse_pins(DEFAULT_PINS),
                   help=f"allowed pins NAME=ID,... (default: {DEFAULT_PINS})")
    p.add_argument("--interval", type=int, default=5, help="seconds between telemetry sends (default: 5)")
    p.add_argument("--dir", type=Path, default=Path("sim"), help="where the boards' flash folders go (default: sim)")
    p.add_argument("--heapsize", help="MicroPython heap per board, e.g. 128K (default: the port's 2 MB)")
    p.add_argument("--wifi", help="script for the fake Wi-Fi (IOTLINK_WIFI; default: it connects)")


def run(args: argparse.Namespace) -> int:
    if args.create:
        names = [f"{args.name}-{i}" for i in range(1, (args.count or 1) + 1)]
        password = args.password or os.environ.get("IOTLINK_PASSWORD", "tenant")
        try:
            boards = create_devices(args.server, args.user, password, names)
        except RestError as exc:
            raise ToolError(f"--create: {exc}") from exc
    elif args.token:
        boards = [(f"{args.name}-1", args.token)]
    else:
        boards = read_tokens(args.tokens, args.name)
    count = len(boards) if args.count is None else args.count
    if not 1 <= count <= len(boards):
        raise ToolError(f"--count {count}: there are tokens for {len(boards)} board(s)")
    boards = boards[:count]
    printer = ConsolePrinter([name for name, _ in boards])
    running = start_boards(boards, args.dir, args.server, args.pins, args.interval, printer,
                           args.heapsize, args.wifi)
    printer.console.print(f"{len(running)} board(s) running against {args.server}, flash in {args.dir}/ "
                          "(Ctrl-C stops)")
    try:
        for board in running:
            while board.running:
                board.wait(0.5)
    finally:
        stop_boards(running)
    return max((abs(board.returncode or 0) for board in running), default=0)
