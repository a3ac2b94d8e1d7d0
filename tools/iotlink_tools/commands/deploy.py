"""Copy the iotlink app and a board's config.json onto a board through its serial port (mpremote).

  iotlink deploy [-p PORT] [--config board.json [--ca ca.pem]] [--py] [--reset]

-p auto (the default) picks the one board on USB.

The board is driven like `mpremote resume`: Ctrl-C stops a running app, then the raw REPL, never a
soft reset (so a virtual board on a pseudo-terminal works too). Ctrl-C goes again while no prompt
comes (an app that catches one, a board slow to stop); every wait is bounded, so a port where
nothing answers fails within seconds. Each file is hashed on the board (hashlib there) and written
only when it differs, then hashed again to verify the write. Modules left from an older app are
removed.

The library goes as .mpy bytecode, compiled here by mpy-cross, after the board's MicroPython has
shown it loads that .mpy version (sys.implementation._mpy); a board that does not is refused
before anything is copied: update its MicroPython, or copy the source with --py.

A config is checked by the firmware's own `iotlink.config_once.check`, run in the MicroPython unix
port on this computer before the board is touched (an https server without a CA certificate is
refused there), and its secrets (token, Wi-Fi password, provisioning secret) never appear in any
output. --ca puts the server's CA certificate on the board as ca.der (DER, converted here) and
names it in the config's "ca".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport

from .. import certs, firmware, ui
from ..errors import ToolError
from ..options import add_serial_port
from ..secret import masked, redact
from ..serialports import resolve
from ..vboard import micropython_command

CONFIG = "config.json"
CHUNK = 1024  # bytes per write command: fewer round trips than mpremote's 256, small for any board
READ_TIMEOUT_S = 5  # a board that stops answering fails the step instead of hanging it
INTERRUPTS = 3  # Ctrl-C this often at most, each followed by a wait for the prompt
PROMPT_WAIT_S = 2.0
RAW_REPL_WAIT_S = 3.0  # from the prompt to the raw REPL's banner
POLL_S = 0.05  # serial read timeout while waiting, so the waits above are kept to
FRIENDLY_PROMPT = b">>> "
# What the board says about its MicroPython: version, and the .mpy version it loads (bits 0-7 of
# sys.implementation._mpy; the sub-version in bits 8-9 matters only for native code, which the
# library has none of). No _mpy: the port cannot import .mpy at all.
BOARD_INFO = "import sys\nprint('%d.%d.%d' % sys.implementation.version[:3], getattr(sys.implementation, '_mpy', 0))"
CHECK_CONFIG = """import json, sys
from iotlink import config_once
from iotlink.errors import ConfigError
try:
    config_once.check(json.loads(sys.stdin.read()))
except ConfigError as e:
    print(e)
"""
Progress = Callable[[str], None]


class BoardError(ToolError):
    """The board could not be reached or refused what it was sent."""


@contextmanager
def raw_repl(port: str) -> Iterator[SerialTransport]:
    """The board's raw REPL, entered without a soft reset (mpremote's `resume`)."""
    try:
        transport = SerialTransport(port, timeout=READ_TIMEOUT_S)
    except (TransportError, OSError) as exc:
        raise BoardError(f"cannot open {port}: {exc}") from None
    try:
        _enter_raw_repl(transport, port)
        yield transport
    except (TransportError, OSError) as exc:
        raise BoardError(f"{port}: {exc}") from None
    finally:
        try:
            transport.close()
        except OSError:
            pass  # the board went away (reset, bootloader)


def _enter_raw_repl(board: SerialTransport, port: str) -> None:
    """Stop what runs and enter the raw REPL, each step waited for within a bound."""
    board.serial.timeout = POLL_S
    try:
        for _ in range(INTERRUPTS):
            # Ctrl-C stops an app, Ctrl-B leaves a raw REPL an earlier session left open: either
            # way the board ends at its friendly prompt.
            board.serial.write(b"\r\x03\x02")
            said = board.read_until(1, FRIENDLY_PROMPT, timeout=None, timeout_overall=PROMPT_WAIT_S)
            if said.endswith(FRIENDLY_PROMPT):
                break
        else:
            raise BoardError(f"{port}: no MicroPython prompt after {INTERRUPTS} Ctrl-C, "
                             f"{PROMPT_WAIT_S:g} s each (is a MicroPython board on this port?)")
        try:
            board.enter_raw_repl(soft_reset=False, timeout_overall=RAW_REPL_WAIT_S)
        except TransportError:
            raise BoardError(f"{port}: the board answers but did not enter the raw REPL "
                             f"within {RAW_REPL_WAIT_S:g} s") from None
    finally:
        board.serial.timeout = READ_TIMEOUT_S


def run_detached(port: str, code: str) -> None:
    """Start code on the board without waiting for it: machine.reset(), machine.bootloader()."""
    with raw_repl(port) as board:
        board.exec_raw_no_follow(f"import time, machine; time.sleep_ms(100); {code}")


def reset(port: str) -> None:
    """Hard-reset the board: it runs boot.py and main.py afresh."""
    run_detached(port, "machine.reset()")


def _ensure_folders(board: SerialTransport, paths: list[str]) -> None:
    """Create the folders these files go in, parents first."""
    folders = {parent for path in paths for parent in Path(path).parents if parent != Path(".")}
    for folder in sorted(folders, key=lambda f: len(f.parts)):
        if not board.fs_isdir(folder.as_posix()):
            board.fs_mkdir(folder.as_posix())


def _put(board: SerialTransport, path: str, data: bytes) -> str:
    """Write one file unless the board has it already; verify by hash. "written" or "unchanged"."""
    want = hashlib.sha256(data).digest()
    if board.fs_exists(path) and board.fs_hashfile(path, "sha256") == want:
        return "unchanged"
    board.fs_writefile(path, data, chunk_size=CHUNK)
    if board.fs_hashfile(path, "sha256") != want:
        raise BoardError(f"{path}: the board's copy does not match after writing (SHA-256 differs)")
    return "written"


def check_config(config: dict) -> None:
    """A ToolError unless the firmware accepts config: its own check, in the MicroPython unix port
    here. The config goes in on stdin, never on a command line a process list shows."""
    env = {"MICROPYPATH": str(firmware.lib_dir())}
    done = subprocess.run(micropython_command() + ["-c", CHECK_CONFIG], input=json.dumps(config), env=env,
                          capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise ToolError(f"the firmware's config check did not run: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    if done.stdout.strip():
        raise ToolError(f"the firmware refuses this config: {redact(done.stdout.strip(), config)}")


def board_config(config: dict, ca: bytes | None = None) -> dict:
    """config as the board gets it: with a CA certificate, naming the file deploy puts beside it."""
    return config if ca is None else {**config, "ca": certs.ON_BOARD}


def _check_bytecode(board: SerialTransport, port: str) -> None:
    """A BoardError unless the board's MicroPython loads the .mpy version mpy-cross writes."""
    version, abi = board.exec(BOARD_INFO).decode().split()
    loads = int(abi) & 0xFF
    writes = firmware.mpy_version()
    if loads != writes[0]:
        what = f"loads .mpy v{loads}" if loads else "cannot import .mpy files"
        raise BoardError(f"{port}: MicroPython {version} on the board {what}, this tool compiles .mpy "
                         f"v{writes[0]}.{writes[1]}: update the board's MicroPython, or copy the source with --py")


