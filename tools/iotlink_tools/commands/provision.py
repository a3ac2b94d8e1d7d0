"""Provision a fleet: every board in a CSV flashed, given its own token, and confirmed online.

  iotlink provision FLEET.csv --url https://tb.example.com --user me@example.com --wifi-ssid lab
  (the password from $IOTLINK_PASSWORD or --password-file; URL and user also from
  $IOTLINK_SERVER and $IOTLINK_USER, the names `iotlink sim` reads too)

FLEET.csv has a header row; only `name` is required:

  name           the device's name on the server (unique in the file)
  port           the board's serial port; empty: the next board found on USB (Espressif,
                 Raspberry Pi, CP210x or CH340 ids), in the order of the rows
  type           esp32 or picow: which image --firmware is (empty: from the USB id)
  wifi_ssid      this board's Wi-Fi (default --wifi-ssid or $IOTLINK_WIFI_SSID)
  wifi_password  (default --wifi-password, $IOTLINK_WIFI_PASSWORD or --wifi-password-file)
  token          the access token to give the device (default: a new random one)
  label          the device's label on the server

The whole file is checked first (columns, names, ports, Wi-Fi): every problem is listed and
nothing is done until the file is right. The config the boards get is checked too, by the
firmware's own check run on this computer (an https server needs --ca). Then for each board, in
parallel: the device is created on the server with its token through the REST API (or, with
--provision-key/--provision-secret, the board provisions itself), the board is flashed
(--firmware), the app (the library as .mpy, or source with --py), its config.json and, with
--ca, the https server's CA certificate are deployed and verified, the board is reset, and its
first telemetry (uptime_s, mem_free) is awaited through the REST API. A failing step is
retried with backoff. Boards done are recorded in FLEET.state.json, so a re-run skips them; the
result of every row goes to the screen and to FLEET.report.csv / FLEET.report.json. No output
holds a token, a password or a provisioning secret.

Devices this command creates carry the server attribute `iotlink_provisioned`: a run that failed
half way can be run again with the corrected file (under any name) and takes those devices over.
A device of the same name without that mark belongs to someone else and is never touched (unless
the row gives its token).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import secrets
import string
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from difflib import get_close_matches

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from .. import ui
from ..certs import read_ca
from ..errors import PREFIX, ToolError
from ..options import add_secret
from ..rest import RestError, ThingsBoardREST
from ..secret import redact, write_private
from ..serialports import port_exists, usb_boards
from . import flash as flashing
from .deploy import BoardError, board_config, check_config, deploy, load_config, reset

COLUMNS = ("name", "port", "type", "wifi_ssid", "wifi_password", "token", "label")
BOARD_TYPES = ("esp32", "picow")
MARK = "iotlink_provisioned"  # server attribute of the devices this command created
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
HEALTH_KEYS = ["uptime_s", "mem_free"]  # what main.py sends every interval (DESIGN section 5)
STAGES = ("server", "flash", "deploy", "reset", "confirm")
TOKEN_ALPHABET = string.ascii_letters + string.digits
NAME_MAX = 255


class Refused(Exception):
    """A failure that trying again cannot fix (a taken name, a refused request)."""


class NeverReported(Exception):
    pass


@dataclass
class Board:
    row: int                 # line in the CSV file
    name: str
    port: str = ""
    type: str = ""
    wifi_ssid: str = ""
    wifi_password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    label: str = ""
    usb_serial: str = ""


@dataclass
class Result:
    name: str
    row: int
    port: str = ""
    status: str = "failed"   # online | already done | failed
    stage: str = ""
    detail: str = ""
    device_id: str = ""
    attempts: int = 0
    started: str = ""
    finished: str = ""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# ---- the fleet file ----------------------------------------------------------------------
def read_fleet(path: Path, wifi_default: bool) -> tuple[list[Board], list[str]]:
    """The boards of a fleet CSV and every problem found in it, one `FILE:LINE: what` line each.
    wifi_default: the boards have a Wi-Fi without a wifi_ssid cell (--wifi-ssid, --config)."""
    boards, problems = [], []

    def problem(line: int, text: str) -> None:
        problems.append(f"{path}:{line}: {text}")

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            for number, column in enumerate(header, 1):
                if column not in COLUMNS:
                    problem(1, _unknown_column(number, column))
            if "name" not in header:
                problem(1, f"no 'name' column: the first row names the columns ({','.join(COLUMNS)})")
            if "wifi_ssid" not in header and not wifi_default:
                problem(1, "no Wi-Fi: add a wifi_ssid column or give --wifi-ssid")
            reader.fieldnames = header
            names, ports = set(), set()
            for values in reader if "name" in header else ():  # without names, every row would say so
                cells = {k: (v or "").strip() for k, v in values.items() if k in COLUMNS}
                for text in _row_problems(cells, values, names, ports, wifi_default or "wifi_ssid" not in header):
                    problem(reader.line_num, text)
                names.add(cells.get("name"))
                ports.add(cells.get("port"))
                boards.append(Board(reader.line_num, **{"name": "", **cells}))
    except OSError as exc:
        raise ToolError(f"cannot read {path}: {exc.strerror}") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ToolError(f"{path} is not a readable CSV file: {exc}") from None
    if not boards and "name" in header:
        problems.append(f"{path}: no boards: the file has its header row only")
    return boards, problems


def _unknown_column(number: int, column: str) -> str:
    if not column:
        return f"column {number} has no name"
    close = get_close_matches(column.lower(), COLUMNS, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else f"the columns are {', '.join(COLUMNS)}"
    return f"unknown column '{column}': {hint}"


def _row_problems(cells: dict, values: dict, names: set, ports: set, wifi_default: bool) -> list[str]:
    """What is wrong with one row (wifi_default: a row without wifi_ssid has a Wi-Fi all the same)."""
    found = []
    if None in values:
        found.append("more cells than columns")
    name, token, port = cells.get("name", ""), cells.get("token", ""), cells.get("port", "")
    if not name:
        found.append("no name")
    elif len(name) > NAME_MAX:
        found.append(f"name longer than {NAME_MAX} characters")
    elif name in names:
        found.append(f"name '{name}' appears twice in the file")
    if port and port in ports:
        found.append(f"port {port} appears twice in the file")
    if cells.get("type", "") not in ("",) + BOARD_TYPES:
        found.append(f"type must be {' or '.join(BOARD_TYPES)} (got '{cells['type']}')")
    if token and (len(token) > 255 or re.search(r"[/?#%\s]", token)):
        found.append("token must be at most 255 characters without '/', '?', '#', '%' or spaces")
    if cells.get("wifi_password") and not cells.get("wifi_ssid"):
        found.append("wifi_password without wifi_ssid")
    elif not cells.get("wifi_ssid") and not wifi_default:
        found.append("no Wi-Fi: fill wifi_ssid or give --wifi-ssid")
    return found


# ---- state kept between runs -------------------------------------------------------------
class State:
    """name -> what earlier runs did (device id, port, done), saved after every change."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        try:
            self.boards: dict[str, dict] = json.loads(path.read_text())
        except FileNotFoundError:
            self.boards = {}
        except ValueError:
            raise ToolError(f"{path} is damaged; move it away to start over") from None

    def get(self, name: str) -> dict:
        with self._lock:
            return dict(self.boards.get(name, {}))

    def update(self, name: str, **values) -> None:
        with self._lock:
            self.boards.setdefault(name, {}).update(values, updated=now_iso())
            tmp = self.path.with_name(self.path.name + ".tmp")
            write_private(tmp, json.dumps(self.boards, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, self.path)


# ---- what the user sees ------------------------------------------------------------------
class Display:
    """A row per board with its stage, live on a terminal; elsewhere a plain line per change;
    with -q neither (the report and the summary still show)."""

    def __init__(self, console: Console, boards: list[Board]):
        self.console = console
        self.live = ui.live()
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description:<20}"), BarColumn(bar_width=20),
                                 TextColumn("{task.fields[stage]}"), TimeElapsedColumn(),
                                 console=console, disable=not self.live)
        self.tasks = {b.name: self.progress.add_task(escape(b.name), total=len(STAGES), stage="waiting")
                      for b in boards}

    def __enter__(self) -> "Display":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def stage(self, board: Board, text: str, done: int | None = None, style: str = "") -> None:
        """The board's stage now (done: how many of STAGES it has finished)."""
        if self.live:
            shown = f"[{style}]{escape(text)}" if style else escape(text)
            self.progress.update(self.tasks[board.name], stage=shown, completed=done)
        else:
            self.say(board, text)

    def say(self, board: Board, text: str) -> None:
        if ui.level >= ui.NORMAL:
            self.console.print(f"[bold]{escape(board.name)}[/bold]: {escape(text)}")


