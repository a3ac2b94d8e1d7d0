"""iotlink deploy onto virtual boards on pseudo-terminals: files on their flash, the firmware's
own checks, the board's .mpy version, the CA of an https server, the app running afterwards, no
secret in any output."""

import json
import ssl

import pytest

from iotlink_lab.tlsutil import make_pki
from iotlink_tools import certs, cli, firmware
from iotlink_tools.commands import deploy
from iotlink_tools.devserver import DevServer
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
    files = deploy.deploy(board.port, config, mpy=False)
    reference = prepare_flash(tmp_path / "reference", config)
    assert tree(board.folder) == tree(reference)
    assert {path for path, _, action in files if action == "written"} == set(tree(reference))
    assert board.running and board.boots == 1  # resumed: no soft reset, no reboot


def test_second_deploy_writes_only_what_changed(server, pty_board):
    board = pty_board("b1")
    deploy.deploy(board.port, board_config(server))
    package = board.folder / "lib" / "iotlink"
    before = {p: p.stat().st_mtime_ns for p in package.iterdir()}
    damaged = sorted(package.glob("*.mpy"))[1]
    damaged.write_bytes(damaged.read_bytes()[:-10])
    stale = package / "removed_module.py"
    stale.write_text("x = 1\n")
    files = deploy.deploy(board.port, board_config(server, interval_s=5))
    actions = {path: action for path, _, action in files}
    assert actions.pop(f"lib/iotlink/{damaged.name}") == "written"
    assert actions.pop("config.json") == "written"
    assert set(actions.values()) == {"unchanged"}
    assert not stale.exists()
    assert json.loads((board.folder / "config.json").read_text())["interval_s"] == 5
    untouched = [p for p in before if p != damaged and p.exists()]
    assert all(p.stat().st_mtime_ns == before[p] for p in untouched)


def test_config_refused_by_the_firmware_leaves_the_board_untouched(server, pty_board):
    board = pty_board("b1")
    with pytest.raises(deploy.ToolError) as caught:
        deploy.deploy(board.port, {"server": "ftp://example.com", "token": "SECRET_TOKEN_X"})
    assert str(caught.value) == "the firmware refuses this config: 'server' must start with http:// or https://"
    assert list(board.folder.iterdir()) == []  # checked before the board was touched


def test_an_https_server_without_a_ca_is_one_line_before_anything_is_copied(pty_board, tmp_path, capsys):
    board = pty_board("b1")
    config_file = tmp_path / "board.json"
    config_file.write_text(json.dumps({"server": "https://127.0.0.1:8443", **SECRETS}))
    assert cli.main(["deploy", "-p", board.port, "--config", str(config_file)]) == 1
    err = capsys.readouterr().err
    assert err == ("iotlink: error: the firmware refuses this config: an https 'server' needs 'ca' (the CA "
                   "certificate file on the board, PEM or DER) or \"tls_insecure\": true to skip verifying the server\n")
    assert list(board.folder.iterdir()) == []


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


def test_the_default_mpy_deploy_replaces_sources_and_runs(server, pty_board, capsys):
    server.add_device("b1", SECRETS["token"])
    board = pty_board("b1")
    deploy.deploy(board.port, board_config(server), mpy=False)
    assert cli.main(["deploy", "-p", board.port]) == 0
    package = board.folder / "lib" / "iotlink"
    modules = sorted(p.relative_to(package.parent).as_posix() for p in package.iterdir())
    assert modules == sorted(name.replace(".py", ".mpy") for name in firmware.modules())
    header = (package / "__init__.mpy").read_bytes()[:2]
    assert header == b"M" + bytes([firmware.mpy_version()[0]])  # the .mpy header: its version
    assert json.loads((board.folder / "config.json").read_text())["token"] == SECRETS["token"]  # kept
    assert "lib/iotlink/__init__.mpy" in capsys.readouterr().out
    deploy.reset(board.port)
    assert server.wait_for(lambda: server.telemetry("b1", "mem_free"), 15)


