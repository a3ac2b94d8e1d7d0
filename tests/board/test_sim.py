"""Virtual boards (iotlink_tools.vboard) and `iotlink sim`: flash layout, boot sequence, reboots, a fleet."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from support import IOTLINK, REPO, alive, children, ctrl_c_works, wait_until

from iotlink_tools.commands.sim import create_devices, parse_pins, read_tokens
from iotlink_tools.devserver.tb_device import parse_telemetry
from iotlink_tools.errors import ToolError
from iotlink_tools.rest import RestError
from iotlink_tools.vboard import FAKES, Board, board_env, micropython_command, prepare_flash

CONFIG = {"platform": "thingsboard", "server": "http://127.0.0.1:1", "token": "T", "pins": {"23": 23}}


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
    assert env["MICROPYPATH"].split(":") == [str(FAKES), "lib", ".frozen"]
    assert env["IOTLINK_PIN_LOG"] == str(tmp_path / "pins.jsonl")
    assert env["IOTLINK_WIFI"] == "fail:2" and env["EXTRA"] == "1"
    assert "IOTLINK_WIFI" not in board_env()
    # The flash's own lib/ is what the board imports.
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "probe.py").write_text("WHERE = 'flash'\n")
    out = subprocess.run(micropython_command("64K") + ["-c", "import probe; print(probe.WHERE)"],
                         cwd=tmp_path, env=board_env(), capture_output=True, text=True, timeout=10)
    assert out.stdout.strip() == "flash", out.stderr


def run_board(tmp_path, boot: str, main: str) -> str:
    """Flash a board with these boot.py and main.py, run it to its end; its console."""
    flash = prepare_flash(tmp_path / "b", CONFIG)
    (flash / "boot.py").write_text(boot)
    (flash / "main.py").write_text(main)
    board = Board(flash).start()
    assert board.wait(10) == 0
    return board.console()


def test_board_runs_boot_then_main_in_one_namespace(tmp_path):
    console = run_board(tmp_path, "booted_by = 'boot.py'\nprint('boot ran')\n", "print('main sees', booted_by)\n")
    assert console.splitlines() == ["boot ran", "main sees boot.py", "## exited with status 0"]


def test_an_exception_in_boot_py_is_printed_and_main_still_runs(tmp_path):
    console = run_board(tmp_path, "raise ValueError('no wifi config')\n", "print('main ran')\n")
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
    with pytest.raises(ToolError, match="unique"):
        read_tokens(fleet)


def test_create_devices_through_the_rest_api_and_reuse_them(server):
    server.add_device("sim-2", "EXISTING_TOKEN")
    boards = create_devices(server.url, "tenant@thingsboard.org", "tenant", ["sim-1", "sim-2"])
    assert boards == [("sim-1", server.device("sim-1")["token"]), ("sim-2", "EXISTING_TOKEN")]
    assert [e.json()["name"] for e in server.requests_to("/api/device", "POST")] == ["sim-1"]
    assert create_devices(server.url, "tenant@thingsboard.org", "tenant", ["sim-1", "sim-2"]) == boards
    assert [d["name"] for d in server.devices()] == ["sim-1", "sim-2"]  # nothing created twice
    with pytest.raises(RestError, match="401"):
        create_devices(server.url, "tenant@thingsboard.org", "wrong", ["sim-3"])


@pytest.mark.slow
def test_sim_runs_a_fleet_that_reports_to_one_server(server, tmp_path):
    devices = [server.add_device(f"dev-{i}", f"TOKEN_{i}") for i in range(4)]
    fleet = tmp_path / "fleet.txt"
    fleet.write_text("".join(f"board-{i},{d['token']}\n" for i, d in enumerate(devices)))
    console = tmp_path / "console.txt"
    with open(console, "w") as out:
        sim = subprocess.Popen([IOTLINK, "sim", "--server", server.url, "--tokens", str(fleet), "--count", "3",
                                "--interval", "1", "--pins", "23=23", "--dir", str(tmp_path / "boards")],
                               stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"},
                               preexec_fn=ctrl_c_works)
    try:
        def all_reported():
            return all("uptime_s" in server.latest_telemetry(d["id"]) for d in devices[:3])
        wait_until(all_reported, 20, "three boards' telemetry")
        boards = children(sim.pid)
        assert len(boards) == 3
        sim.send_signal(signal.SIGINT)
        assert sim.wait(15) == 130
        for pid in boards:
            wait_until(lambda: not alive(pid), 5, f"board process {pid} to end")
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait()
    for i, dev in enumerate(devices[:3]):
        sent = [values for e in server.requests_to(f"/api/v1/{dev['token']}/telemetry", "POST")
                for _, values in parse_telemetry(e.json(), 0)]  # flat, {ts, values} or a batch
        loop = [v for v in sent if "uptime_s" in v]  # not the OTA reports (current_fw_*)
        assert loop and {"uptime_s", "mem_free"} <= loop[0].keys()
        assert server.client_attributes(dev["id"])["gpio_pins"] == ["23"]
        assert json.loads((tmp_path / "boards" / f"board-{i}" / "config.json").read_text())["token"] == dev["token"]
    assert server.latest_telemetry(devices[3]["id"]) == {}  # --count 3: the fourth token is not used
    lines = console.read_text().splitlines()
    for i in range(3):
        assert any(line.startswith(f"board-{i} | ") for line in lines), lines
