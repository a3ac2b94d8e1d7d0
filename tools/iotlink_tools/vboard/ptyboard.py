"""A virtual board on a serial port: `micropython` on a pseudo-terminal, its own folder as flash.

What the host tools see is a serial port path (/dev/pts/N) that behaves like a USB-serial board
running MicroPython: at power-on it runs boot.py and main.py when they exist, then sits at the
REPL; the raw REPL works (the unix port speaks it when stdin is a terminal), so mpremote drives
it with `resume` (never a soft reset: that would end the unix process); Ctrl-C interrupts a
running main.py (at a system call, where the unix port takes it safely: _stop_where_interruptible);
`machine.reset()` reboots it (the fake machine exits with status 75) on the same port, as a
USB-UART bridge keeps its port across a reset; any other exit (machine.bootloader()) powers it
off and the port goes away.

Two pseudo-terminals make this work: the board's (micropython's controlling terminal, so the
line discipline turns Ctrl-C into SIGINT exactly while the unix port is not reading the REPL) and
the host's (the path tools open), with a relay between them that also keeps a console log.

  python -m iotlink_tools.vboard.ptyboard FOLDER     runs one and prints its port, until Ctrl-C
"""

from __future__ import annotations

import argparse
import fcntl
import os
import platform
import pty
import select
import signal
import stat
import subprocess
import termios
import threading
import time
import tty
from pathlib import Path

from .board import REBOOT_STATUS, _die_with_host, board_env, micropython_command

INTERRUPT = b"\x03"  # Ctrl-C
# System calls in which a process waits for time or input and which a signal cuts short (Linux
# numbers): sleeps, polls, and reads, receives, connects on a terminal or a socket. Not writes or
# file reads: MicroPython goes on after one, with the KeyboardInterrupt still pending.
WAITS = {
    "x86_64": {0, 7, 23, 35, 42, 43, 45, 47, 230, 232, 270, 271, 281, 288},
    "aarch64": {22, 63, 72, 73, 101, 115, 202, 203, 207, 212, 242},
}.get(platform.machine(), set())  # another machine: Ctrl-C goes in after the patience, as before

# Runs as `micropython -c`: boot.py, then main.py, as a board does; an exception in either is
# printed. Then the REPL, which the unix port enters after -c when MICROPYINSPECT is set (in the
# environment from the start, so a Ctrl-C on the very first line still lands in the REPL); but a
# SystemExit (machine.reset() and the like) must end the process, so it unsets it first.
BOOT_SEQUENCE = """\
import os, sys
try:
    for _name in ("boot.py", "main.py"):
        try:
            os.stat(_name)
        except OSError:
            continue
        try:
            execfile(_name)
        except Exception as _e:
            sys.print_exception(_e)
except SystemExit:
    os.unsetenv("MICROPYINSPECT")
    raise
"""


def _become_terminal_owner() -> None:
    """In the board's process before exec: its stdin (the board pty) becomes its controlling
    terminal, so Ctrl-C there is SIGINT; and it dies with the host. SIGINT starts ignored: the
    unix port handles it only while it runs code, and a Ctrl-C during start-up must not kill it
    (a board ignores one there too)."""
    _die_with_host()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _raw(fd: int, signals: bool = False) -> None:
    tty.setraw(fd)
    if signals:
        attrs = termios.tcgetattr(fd)
        attrs[3] |= termios.ISIG
        termios.tcsetattr(fd, termios.TCSANOW, attrs)