def deploy(port: str, config: dict | None = None, mpy: bool = True, ca: bytes | None = None,
           progress: Progress = lambda line: None) -> list[tuple[str, int, str]]:
    """Install the app (and config, with the CA certificate ca as DER, if given) on the board at
    port; returns (path, size, action). Nothing is copied unless the config passes the firmware's
    check and, for .mpy, the board's MicroPython loads them."""
    if ca is not None and config is None:
        raise ToolError("a CA certificate goes with a config that names it: give --config too")
    if config is not None:
        config = board_config(config, ca)
        check_config(config)
    files = firmware.contents(mpy).items()
    done = []
    with raw_repl(port) as board:
        if mpy:
            _check_bytecode(board, port)
        keep = {path for path, _ in files}
        _ensure_folders(board, sorted(keep))
        for entry in board.fs_listdir(firmware.PACKAGE.as_posix()):
            path = (firmware.PACKAGE / entry.name).as_posix()
            if path not in keep and not entry.st_mode & 0x4000:
                board.fs_rmfile(path)  # a stale .py would shadow its new .mpy
                progress(f"{path}: removed")
        for path, data in files:
            action = _put(board, path, data)
            done.append((path, len(data), action))
            progress(f"{path}: {action}")
        if config is not None:
            ca_file = [(certs.ON_BOARD, ca)] if ca is not None else []  # before the config that names it
            for path, data in ca_file + [(CONFIG, (json.dumps(config, indent=2) + "\n").encode())]:
                done.append((path, len(data), _put(board, path, data)))
                progress(f"{path}: {done[-1][2]}")
    return done


def load_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text())
    except OSError as exc:
        raise BoardError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise BoardError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise BoardError(f"{path} must hold a JSON object")
    return config


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_serial_port(p)
    p.add_argument("--config", type=Path, help="this board's config.json (DESIGN section 4); "
                                               "without it the board keeps its own")
    p.add_argument("--ca", type=Path, metavar="FILE",
                   help=f"the https server's CA certificate (PEM or DER), put on the board as {certs.ON_BOARD} "
                        "and named in the config (with --config)")
    p.add_argument("--py", action="store_true", help="copy the library as .py source (default: .mpy bytecode, "
                                                     "once the board's MicroPython shows it loads them)")
    p.add_argument("--reset", action="store_true", help="reset the board afterwards, so it runs the new app")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config) if args.config else None
    ca = certs.read_ca(args.ca) if args.ca else None
    port = resolve(args.port)
    files = deploy(port, config, not args.py, ca)
    if args.reset:
        reset(port)
    for path, size, action in files:
        ui.info(f"{size:7d}  {path:28s} {action}")
    if config is not None:
        ui.info(f"config: {json.dumps(masked(board_config(config, ca)))}")
    written = sum(1 for _, _, action in files if action == "written")
    print(f"{port}: {written} written, {len(files) - written} unchanged, every file verified by SHA-256"
          + ("; reset" if args.reset else ""))
    return 0