# ---- one board ---------------------------------------------------------------------------
class Fleet:
    """Everything the boards share: options, the REST session, the state, the display."""

    def __init__(self, args: argparse.Namespace, rest: ThingsBoardREST, state: State, base_config: dict,
                 display: Display):
        self.args = args
        self.rest = rest
        self.state = state
        self.base_config = base_config
        self.display = display
        self.bootsel_lock = threading.Lock()  # one Pico W in BOOTSEL at a time: drives are told apart by order

    # ---- the steps -------------------------------------------------------------------
    def marked(self, device_id: str) -> bool:
        """Whether this command created the device (in this run, an earlier one, from any file)."""
        return bool(self.rest.attributes(device_id, "SERVER_SCOPE", [MARK]).get(MARK))

    def mark(self, device_id: str) -> None:
        self.rest.save_attributes(device_id, "SERVER_SCOPE", {MARK: now_iso()})

    def server_device(self, board: Board) -> tuple[str | None, str | None]:
        """(device id, access token) on the server; (None, None) when the board provisions itself."""
        existing = self.rest.find_device(board.name)
        if existing is not None:
            return self.adopt(board, existing["id"]["id"])
        if self.args.provision_key:
            return None, None
        token = board.token or "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(20))
        try:
            created = self.rest.create_device(board.name, self.args.profile, board.label or None, token)
        except RestError as exc:
            if exc.status != 400:
                raise
            # A create whose reply was lost and was sent again finds its own device.
            again = self.rest.find_device(board.name)
            if again is None or self.rest.access_token(again["id"]["id"]) != token:
                raise Refused(f"the server refused the device: {exc.message}") from None
            created = again
        self.state.update(board.name, device_id=created["id"]["id"])
        self.mark(created["id"]["id"])
        return created["id"]["id"], token

    def adopt(self, board: Board, device_id: str) -> tuple[str, str]:
        """(device id, token) of a device of the board's name that the server has already: one
        this command created (its mark, or this file's state), or one whose token the row gives."""
        token = self.rest.access_token(device_id)
        if self.state.get(board.name).get("device_id") == device_id:
            if not self.marked(device_id):
                self.mark(device_id)  # created, then cut off before the mark went on
            ours = True
        else:
            ours = self.marked(device_id)
        if board.token and token != board.token:
            if ours:
                raise Refused(f"the server's device '{board.name}' (made by iotlink provision) has another "
                              "token than the row gives: empty the token cell to keep the device's own")
            raise Refused(f"name taken: the server has a device '{board.name}' that iotlink provision did not "
                          "create (its token differs); rename the row, or give its token in the CSV")
        if not (ours or board.token):
            raise Refused(f"name taken: the server has a device '{board.name}' that iotlink provision did not "
                          "create; rename the row, or give its token in the CSV")
        return device_id, token

    def board_config(self, board: Board, token: str | None) -> dict:
        config = dict(self.base_config, platform="thingsboard", server=self.args.device_server)
        if token:
            config["token"] = token
            config.pop("provision", None)
        else:
            config["provision"] = {"device_name": board.name, "key": self.args.provision_key,
                                   "secret": self.args.provision_secret}
        ssid = board.wifi_ssid or self.args.wifi_ssid
        if ssid:
            config["wifi"] = {"ssid": ssid, "password": board.wifi_password if board.wifi_ssid
                              else (self.args.wifi_password or "")}
        return config

    def flash(self, board: Board) -> None:
        """Write --firmware in a process of its own (esptool is one port per process)."""
        kind = board.type or ""
        if not kind:
            raise Refused("unknown board type: give the 'type' column (esp32 or picow) to flash it")
        command = [sys.executable, "-m", "iotlink_tools.cli", "flash", "-q", str(self.args.firmware), "--port", board.port]
        if self.args.erase and kind == "esp32":
            command.append("--erase")
        with self.bootsel_lock if kind == "picow" else nullcontext():
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            lines = (done.stderr + done.stdout).strip().splitlines()
            said = [line.removeprefix(PREFIX) for line in lines if line.startswith(PREFIX)]
            raise flashing.FlashError((said or lines or ["failed"])[-1])
        board.port = self.wait_for_port(board)

    def wait_for_port(self, board: Board, timeout: float = 30.0) -> str:
        """The board's port once it is back after flashing (found again by its USB serial number)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for port, _, serial_number in usb_boards():
                if board.usb_serial and serial_number == board.usb_serial:
                    return port
            if not board.usb_serial and os.path.exists(board.port):
                return board.port
            time.sleep(0.5)
        raise BoardError(f"{board.port} did not come back within {timeout:.0f} s after flashing")

    def confirm(self, board: Board, device_id: str | None, since_ms: int) -> str:
        """Wait for telemetry sent after since_ms (server clock); returns the device id."""
        deadline = time.monotonic() + self.args.confirm_timeout
        while True:
            if device_id is None:  # a self-provisioning board appears on the server by itself
                found = self.rest.find_device(board.name)
                device_id = found["id"]["id"] if found else None
            if device_id is not None:
                latest = self.rest.latest_telemetry(device_id, HEALTH_KEYS)
                if any(ts >= since_ms for ts, _ in latest.values()):
                    if self.args.provision_key and not self.marked(device_id):
                        self.mark(device_id)  # the board made it, for this fleet
                    return device_id
            if time.monotonic() >= deadline:
                raise NeverReported(f"no telemetry within {self.args.confirm_timeout:g} s of the reset "
                                    "(the board's console says why: Wi-Fi, server URL, token)")
            time.sleep(self.args.poll)

    # ---- the whole job ---------------------------------------------------------------
    def provision(self, board: Board) -> Result:
        result = Result(board.name, board.row, board.port, started=now_iso())
        device_id = token = None
        flashed = False
        step = "server"
        for attempt in range(1, self.args.retries + 2):
            result.attempts = attempt
            try:
                step = "server"
                self.display.stage(board, "server", 0)
                device_id, token = self.server_device(board)
                result.device_id = device_id or ""
                if self.args.firmware and not flashed:
                    step = "flash"
                    self.display.stage(board, "flashing", 1)
                    self.flash(board)
                    flashed = True
                step = "deploy"
                self.display.stage(board, "deploying", 2)
                deploy(board.port, self.board_config(board, token), not self.args.py, self.args.ca_data)
                step = "reset"
                self.display.stage(board, "resetting", 3)
                since_ms = self.rest.server_time_ms() - 1000  # the server's clock, known to the second
                reset(board.port)
                step = "confirm"
                self.display.stage(board, "waiting for telemetry", 4)
                result.device_id = self.confirm(board, device_id, since_ms)
                result.status, result.stage, result.detail = "online", "", "first telemetry received"
                self.state.update(board.name, status="done", device_id=result.device_id, port=board.port,
                                  usb_serial=board.usb_serial)
                break
            except Exception as exc:
                result.stage, result.detail = step, self.describe(exc, board, token)
                retry = not isinstance(exc, Refused) and not (isinstance(exc, RestError) and not exc.retryable)
                if not retry or attempt > self.args.retries:
                    self.state.update(board.name, status="failed", stage=step)
                    break
                delay = min(30.0, self.args.retry_delay * 2 ** (attempt - 1))
                self.display.say(board, f"{step}: {result.detail}; trying again in {delay:g} s")
                time.sleep(delay)
        result.port, result.finished = board.port, now_iso()
        if result.status == "online":
            self.display.stage(board, "online", len(STAGES), "green")
        else:
            self.display.stage(board, f"failed ({result.stage}: {result.detail})", style="red")
        return result

    def describe(self, exc: Exception, board: Board, token: str | None) -> str:
        """What went wrong, in one line without any secret of the run (numbers included)."""
        secrets_of_run = [self.base_config, self.board_config(board, token), {"password": self.args.password}]
        return redact(_describe(exc), secrets_of_run)


def _describe(exc: Exception) -> str:
    if isinstance(exc, (Refused, NeverReported, BoardError, flashing.FlashError, RestError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


# ---- the run -----------------------------------------------------------------------------
def assign_ports(boards: list[Board], state: State, results: list[Result]) -> list[Board]:
    """Give rows without a port the boards found on USB; rows left without one fail."""
    claimed = {b.port for b in boards if b.port}
    done_serials = {s.get("usb_serial") for s in state.boards.values() if s.get("status") == "done"} - {"", None}
    free = [found for found in usb_boards() if found[0] not in claimed and found[2] not in done_serials]
    ready = []
    for board in boards:
        if not board.port:
            if not free:
                results.append(Result(board.name, board.row, stage="port",
                                      detail="no board found for this row (give its port, or plug it in)"))
                continue
            board.port, kind, board.usb_serial = free.pop(0)
            board.type = board.type or kind
        ready.append(board)
    return ready


def spreadsheet_safe(value):
    """A CSV cell a spreadsheet shows as text: one starting with = + - @ or a tab or CR would be
    taken for a formula (the names and messages come from the file and the server)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_report(results: list[Result], prefix: Path) -> tuple[Path, Path]:
    rows = [vars(r) for r in sorted(results, key=lambda r: r.row)]
    csv_path, json_path = prefix.with_name(prefix.name + ".csv"), prefix.with_name(prefix.name + ".json")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(vars(Result("", 0))))
        writer.writeheader()
        writer.writerows({k: spreadsheet_safe(v) for k, v in row.items()} for row in rows)
    json_path.write_text(json.dumps(rows, indent=2) + "\n")
    return csv_path, json_path


