"""Entering the raw REPL: boards slow or unwilling to stop, interrupted mid-work again and again,
and ports where nothing (or not MicroPython) answers."""

import os
import pty
import re
import threading
import time
import tty
from contextlib import contextmanager

import pytest

from iotlink_tools import cli, firmware
from iotlink_tools.commands import deploy
from iotlink_tools.vboard import ptyboard

# Works in bytecode a few ms, then sleeps (a system call), like an app's loop. A Ctrl-C that
# arrives while it works is raised at once, in the work (lines 5-6). The unix port can hang for
# good on a KeyboardInterrupt pending while it compiles an import (ptyboard), so a virtual board
# passes Ctrl-C on only while the app waits: it is raised in the sleep or, if the sleep finishes
# first, at the loop's top; never in the work.
BUSY_APP = """\
import time
print("busy app running")
while True:
    turn = 1
    for _ in range(100000):
        pass
    time.sleep_ms(2)
"""
LOOP_TOP, SLEEP = 4, 7

# Never makes a system call: it gets its Ctrl-C all the same.
SPINNING_APP = """\
print("spinning app running")
while True:
    pass
"""

# Catches the first Ctrl-C (say, to tidy up) and goes on running; only a second one stops it.
STUBBORN_APP = """\
import time
try:
    print("stubborn app running")
    while True:
        time.sleep_ms(10)
except KeyboardInterrupt:
    print("tidied up after one Ctrl-C, still running")
while True:
    time.sleep_ms(10)
"""


def powered_on_with(pty_board, tmp_path, name, main_py):
    """A virtual board whose flash holds only this main.py when it powers on."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "main.py").write_text(main_py)
    return pty_board(name)


def wait_for_console(board, text, count, timeout=10.0):
    deadline = time.monotonic() + timeout
    while board.console().count(text) < count:
        assert time.monotonic() < deadline, board.console()
        time.sleep(0.02)


def interrupted_lines(console):
    """The main.py line each KeyboardInterrupt on the console was raised at."""
    lines = re.findall(r'File "main\.py", line (\d+), in <module>\n(?:  .*\n)*KeyboardInterrupt', console)
    return [int(line) for line in lines]


@pytest.mark.slow
def test_a_busy_app_is_interrupted_only_while_it_waits(pty_board, tmp_path):
    board = powered_on_with(pty_board, tmp_path, "busy", BUSY_APP)
    for boot in range(1, 7):
        wait_for_console(board, "busy app running", boot)
        with deploy.raw_repl(board.port) as repl:
            assert repl.exec("print(6 * 7)") == b"42\n"
        deploy.reset(board.port)  # main.py again
    wait_for_console(board, "busy app running", 7)
    lines = interrupted_lines(board.console())
    assert len(lines) == 6 and set(lines) <= {LOOP_TOP, SLEEP}, lines
    assert board.boots == 7


# Works for about 200 ms between waits of 20 ms: a Ctrl-C raised after the wait it was meant for
# ends is raised in the work (line 6).
SLOW_WORK_APP = BUSY_APP.replace("100000", "4000000").replace("sleep_ms(2)", "sleep_ms(20)")


def test_a_ctrl_c_the_terminal_signals_late_still_lands_in_the_wait(pty_board, tmp_path, monkeypatch):
    """The terminal turns Ctrl-C into SIGINT in a kernel worker, a moment after the write (more
    under load). Here it comes 100 ms late: the board must stay stopped in its wait until then."""
    send, late = ptyboard._send, []

    def send_first_ctrl_c_late(fd, data, patience_s=1.0):
        if data == ptyboard.INTERRUPT and not late:
            late.append(threading.Timer(0.1, send, (fd, data)))
            late[0].start()
        else:
            send(fd, data, patience_s)

    monkeypatch.setattr(ptyboard, "_send", send_first_ctrl_c_late)
    board = powered_on_with(pty_board, tmp_path, "slow", SLOW_WORK_APP)
    wait_for_console(board, "busy app running", 1)
    with deploy.raw_repl(board.port) as repl:
        assert repl.exec("print(6 * 7)") == b"42\n"
    late[0].join()
    assert interrupted_lines(board.console()) in ([LOOP_TOP], [SLEEP])


def test_an_app_that_never_waits_is_interrupted_all_the_same(pty_board, tmp_path):
    board = powered_on_with(pty_board, tmp_path, "spinning", SPINNING_APP)
    wait_for_console(board, "spinning app running", 1)
    with deploy.raw_repl(board.port) as repl:
        assert repl.exec("print(6 * 7)") == b"42\n"
    assert interrupted_lines(board.console()) == [3]


@pytest.mark.slow
def test_an_app_that_catches_the_first_ctrl_c_is_still_deployed(pty_board, tmp_path):
    board = powered_on_with(pty_board, tmp_path, "stubborn", STUBBORN_APP)
    wait_for_console(board, "stubborn app running", 1)
    files = deploy.deploy(board.port, None)
    assert "tidied up after one Ctrl-C, still running" in board.console()
    assert (board.folder / "main.py").read_bytes() == firmware.contents(mpy=True)["main.py"]
    assert {action for _, _, action in files} == {"written"}


@pytest.fixture
def quick(monkeypatch):
    """Short waits, so a port that never answers fails fast here."""
    monkeypatch.setattr(deploy, "PROMPT_WAIT_S", 0.3)
    monkeypatch.setattr(deploy, "RAW_REPL_WAIT_S", 0.3)


@contextmanager
def fake_device(answer=lambda byte: None):
    """A serial port with no board on it, only a device that says answer(byte) to each byte it
    reads. Yields (the port's path, every byte sent to it)."""
    device, port = pty.openpty()
    tty.setraw(port)
    received = bytearray()

    def serve():
        while True:
            try:
                data = os.read(device, 1024)
            except OSError:  # EIO: the port is closed
                return
            received.extend(data)
            for byte in data:
                if reply := answer(byte):
                    os.write(device, reply)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        yield os.ttyname(port), received
    finally:
        os.close(port)
        server.join(5)
        os.close(device)


def test_nothing_answering_is_a_clear_error(quick, capsys):
    with fake_device() as (path, received):
        assert cli.main(["deploy", "-p", path]) == 1
    assert f"iotlink: error: {path}: no MicroPython prompt after 3 Ctrl-C, 0.3 s each " \
           "(is a MicroPython board on this port?)" in capsys.readouterr().err
    assert bytes(received) == b"\r\x03\x02" * 3  # three tries, then nothing else was sent


def test_a_prompt_without_a_raw_repl_is_a_clear_error(quick):
    with fake_device(lambda byte: b"\r\n>>> " if byte == 3 else None) as (path, received):
        with pytest.raises(deploy.BoardError) as caught:
            deploy.deploy(path, None)
    assert str(caught.value) == f"{path}: the board answers but did not enter the raw REPL within 0.3 s"
    assert bytes(received).endswith(b"\r\x01")  # it was asked for the raw REPL
    assert b"\x04" not in received  # and nothing was run