# A board whose MicroPython loads another .mpy version (1.12 to 1.18 load v5): its boot.py gives
# `import sys` a stand-in that says so.
OLD_MICROPYTHON = """import sys
class _Implementation:
    version = (1, 12, 0)
    _mpy = 5
class _Sys:
    implementation = _Implementation()
    def __getattr__(self, name, real=sys):
        return getattr(real, name)
sys.modules["sys"] = _Sys()
"""


def test_a_board_that_loads_another_mpy_version_is_refused_before_anything_is_copied(pty_board, tmp_path, capsys):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "boot.py").write_text(OLD_MICROPYTHON)
    board = pty_board("old")
    assert cli.main(["deploy", "-p", board.port]) == 1
    major, sub = firmware.mpy_version()
    assert capsys.readouterr().err == (
        f"iotlink: error: {board.port}: MicroPython 1.12.0 on the board loads .mpy v5, this tool compiles "
        f".mpy v{major}.{sub}: update the board's MicroPython, or copy the source with --py\n")
    assert [p.name for p in folder.iterdir()] == ["boot.py"]
    assert cli.main(["deploy", "-p", board.port, "--py"]) == 0  # the source it takes
    assert (folder / "lib" / "iotlink" / "app.py").is_file()


def test_ca_goes_on_the_board_as_der_and_the_board_reports_over_verified_tls(pty_board, tmp_path, capsys):
    pki = make_pki(tmp_path)
    with DevServer(port=0, async_timeout_ms=3000, tls=(str(pki["cert"]), str(pki["key"]))) as tls_server:
        tls_server.add_device("b1", SECRETS["token"])
        board = pty_board("b1")
        config_file = tmp_path / "board.json"
        config_file.write_text(json.dumps({"server": tls_server.url, **SECRETS, "interval_s": 1}))
        assert tls_server.url.startswith("https://")
        assert cli.main(["deploy", "-p", board.port, "--config", str(config_file), "--ca", str(pki["ca"]), "--reset"]) == 0
        der = ssl.PEM_cert_to_DER_cert(pki["ca"].read_text())
        assert (board.folder / "ca.der").read_bytes() == der
        assert json.loads((board.folder / "config.json").read_text())["ca"] == "ca.der"
        assert '"ca": "ca.der"' in capsys.readouterr().out
        assert tls_server.wait_for(lambda: tls_server.telemetry("b1", "uptime_s"), 20)


def test_a_ca_file_must_hold_one_certificate(tmp_path):
    pki = make_pki(tmp_path)
    der = ssl.PEM_cert_to_DER_cert(pki["ca"].read_text())
    (tmp_path / "ca.der").write_bytes(der)
    assert certs.read_ca(tmp_path / "ca.der") == certs.read_ca(pki["ca"]) == der
    chain = tmp_path / "chain.pem"
    chain.write_text(pki["cert"].read_text() + pki["ca"].read_text())
    with pytest.raises(certs.ToolError, match=f"^{chain} holds 2 certificates; a board trusts one: keep only the root"):
        certs.read_ca(chain)
    with pytest.raises(certs.ToolError, match=f"^{pki['key']} holds no certificate"):
        certs.read_ca(pki["key"])
    with pytest.raises(certs.ToolError, match="cannot read"):
        certs.read_ca(tmp_path / "missing.pem")


def test_a_ca_without_a_config_is_refused(pty_board, tmp_path, capsys):
    pki = make_pki(tmp_path)
    assert cli.main(["deploy", "-p", "/dev/nonexistent-board", "--ca", str(pki["ca"])]) == 1
    assert capsys.readouterr().err == \
        "iotlink: error: a CA certificate goes with a config that names it: give --config too\n"


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
    assert out.err == "iotlink: error: the firmware refuses this config: 'wifi.password' must be a string (got a number)\n"
    assert "87654321" not in out.out + out.err
    config_file.write_text(json.dumps({"server": server.url, "token": 12345678}))
    assert cli.main(["deploy", "-p", board.port, "--config", str(config_file)]) == 1
    out = capsys.readouterr()
    assert out.err.startswith("iotlink: error: the firmware refuses this config: 'token' must be")
    assert "12345678" not in out.out + out.err
    assert not (board.folder / "config.json").exists()