def show_report(console: Console, results: list[Result]) -> None:
    table = Table(title="Fleet report")
    for column in ("row", "name", "port", "result"):
        table.add_column(column)
    table.add_column("device id", min_width=36)
    table.add_column("detail")
    colours = {"online": "green", "already done": "cyan", "failed": "red"}
    for r in sorted(results, key=lambda r: r.row):
        detail = f"{r.stage}: {r.detail}" if r.status == "failed" else r.detail
        table.add_row(str(r.row), escape(r.name), escape(r.port), f"[{colours[r.status]}]{r.status}",
                      r.device_id, escape(detail))
    console.print(table)


def add_arguments(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p.add_argument("fleet", type=Path, help="CSV file: name[,port][,type][,wifi_ssid][,wifi_password][,token][,label]")
    server = p.add_argument_group("server")
    server.add_argument("--url", "--server", dest="url", default=env("IOTLINK_SERVER"),
                        help="ThingsBoard URL ($IOTLINK_SERVER)")
    server.add_argument("--user", default=env("IOTLINK_USER"), help="tenant user ($IOTLINK_USER)")
    add_secret(server, "--password", "IOTLINK_PASSWORD", "tenant password (never printed)", metavar="PASSWORD")
    server.add_argument("--device-server", help="the URL boards use (default: --url)")
    server.add_argument("--profile", default="default", help="device profile (type) of new devices")
    server.add_argument("--provision-key", help="boards provision themselves with this device-profile key")
    add_secret(server, "--provision-secret", "IOTLINK_PROVISION_SECRET", "... and secret")
    boards = p.add_argument_group("boards")
    boards.add_argument("--firmware", type=Path, help="flash this MicroPython image first (.bin or .uf2)")
    boards.add_argument("--erase", action="store_true", help="erase ESP32 flash before writing --firmware")
    boards.add_argument("--config", type=Path, help="config.json keys every board gets (interval_s, pins, ...)")
    boards.add_argument("--wifi-ssid", default=env("IOTLINK_WIFI_SSID"),
                        help="Wi-Fi for rows without wifi_ssid ($IOTLINK_WIFI_SSID)")
    add_secret(boards, "--wifi-password", "IOTLINK_WIFI_PASSWORD", "its password", metavar="PASSWORD")
    boards.add_argument("--ca", type=Path, metavar="FILE",
                        help="the https server's CA certificate (PEM or DER): every board gets it as ca.der, "
                             "and this tool trusts it too")
    boards.add_argument("--py", action="store_true", help="copy the library as .py source (default: .mpy)")
    run_group = p.add_argument_group("run")
    run_group.add_argument("--jobs", "-j", type=int, default=8, help="boards at a time")
    run_group.add_argument("--retries", type=int, default=2, help="retries per board")
    run_group.add_argument("--retry-delay", type=float, default=2.0, help="first backoff, doubled each retry (s)")
    run_group.add_argument("--confirm-timeout", type=float, default=120.0,
                           help="seconds to wait for a board's first telemetry")
    run_group.add_argument("--poll", type=float, default=1.0, help="seconds between telemetry checks")
    run_group.add_argument("--state", type=Path, help="state file (default FLEET.state.json)")
    run_group.add_argument("--report", type=Path, help="report path prefix (default FLEET.report)")
    run_group.add_argument("--force", action="store_true", help="redo boards an earlier run finished")


def _check_options(args: argparse.Namespace) -> None:
    """A ToolError for options a run cannot go far with, before anything is touched."""
    if not args.url:
        raise ToolError("give the server with --url or $IOTLINK_SERVER")
    if not args.user or args.password is None:
        raise ToolError("give the tenant account with --user/--password or $IOTLINK_USER/$IOTLINK_PASSWORD")
    if bool(args.provision_key) != bool(args.provision_secret):
        raise ToolError("--provision-key and --provision-secret go together")
    if args.firmware and flashing.image_kind(args.firmware) == "uf2":
        flashing.uf2_families(args.firmware)  # a damaged image fails the run, not every board


def run(args: argparse.Namespace) -> int:
    console = ui.console()
    _check_options(args)
    args.device_server = args.device_server or args.url
    base = args.fleet.with_suffix("")
    state = State(args.state or base.with_name(base.name + ".state.json"))
    base_config = load_config(args.config) if args.config else {}
    boards, problems = read_fleet(args.fleet, bool(args.wifi_ssid or base_config.get("wifi")))
    problems += [f"{args.fleet}:{b.row}: port {b.port} not found (is the board plugged in?)" for b in boards
                 if b.port and state.get(b.name).get("status") != "done" and not port_exists(b.port)]
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        raise ToolError(f"{args.fleet}: {len(problems)} problem(s) to fix first; nothing was done")
    results: list[Result] = []
    args.ca_data = read_ca(args.ca) if args.ca else None
    # The firmware's own check of the config boards get (an https server needs --ca), before
    # any board or device is touched.
    sample = Fleet(args, None, state, base_config, None).board_config(Board(0, "check"), "check")
    check_config(board_config(sample, args.ca_data))
    todo = []
    for board in boards:
        earlier = state.get(board.name)
        if earlier.get("status") == "done" and not args.force:
            results.append(Result(board.name, board.row, earlier.get("port", ""), "already done",
                                  detail=f"done on {earlier.get('updated', '?')[:19]}", device_id=earlier.get("device_id", "")))
        else:
            todo.append(board)
    todo = assign_ports(todo, state, results)
    rest = ThingsBoardREST(args.url, args.user, args.password, ca=args.ca_data)
    if todo:
        try:
            rest.login()  # wrong credentials stop the run before any board is touched
        except RestError as exc:
            raise ToolError(f"cannot log in to {args.url} as {args.user}: {exc}") from exc
    with Display(console, todo) as display:
        fleet = Fleet(args, rest, state, base_config, display)
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results += pool.map(fleet.provision, todo)
    show_report(console, results)
    csv_path, json_path = write_report(results, args.report or base.with_name(base.name + ".report"))
    console.print(escape(f"{summary(results)}; report: {csv_path}, {json_path}"))
    return 1 if any(r.status == "failed" for r in results) else 0


def summary(results: list[Result]) -> str:
    """"3 boards: 1 online, 1 already done, 1 failed (confirm 1)"."""
    counts = {status: sum(r.status == status for r in results) for status in ("online", "already done", "failed")}
    stages = sorted({r.stage for r in results if r.status == "failed"})
    where = ", ".join(f"{stage} {sum(r.stage == stage for r in results if r.status == 'failed')}" for stage in stages)
    parts = [f"{n} {status}" for status, n in counts.items() if n]
    return f"{len(results)} boards: " + ", ".join(parts) + (f" ({where})" if where else "")
