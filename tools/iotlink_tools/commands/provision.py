"""Provision a fleet: every board in a CSV flashed, given its own token, and confirmed online.

  iotlink provision FLEET.csv --url https://tb.example.com --user me@example.com
  (password from --password or $IOTLINK_PASSWORD; URL and user also from $IOTLINK_SERVER and
  $IOTLINK_USER, the names `iotlink sim` reads too)

FLEET.csv has a header row; only `name` is required:

  name           the device's name on the server (unique in the file)
  port           the board's serial port; empty: the next board found on USB (Espressif,
                 Raspberry Pi, CP210x or CH340 ids), in the order of the rows
  type           esp32 or picow: which image --firmware is (empty: from the USB id)
  wifi_ssid      this board's Wi-Fi (default --wifi-ssid)
  wifi_password  (default --wifi-password or $IOTLINK_WIFI_PASSWORD)
  token          the access token to give the device (default: a new random one)
  label          the device's label on the server

For each board, in parallel: the device is created on the server with its token through the REST
API (or, with --provision-key/--provision-secret, the board provisions itself), the board is
flashed (--firmware), the app (the library as .mpy, or source with --py), its config.json and,
with --ca, the https server's CA certificate are deployed and verified, the board is reset,
and its first telemetry (uptime_s, mem_free) is awaited through the REST API. A failing step is
retried with backoff. Boards done are recorded in FLEET.state.json, so a re-run skips them; the
result of every row goes to the screen and to FLEET.report.csv / FLEET.report.json. No output
holds a token, a password or a provisioning secret.
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

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..certs import read_ca
from ..errors import PREFIX, ToolError
from ..rest import RestError, ThingsBoardREST
from . import flash as flashing
from .deploy import BoardError, board_config, check_config, deploy, load_config, reset

COLUMNS = ("name", "port", "type", "wifi_ssid", "wifi_password", "token", "label")
BOARD_TYPES = ("esp32", "picow")
# USB vendor ids of boards and of the USB-serial chips on ESP32 boards -> board type.
USB_VENDORS = {0x303A: "esp32", 0x10C4: "esp32", 0x1A86: "esp32", 0x2E8A: "picow"}
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
def read_fleet(path: Path) -> tuple[list[Board], list[Result], list[str]]:
    """The boards of a fleet CSV, a failed Result per bad row, and warnings about the file."""
    boards, bad, warnings = [], [], []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            if "name" not in header:
                raise ToolError(f"{path} needs a header row with a 'name' column")
            unknown = [h for h in header if h not in COLUMNS]
            if unknown:
                warnings.append(f"columns ignored: {', '.join(unknown)} (known: {', '.join(COLUMNS)})")
            reader.fieldnames = header
            names, ports = set(), set()
            for values in reader:
                row = reader.line_num
                cells = {k: (v or "").strip() for k, v in values.items() if k in COLUMNS}
                problem = _row_problem(cells, values, names, ports)
                if problem:
                    bad.append(Result(cells.get("name") or f"(row {row})", row, cells.get("port", ""),
                                      stage="csv", detail=f"row {row}: {problem}"))
                    continue
                names.add(cells["name"])
                if cells.get("port"):
                    ports.add(cells["port"])
                boards.append(Board(row, **cells))
    except OSError as exc:
        raise ToolError(f"cannot read {path}: {exc.strerror}") from None
    except csv.Error as exc:
        raise ToolError(f"{path} is not a readable CSV file: {exc}") from None
    return boards, bad, warnings


def _row_problem(cells: dict, values: dict, names: set, ports: set) -> str | None:
    if None in values:
        return "more cells than columns"
    name, token = cells.get("name", ""), cells.get("token", "")
    if not name:
        return "no name"
    if len(name) > NAME_MAX:
        return f"name longer than {NAME_MAX} characters"
    if name in names:
        return f"name '{name}' appears twice in the file"
    if cells.get("port") and cells["port"] in ports:
        return f"port {cells['port']} appears twice in the file"
    if cells.get("type", "") not in ("",) + BOARD_TYPES:
        return f"type must be {' or '.join(BOARD_TYPES)} (got '{cells['type']}')"
    if token and (len(token) > 255 or re.search(r"[/?#%\s]", token)):
        return "token must be at most 255 characters without '/', '?', '#', '%' or spaces"
    if cells.get("wifi_password") and not cells.get("wifi_ssid"):
        return "wifi_password without wifi_ssid"
    return None


def usb_boards() -> list[tuple[str, str, str]]:
    """(port, board type, USB serial number) of the boards plugged in, by port name."""
    from serial.tools.list_ports import comports

    found = [(p.device, USB_VENDORS[p.vid], p.serial_number or "") for p in comports() if p.vid in USB_VENDORS]
    return sorted(found)


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
            tmp.write_text(json.dumps(self.boards, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, self.path)


# ---- one board ---------------------------------------------------------------------------
class Fleet:
    """Everything the boards share: options, the REST session, the state, the display."""

    def __init__(self, args: argparse.Namespace, rest: ThingsBoardREST, state: State, base_config: dict,
                 progress: Progress):
        self.args = args
        self.rest = rest
        self.state = state
        self.base_config = base_config
        self.progress = progress
        self.bootsel_lock = threading.Lock()  # one Pico W in BOOTSEL at a time: drives are told apart by order

    def say(self, board: Board, text: str) -> None:
        self.progress.console.print(f"[bold]{escape(board.name)}[/bold]: {escape(text)}")

    # ---- the steps -------------------------------------------------------------------
    def server_device(self, board: Board) -> tuple[str | None, str | None]:
        """(device id, access token) on the server; (None, None) when the board provisions itself."""
        existing = self.rest.find_device(board.name)
        if existing is not None:
            device_id = existing["id"]["id"]
            token = self.rest.access_token(device_id)
            ours = self.state.get(board.name).get("device_id") == device_id
            if not (ours or (board.token and token == board.token)):
                raise Refused(f"name taken: the server has a device '{board.name}' that this fleet did not "
                              "create (its token differs); rename the row, or give its token in the CSV")
            return device_id, token
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
        return created["id"]["id"], token

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
        command = [sys.executable, "-m", "iotlink_tools.cli", "flash", str(self.args.firmware), "--port", board.port]
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
                    return device_id
            if time.monotonic() >= deadline:
                raise NeverReported(f"no telemetry within {self.args.confirm_timeout:g} s of the reset "
                                    "(the board's console says why: Wi-Fi, server URL, token)")
            time.sleep(self.args.poll)

    # ---- the whole job ---------------------------------------------------------------
    def provision(self, board: Board, task) -> Result:
        result = Result(board.name, board.row, board.port, started=now_iso())
        device_id = token = None
        flashed = False
        step = "server"
        for attempt in range(1, self.args.retries + 2):
            result.attempts = attempt
            try:
                step = "server"
                self.progress.update(task, stage="server", completed=0)
                device_id, token = self.server_device(board)
                result.device_id = device_id or ""
                if self.args.firmware and not flashed:
                    step = "flash"
                    self.progress.update(task, stage="flashing", completed=1)
                    self.flash(board)
                    flashed = True
                step = "deploy"
                self.progress.update(task, stage="deploying", completed=2)
                deploy(board.port, self.board_config(board, token), not self.args.py, self.args.ca_data)
                step = "reset"
                self.progress.update(task, stage="resetting", completed=3)
                since_ms = self.rest.server_time_ms() - 1000  # the server's clock, known to the second
                reset(board.port)
                step = "confirm"
                self.progress.update(task, stage="waiting for telemetry", completed=4)
                result.device_id = self.confirm(board, device_id, since_ms)
                result.status, result.stage, result.detail = "online", "", "first telemetry received"
                self.state.update(board.name, status="done", device_id=result.device_id, port=board.port,
                                  usb_serial=board.usb_serial)
                self.progress.update(task, stage="[green]online", completed=5)
                break
            except Exception as exc:
                result.stage, result.detail = step, _describe(exc)
                retry = not isinstance(exc, Refused) and not (isinstance(exc, RestError) and not exc.retryable)
                if not retry or attempt > self.args.retries:
                    self.state.update(board.name, status="failed", stage=step)
                    self.progress.update(task, stage=f"[red]failed at {step}")
                    break
                delay = min(30.0, self.args.retry_delay * 2 ** (attempt - 1))
                self.say(board, f"{step}: {result.detail}; trying again in {delay:g} s")
                self.progress.update(task, stage=f"retry in {delay:g} s")
                time.sleep(delay)
        result.port, result.finished = board.port, now_iso()
        self.say(board, f"{result.status}" + (f" ({result.stage}: {result.detail})" if result.status == "failed" else ""))
        return result


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


def write_report(results: list[Result], prefix: Path) -> tuple[Path, Path]:
    rows = [vars(r) for r in sorted(results, key=lambda r: r.row)]
    csv_path, json_path = prefix.with_name(prefix.name + ".csv"), prefix.with_name(prefix.name + ".json")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(vars(Result("", 0))))
        writer.writeheader()
        writer.writerows(rows)
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
    server.add_argument("--password", default=env("IOTLINK_PASSWORD"),
                        help="tenant password ($IOTLINK_PASSWORD; never printed)")
    server.add_argument("--device-server", help="the URL boards use (default: --url)")
    server.add_argument("--profile", default="default", help="device profile (type) of new devices")
    server.add_argument("--provision-key", help="boards provision themselves with this device-profile key")
    server.add_argument("--provision-secret", default=env("IOTLINK_PROVISION_SECRET"),
                        help="... and secret ($IOTLINK_PROVISION_SECRET)")
    boards = p.add_argument_group("boards")
    boards.add_argument("--firmware", type=Path, help="flash this MicroPython image first (.bin or .uf2)")
    boards.add_argument("--erase", action="store_true", help="erase ESP32 flash before writing --firmware")
    boards.add_argument("--config", type=Path, help="config.json keys every board gets (interval_s, pins, ...)")
    boards.add_argument("--wifi-ssid", help="Wi-Fi for rows without wifi_ssid")
    boards.add_argument("--wifi-password", default=env("IOTLINK_WIFI_PASSWORD"), help="($IOTLINK_WIFI_PASSWORD)")
    boards.add_argument("--ca", type=Path, help="the https server's CA certificate (PEM or DER): every board gets "
                                                "it as ca.der, and this tool trusts it too")
    boards.add_argument("--py", action="store_true", help="copy the library as .py source (default: .mpy)")
    run_group = p.add_argument_group("run")
    run_group.add_argument("--jobs", "-j", type=int, default=8, help="boards at a time (default 8)")
    run_group.add_argument("--retries", type=int, default=2, help="retries per board (default 2)")
    run_group.add_argument("--retry-delay", type=float, default=2.0, help="first backoff, doubled each retry (s)")
    run_group.add_argument("--confirm-timeout", type=float, default=120.0,
                           help="seconds to wait for a board's first telemetry (default 120)")
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
    console = Console(highlight=False, soft_wrap=True)  # log lines stay whole in files and CI logs
    _check_options(args)
    args.device_server = args.device_server or args.url
    base = args.fleet.with_suffix("")
    state = State(args.state or base.with_name(base.name + ".state.json"))
    boards, results, warnings = read_fleet(args.fleet)
    for warning in warnings:
        console.print(f"[yellow]{escape(args.fleet.name)}: {escape(warning)}")
    base_config = load_config(args.config) if args.config else {}
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
    columns = (SpinnerColumn(), TextColumn("{task.description:<20}"), BarColumn(bar_width=20),
               TextColumn("{task.fields[stage]}"), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        fleet = Fleet(args, rest, state, base_config, progress)
        tasks = {b.name: progress.add_task(b.name, total=len(STAGES), stage="waiting") for b in todo}
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results += pool.map(lambda b: fleet.provision(b, tasks[b.name]), todo)
    show_report(console, results)
    csv_path, json_path = write_report(results, args.report or base.with_name(base.name + ".report"))
    failed = sum(r.status == "failed" for r in results)
    console.print(escape(f"{len(results) - failed} of {len(results)} boards online; report: {csv_path}, {json_path}"))
    return 1 if failed else 0
