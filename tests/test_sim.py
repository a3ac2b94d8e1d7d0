"""Virtual boards (vboard.py) and `iotlink sim`: flash layout, boot sequence, reboots, a fleet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iotlink_tools import REPO
from iotlink_tools.sim import parse_pins, read_tokens
from iotlink_tools.vboard import Board, board_env, micropython_command, prepare_flash

CONFIG = {"platform": "thingsboard", "server": "http://127.0.0.1:1", "token": "T", "pins": {"23": 23}}


def wait_until(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent has not collected it yet.
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"


def test_prepare_flash_installs_the_firmware_and_config(tmp_path):
    flash = tmp_path / "board"
    (flash / "lib" / "iotlink").mkdir(parents=True)
    (flash / "lib" / "iotlink" / "stale.py").write_text("old = 1\n")
    (flash / "queue.bin").write_bytes(b"kept")

    prepare_flash(flash, CONFIG)

    assert (flash / "main.py").read_bytes() == (REPO / "main.py").read_bytes()
    if (REPO / "boot.py").exists():
        assert (flash / "boot.py").read_bytes() == (REPO / "boot.py").read_bytes()
    modules = sorted(p.name for p in (REPO / "lib" / "iotlink").glob("*.py"))
    assert sorted(p.name for p in (flash / "lib" / "iotlink").iterdir()) == modules
    for name in modules:
        assert (flash / "lib" / "iotlink" / name).read_bytes() == (REPO / "lib" / "iotlink" / name).read_bytes()
    assert json.loads((flash / "config.json").read_text()) == CONFIG
    assert (flash / "queue.bin").read_bytes() == b"kept"  # the board's own files survive a reflash

    (flash / "config.json").write_text('{"token": "saved by the board"}')
    prepare_flash(flash, None)
    assert json.loads((flash / "config.json").read_text()) == {"token": "saved by the board"}


def test_board_env_puts_the_fakes_first_and_the_flash_lib_before_frozen(tmp_path):
    env = board_env(tmp_path / "pins.jsonl", "fail:2", {"EXTRA": "1"})
    assert env["MICROPYPATH"].split(":") == [str(REPO / "tests" / "fakes"), "lib", ".frozen"]
    assert env["IOTLINK_PIN_LOG"] == str(tmp_path / "pins.jsonl")
    assert env["IOTLINK_WIFI"] == "fail:2" and env["EXTRA"] == "1"
    assert "IOTLINK_WIFI" not in board_env()
    # The flash's own lib/ is what the board imports.
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "probe.py").write_text("WHERE = 'flash'\n")
    out = subprocess.run(micropython_command("64K") + ["-c", "import probe; print(probe.WHERE)"],
                         cwd=tmp_path, env=board_env(), capture_output=True, text=True, timeout=10)
    assert out.stdout.strip() == "flash", out.stderr


def test_board_runs_boot_then_main_in_one_namespace(tmp_path):
    flash = prepare_flash(tmp_path / "b", CONFIG)
    (flash / "boot.py").write_text("booted_by = 'boot.py'\nprint('boot ran')\n")
    (flash / "main.py").write_text("print('main sees', booted_by)\n")
    board = Board(flash).start()
    assert board.wait(10) == 0
    assert board.console().splitlines() == ["boot ran", "main sees boot.py", "## exited with status 0"]


def test_an_exception_in_boot_py_is_printed_and_main_still_runs(tmp_path):
    flash = prepare_flash(tmp_path / "b", CONFIG)
    (flash / "boot.py").write_text("raise ValueError('no wifi config')\n")
    (flash / "main.py").write_text("print('main ran')\n")
    board = Board(flash).start()
    assert board.wait(10) == 0
    console = board.console()
    assert "ValueError: no wifi config" in console
    assert console.index("ValueError") < console.index("main ran")


def test_board_restarts_on_exit_75_and_keeps_its_flash(tmp_path):
    flash = prepare_flash(tmp_path / "b", CONFIG)
    (flash / "main.py").write_text(
        "import os, sys\n"
        "try:\n    n = int(open('boots').read())\nexcept OSError:\n    n = 0\n"
        "open('boots', 'w').write(str(n + 1))\n"
        "with open(os.getenv('IOTLINK_PIN_LOG'), 'a') as f:\n"
        "    f.write('{\"pin\": 23, \"value\": %d}\\n' % (n % 2))\n"
        "print('boot', n)\n"
        "sys.exit(75 if n < 2 else 3)\n")
    lines = []
    board = Board(flash, "b1", on_line=lambda b, line: lines.append((b.name, line))).start()
    assert board.wait(15) == 3
    assert board.boots == 3
    assert lines == [("b1", "boot 0"), ("b1", "## reboot"), ("b1", "boot 1"), ("b1", "## reboot"),
                     ("b1", "boot 2"), ("b1", "## exited with status 3")]
    assert (flash / "boots").read_text() == "3"
    assert board.pin_writes() == [{"pin": 23, "value": 0}, {"pin": 23, "value": 1}, {"pin": 23, "value": 0}]
    assert board.pins() == {23: 0}  # only what the last boot wrote


def test_machine_reset_reboots_the_board(tmp_path):
    if not (REPO / "tests" / "fakes" / "machine.py").exists():
        pytest.skip("the fake machine module has not landed yet")
    flash = prepare_flash(tmp_path / "b", CONFIG)
    (flash / "main.py").write_text(
        "import machine, os\n"
        "if 'rebooted' in os.listdir():\n    print('second life')\n"
        "else:\n    open('rebooted', 'w').close()\n    machine.reset()\n")
    board = Board(flash).start()
    assert board.wait(15) == 0
    assert board.boots == 2
    assert "second life" in board.console()


def test_stop_ends_a_running_board(tmp_path):
    flash = prepare_flash(tmp_path / "b", CONFIG)
    (flash / "main.py").write_text("import time\nprint('up')\nwhile True:\n    time.sleep(1)\n")
    board = Board(flash).start()
    wait_until(lambda: "up" in board.console(), what="the board's first line")
    pid = board.pid
    assert pid and alive(pid)
    board.stop()
    assert not board.running
    assert not alive(pid)


def test_parse_pins():
    assert parse_pins("23=23,led=LED, 5=5") == {"23": 23, "led": "LED", "5": 5}
    assert parse_pins("") == {}
    with pytest.raises(Exception, match="NAME=ID"):
        parse_pins("23")


def test_read_tokens(tmp_path):
    fleet = tmp_path / "fleet.txt"
    fleet.write_text("# my boards\nAAA\n\nkitchen, BBB\nCCC\n")
    assert read_tokens(fleet) == [("sim-1", "AAA"), ("kitchen", "BBB"), ("sim-3", "CCC")]
    fleet.write_text("a,AAA\na,BBB\n")
    with pytest.raises(SystemExit, match="unique"):
        read_tokens(fleet)