class PtyBoard:
    """One virtual board reachable at `port`. start() powers it on, stop() off."""

    def __init__(self, folder: str | os.PathLike, *, wifi: str | None = None, heapsize: str | None = None,
                 env: dict[str, str] | None = None, console_log: str | os.PathLike | None = None,
                 pin_log: str | os.PathLike | None = None):
        self.folder = Path(folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.console_log = Path(console_log or self.folder.with_name(self.folder.name + ".console.log"))
        self.pin_log = Path(pin_log or self.folder.with_name(self.folder.name + ".pins.jsonl"))
        self.command = micropython_command(heapsize) + ["-c", BOOT_SEQUENCE]
        self.env = board_env(self.pin_log, wifi, {"MICROPYINSPECT": "1", **(env or {})})
        self.boots = 0
        self.returncode: int | None = None
        self.port: str | None = None
        self._proc: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # ---- lifecycle -------------------------------------------------------------------
    def start(self) -> "PtyBoard":
        self.console_log.write_text("")
        self._host, self._host_side = pty.openpty()
        _raw(self._host_side)
        # Holding the host side open keeps the port alive while no tool has it open.
        self.port = os.ttyname(self._host_side)
        self._board, self._board_side = pty.openpty()
        _raw(self._board_side, signals=True)
        for fd in (self._host, self._board):
            os.set_blocking(fd, False)
        self._threads = [threading.Thread(target=self._supervise, name=f"ptyboard-{self.folder.name}", daemon=True),
                         threading.Thread(target=self._relay_input, daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Power off: as abrupt as pulling the plug, so nothing on the board runs after it."""
        self._stopping.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout)
        for thread in self._threads:
            thread.join(timeout)

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait until the board is off for good; its last exit status (None if still on)."""
        if self._threads:
            self._threads[0].join(timeout)
        return self.returncode

    @property
    def running(self) -> bool:
        return bool(self._threads) and self._threads[0].is_alive()

    def console(self) -> str:
        """Everything the board printed since power-on (across reboots)."""
        return self.console_log.read_text(errors="replace")

    # ---- threads ---------------------------------------------------------------------
    def _supervise(self) -> None:
        """Start micropython, and again after each reboot; relay its output to the port."""
        with open(self.console_log, "ab") as log:
            try:
                while not self._stopping.is_set():
                    self.boots += 1
                    # Started from this thread, which lives as long as the board: PDEATHSIG
                    # follows the thread that started the process.
                    self._proc = subprocess.Popen(
                        self.command, cwd=self.folder, env=self.env, stdin=self._board_side,
                        stdout=self._board_side, stderr=self._board_side, start_new_session=True,
                        preexec_fn=_become_terminal_owner)
                    while self._proc.poll() is None:
                        self._relay_output(log)
                    self._relay_output(log)  # what it printed last
                    status = self._proc.returncode
                    if status != REBOOT_STATUS or self._stopping.is_set():
                        self.returncode = status
                        log.write(f"\n## exited with status {status}\n".encode())
                        return
                    log.write(b"\n## reboot\n")
            finally:
                self._stopping.set()
                self._threads[1].join()  # no relay may touch a descriptor once it is closed
                for fd in (self._board_side, self._board, self._host_side, self._host):
                    os.close(fd)

    def _relay_output(self, log) -> None:
        if not select.select([self._board], [], [], 0.1)[0]:
            return
        try:
            data = os.read(self._board, 4096)
        except (BlockingIOError, OSError):
            return
        log.write(data.replace(b"\r\n", b"\n"))
        log.flush()
        _send(self._host, data)

    def _relay_input(self) -> None:
        """What a tool writes to the port goes to the board's terminal (Ctrl-C becomes SIGINT)."""
        while not self._stopping.is_set():
            if select.select([self._host], [], [], 0.1)[0]:
                try:
                    data = os.read(self._host, 4096)
                except (BlockingIOError, OSError):
                    continue
                self._await_start()
                self._forward(data)

    def _await_start(self, timeout: float = 10.0) -> None:
        """Hold input until the interpreter is up. It starts with SIGINT ignored and stops ignoring
        it when it runs code: a Ctrl-C before that would be lost, and what follows it (mpremote's
        Ctrl-A) left unread behind a running main.py."""
        deadline = time.monotonic() + timeout
        while not self._stopping.is_set() and time.monotonic() < deadline:
            proc = self._proc
            if proc is not None and proc.poll() is None:  # else: not started yet, or rebooting
                if _sigint(proc.pid, "SigIgn") is False:
                    return
            time.sleep(0.01)

    def _forward(self, data: bytes) -> None:
        """Input to the board's terminal, each Ctrl-C at a moment the board can take it."""
        *before_interrupts, rest = data.split(INTERRUPT)
        for chunk in before_interrupts:
            _send(self._board, chunk)
            stopped = self._stop_where_interruptible()
            try:
                _send(self._board, INTERRUPT)
                if stopped is not None and self._ctrl_c_signals():
                    _await_sigint(stopped)
            finally:
                if stopped is not None:
                    _signal(stopped, signal.SIGCONT)
        _send(self._board, rest)

    def _stop_where_interruptible(self, patience_s: float = 1.0) -> int | None:
        """Stop the board's process where a Ctrl-C is safe; returns its pid, for the caller to
        continue it once the Ctrl-C is in, or None if none runs.

        The unix port makes SIGINT a pending KeyboardInterrupt, raised at the interpreter's next
        check. Raised from its own C code while it holds its qstr lock (seen while it compiles a
        module being imported), it leaves that lock taken and the board hangs at its next parse:
        a deploy then cannot enter the raw REPL, mostly on a loaded machine, where a board is
        still importing its app when the deploy interrupts it. A real board has no such lock.
        A SIGINT that cuts a wait short (WAITS) is raised in the wait or at the next bytecode
        check after it. So the process is stopped until it sleeps in one, or the REPL reads
        (Ctrl-C is a byte then); one that does not wait for patience_s (a busy loop) is
        interrupted wherever it is, as before."""
        deadline = time.monotonic() + patience_s
        while (proc := self._proc) is not None and proc.poll() is None:
            if not _signal(proc.pid, signal.SIGSTOP):
                return None
            if _stopped(proc.pid) and (not self._ctrl_c_signals() or (
                    _waiting(proc.pid) and _sigint(proc.pid, "SigCgt"))):
                return proc.pid
            if time.monotonic() >= deadline:
                return proc.pid
            _signal(proc.pid, signal.SIGCONT)
            time.sleep(0.002)
        return None


    def _ctrl_c_signals(self) -> bool:
        """Whether the board's terminal turns Ctrl-C into SIGINT (not while the REPL reads)."""
        return bool(termios.tcgetattr(self._board_side)[3] & termios.ISIG)


def _signal(pid: int, signum: int) -> bool:
    try:
        os.kill(pid, signum)
        return True
    except ProcessLookupError:  # it ended (a reboot): nothing to stop or continue
        return False


def _sigint(pid: int, field: str) -> bool | None:
    """Whether SIGINT is in the process's signal set `field` (SigIgn, SigCgt of /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            mask = next(int(line.split()[1], 16) for line in status if line.startswith(field + ":"))
    except (OSError, StopIteration):
        return None
    return bool(mask & (1 << (signal.SIGINT - 1)))


def _await_sigint(pid: int, timeout: float = 1.0) -> None:
    """Wait until the stopped process has the SIGINT of a Ctrl-C pending. The terminal makes it in
    a kernel worker, a moment after the write: continued before that, the process may finish its
    wait and get the signal mid-work (seen under load)."""
    _wait_for(pid, lambda: _sigint(pid, "ShdPnd") or _sigint(pid, "SigPnd"), timeout)


def _state(pid: int) -> str:
    """R running, S sleeping, T stopped, Z ended... ("" when gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            return stat_file.read().rpartition(")")[2].split()[0]
    except OSError:
        return ""


def _waiting(pid: int) -> bool:
    """Whether the stopped process is in one of WAITS (a read of a regular file never waits)."""
    try:
        with open(f"/proc/{pid}/syscall") as syscall:
            number, *args = syscall.read().split() or ["-1"]
    except OSError:
        return False
    if not number.isdigit() or int(number) not in WAITS:
        return False  # outside any system call ("-1", "running"), or in another one
    try:  # the first argument of a read or a receive is its file descriptor
        return not stat.S_ISREG(os.stat(f"/proc/{pid}/fd/{int(args[0], 16)}").st_mode)
    except (OSError, ValueError, IndexError):
        return True  # a time, a list to poll: no open file


def _stopped(pid: int, timeout: float = 0.5) -> bool:
    """Wait until SIGSTOP took effect (when the process next enters the kernel)."""
    return _wait_for(pid, lambda: _state(pid) == "T", timeout)


def _wait_for(pid: int, ready, timeout: float) -> bool:
    """Poll /proc until ready() (True), or until the process ends or timeout passes (False)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if _state(pid) in ("", "Z", "X") or time.monotonic() >= deadline:
            return False
        time.sleep(0.001)
    return True


def _send(fd: int, data: bytes, patience_s: float = 1.0) -> None:
    """Write data to a pty unless its reader stays away for patience_s: then the rest is lost,
    as a serial line loses what nobody reads."""
    deadline = time.monotonic() + patience_s
    while data and time.monotonic() < deadline:
        if select.select([], [fd], [], 0.1)[1]:
            try:
                data = data[os.write(fd, data):]
            except BlockingIOError:
                continue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iotlink_tools.vboard.ptyboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="the board's flash (created if missing)")
    parser.add_argument("--wifi", help="script for the fake Wi-Fi (vboard/fakes/network.py), e.g. never")
    args = parser.parse_args(argv)
    board = PtyBoard(args.folder, wifi=args.wifi).start()
    print(f"virtual board on {board.port} (flash {board.folder}); Ctrl-C powers it off", flush=True)
    try:
        board.wait()
    except KeyboardInterrupt:
        pass
    finally:
        board.stop()
    return board.returncode or 0


if __name__ == "__main__":
    raise SystemExit(main())
