"""iotlink deploy onto virtual boards on pseudo-terminals: files on their flash, the board's own
checks, the app running afterwards, no secret in any output."""

import json

import pytest

from iotlink_tools import cli
from iotlink_tools.commands import deploy
from iotlink_tools.vboard import prepare_flash

SECRETS = {"token": "DEPLOY_TOKEN_123", "wifi": {"ssid": "lab", "password": "wifi-pass-456"}}


def tree(folder):
    """relative path -> bytes of every file under folder."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def board_config(server, **extra):
    return {"platform": "thingsboard", "server": server.url, **SECRETS, "interval_s": 1, **extra}


def test_deploy_to_empty_board_matches_firmware_install(server, pty_board, tmp_path):
    board = pty_board("b1")
    config = board_config(server)
    files = deploy.deploy(board.port, config)
    reference = prepare_flash(tmp_path / "reference", config)
    assert tree(board.folder) == tree(reference)
    assert {path for path, _, action in files if action == "written"} == set(tree(reference))
    assert board.running and board.boots == 1  # resumed: no soft reset, no reboot


def test_second_deploy_writes_only_what_changed(server, pty_board):
    board = pty_board("b1")
    deploy.deploy(board.port, board_config(server))
    before = {p: p.stat().st_mtime_ns for p in board.folder.rglob("*.py")}
    damaged = board.folder / "lib" / "iotlink" / "http.py"
    damaged.write_bytes(damaged.read_bytes()[:-10])
    stale = board.folder / "lib" / "iotlink" / "removed_module.py"
    stale.write_text("x = 1\n")
    files = deploy.deploy(board.port, board_config(server, interval_s=5))
    actions = {path: action for path, _, action in files}
    assert actions.pop("lib/iotlink/http.py") == "written"
    assert actions.pop("config.json") == "written"
    assert set(actions.values()) == {"unchanged"}
    assert not stale.exists()
    assert json.loads((board.folder / "config.json").read_text())["interval_s"] == 5
    untouched = [p for p in before if p != damaged and p.exists()]
    assert all(p.stat().st_mtime_ns == before[p] for p in untouched)


def test_config_refused_by_the_firmware_is_not_written(server, pty_board):
    board = pty_board("b1")
    with pytest.raises(deploy.BoardError) as caught:
        deploy.deploy(board.port, {"server": "ftp://example.com", "token": "SECRET_TOKEN_X"})
    assert "'server' must start with http:// or https://" in str(caught.value)
    assert "SECRET_TOKEN_X" not in str(caught.value)
    assert not (board.folder / "config.json").exists()
    assert (board.folder / "main.py").exists()  # the app went on; only the config was refused


def test_cli_deploys_resets_and_the_app_reports(server, pty_board, tmp_path, capsys):
    server.add_device("b1", SECRETS["token"])
    board = pty_board("b1")
    config_file = tmp_path / "board.json"
    config_file.write_text(json.dumps(board_config(server)))
    assert cli.main(["deploy", "-p", board.port, "--config", str(config_file), "--reset"]) == 0
    assert server.wait_for(lambda: server.telemetry("b1", "uptime_s"), 15)
    out = capsys.readouterr()
    assert "every file verified by SHA-256; reset" in out.out
    assert '"token": "***"' in out.out and '"password": "***"' in out.out
    assert "DEPLOY_TOKEN_123" not in out.out + out.err and "wifi-pass-456" not in out.out + out.err
    assert board.boots == 2 and "machine: reset" in board.console()


def test_redeploy_interrupts_the_running_app(server, pty_board):
    server.add_device("b1", SECRETS["token"])
    board = pty_board("b1")
    deploy.deploy(board.port, board_config(server))
    deploy.reset(board.port)
    assert server.wait_for(lambda: server.telemetry("b1", "uptime_s"), 15)  # main.py is running
    files = deploy.deploy(board.port, board_config(server, interval_s=2))
    assert "KeyboardInterrupt" in board.console()  # Ctrl-C stopped main.py, as on a real board
    assert dict((p, a) for p, _, a in files)["config.json"] == "written"
    assert json.loads((board.folder / "config.json").read_text())["interval_s"] == 2


def test_mpy_deploy_replaces_sources_and_runs(server, pty_board):
    server.add_device("b1", SECRETS["token"])
    board = pty_board("b1")
    deploy.deploy(board.port, board_config(server))
    deploy.deploy(board.port, None, mpy=True)
    package = board.folder / "lib" / "iotlink"
    assert sorted(p.suffix for p in package.iterdir()) == [".mpy"] * len(list(package.iterdir()))
    assert (package / "app.mpy").read_bytes()[:1] == b"M"  # the .mpy header
    assert json.loads((board.folder / "config.json").read_text())["token"] == SECRETS["token"]  # kept
    deploy.reset(board.port)
    assert server.wait_for(lambda: server.telemetry("b1", "mem_free"), 15)


def test_missing_port_is_a_clear_error(capsys):
    assert cli.main(["deploy", "--port", "/dev/nonexistent-board"]) == 1
    assert "iotlink: error: cannot open /dev/nonexistent-board" in capsys.readouterr().err


def test_numeric_secrets_refused_by_the_firmware_are_not_echoed(server, pty_board, tmp_path, capsys):
    """The firmware shows numbers in its messages ("got 12345678"): a number under a secret key
    is a secret all the same."""
    board = pty_board("b1")
    config_file = tmp_path / "board.json"
    config_file.write_text(json.dumps({"server": server.url, "token": "T", "wifi": {"ssid": "lab", "password": 87654321}}))
    assert cli.main(["deploy", "-p", board.port, "--config", str(config_file)]) == 1
    out = capsys.readouterr()
    assert out.err == "iotlink: error: the firmware refuses this config: 'wifi.password' must be a string (got ***)\n"
    assert "87654321" not in out.out + out.err
    config_file.write_text(json.dumps({"server": server.url, "token": 12345678}))
    assert cli.main(["deploy", "-p", board.port, "--config", str(config_file)]) == 1
    out = capsys.readouterr()
    assert out.err.startswith("iotlink: error: the firmware refuses this config: 'token' must be")
    assert "12345678" not in out.out + out.err
    assert not (board.folder / "config.json").exists()
