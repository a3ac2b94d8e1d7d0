"""`iotlink ota`: the app bundle built, uploaded with its checksum through ThingsBoard's OTA REST
API (here the devserver's), assigned to devices or to a device profile, and followed until the
virtual boards, running the firmware's loop, report UPDATED; a device that never updates and an
app that never starts end in exit status 1."""

import hashlib
import shutil

import pytest
from support import config, flash, wait_until

from iotlink_tools import firmware
from iotlink_tools.cli import main
from iotlink_tools.vboard import Board


def states(server, name, prefix="fw"):
    return [value for _, _, value in server.telemetry(name, f"{prefix}_state")]


def current_version(server, name):
    return server.latest_telemetry(name)["current_fw_version"][1]


@pytest.fixture
def boards(server, tmp_path):
    """boards(*names, type=profile) starts a virtual board per name, each a device of the server
    with its own token, and waits for their first telemetry."""
    started = []

    def start(*names, type=None):
        for name in names:
            server.add_device(name, f"{name}-token", type=type)
            started.append(Board(flash(tmp_path, config(server, token=f"{name}-token"), name=name)).start())
        for name in names:
            wait_until(lambda: server.telemetry(name, "uptime_s"), 20, f"{name}'s first telemetry")
        return started[-len(names):]

    yield start
    for board in started:
        board.stop()


def ota(server, *args):
    return main(["ota", "--server", server.url, "--poll", "0.2", *args])


@pytest.mark.slow
def test_two_boards_named_get_the_firmware_app_as_mpy(server, boards, capsys):
    first, second = boards("pump-1", "pump-2")
    assert ota(server, "--device", "pump-1", "pump-2", "--timeout", "60") == 0
    out = capsys.readouterr().out
    upload = next(e for e in server.requests_to("/api/otaPackage/", "POST"))
    data = server.package(upload.path.rsplit("/", 1)[1])["data"]
    version = f"{firmware.version()}-{hashlib.sha256(data).hexdigest()[:8]}"
    assert upload.query["checksum"] == [hashlib.sha256(data).hexdigest()]  # the server checked the file
    assert f"firmware package iotlink {version}: {len(data)} bytes, SHA256" in out
    assert f"2 of 2 devices run iotlink {version}" in out
    assert out.count("UPDATED") >= 2
    for name, board in (("pump-1", first), ("pump-2", second)):
        assert states(server, name)[-1] == "UPDATED" and current_version(server, name) == version
        package = board.folder / "lib" / "iotlink"
        assert sorted(p.name for p in package.iterdir()) == \
            sorted(name.removeprefix("iotlink/").replace(".py", ".mpy") for name in firmware.modules())
        assert board.boots == 2  # the update rebooted it once


@pytest.mark.slow
def test_a_profile_gets_a_folder_and_a_second_run_reuses_the_package(server, boards, tmp_path, capsys):
    server.add_device_profile("pumps")
    app = tmp_path / "app"
    for name, path in firmware.files().items():
        if name != "boot.py":
            (app / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, app / name)
    (app / "lib" / "marker.py").write_text("VERSION = 2\n")
    (app / "lib" / "__pycache__").mkdir()
    (app / "lib" / "__pycache__" / "marker.cpython-311.pyc").write_bytes(b"not for a board")
    pumps = boards("pump-1", "pump-2", type="pumps")
    server.add_device("valve-1", "valve-token")  # another profile: not touched
    assert ota(server, str(app), "--profile", "pumps", "--version", "2.0.0", "--timeout", "60") == 0
    out = capsys.readouterr().out
    assert "assigned to profile pumps" in out and "2 of 2 devices run iotlink 2.0.0" in out
    assert server.device_profile("pumps")["firmware_id"] is not None
    for board in pumps:
        assert (board.folder / "lib" / "marker.py").read_text() == "VERSION = 2\n"
        assert not (board.folder / "lib" / "__pycache__").exists()
    assert "fw_title" not in server.shared_attributes("valve-1")

    assert ota(server, str(app), "--profile", "pumps", "--version", "2.0.0", "--timeout", "5") == 0
    out = capsys.readouterr().out
    assert "firmware package iotlink 2.0.0" in out and "(on the server already)" in out
    assert len(server.requests_to("/api/otaPackage", "POST")) == 2  # one create, one upload: not again


def test_a_device_that_never_updates_times_out_with_status_1(server, capsys):
    server.add_device("offline-1", "offline-token")
    assert ota(server, "--device", "offline-1", "--timeout", "1") == 1
    err = capsys.readouterr().err
    assert err == "iotlink: error: 1 of 1 devices not updated: offline-1: INITIATED (not UPDATED within 1 s)\n"


@pytest.mark.slow
def test_an_app_that_never_starts_is_rolled_back_and_reported_failed(server, boards, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "main.py").write_text("import machine\nmachine.reset()\n")  # never reaches the server
    (board,) = boards("pump-1")
    assert ota(server, str(broken), "--device", "pump-1", "--version", "9.9.9", "--timeout", "60") == 1
    err = capsys.readouterr().err
    assert err.startswith("iotlink: error: 1 of 1 devices not updated: pump-1: FAILED (")
    assert "rolled back" in err and err.count("\n") == 1
    assert states(server, "pump-1")[-1] == "FAILED"
    assert (board.folder / "main.py").read_bytes() == (firmware.root() / "main.py").read_bytes()  # the old app


def test_what_is_wrong_is_said_before_anything_is_sent(server, tmp_path, capsys):
    server.add_device("pump-1", "pump-token")
    server.add_device_profile("pumps")
    server.add_device("pump-2", "other-token", type="pumps")
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text("print('app')\n")
    (app / "config.json").write_text("{}")
    cases = {
        ("--device", "pump-1", "nobody"): "no device named nobody on the server",
        ("--device", "pump-1", "pump-2"): "the devices are in different device profiles, and a package "
                                          "belongs to one: update the devices of each profile in a run of their own",
        ("--profile", "tanks"): "no device profile named tanks on the server",
        (str(app), "--device", "pump-1"): f"{app / 'config.json'}: each board keeps its own config.json and "
                                          "refuses an update that carries one: move it out of the folder",
        ("--device", "pump-1", "--password", "wrong"): f"cannot log in to {server.url} as tenant@thingsboard.org: "
                                                       "HTTP 401: Invalid username or password",
    }
    for args, said in cases.items():
        assert ota(server, *args) == 1
        assert capsys.readouterr().err == f"iotlink: error: {said}\n"
    (app / "config.json").unlink()
    for name in ("boot.py", "Boot.PY", "queue/head"):  # the board's update guard, its offline queue
        (app / name).parent.mkdir(exist_ok=True)
        (app / name).write_text("x")
        top = name.split("/")[0]
        assert ota(server, str(app), "--device", "pump-1") == 1
        assert capsys.readouterr().err == (f"iotlink: error: {app / top}: each board keeps its own "
                                           f"{top.lower()} and refuses an update that carries one: move it out of "
                                           "the folder\n")
        (app / name).unlink()
    assert server.requests_to("/api/otaPackage") == []


def test_quiet_shows_only_the_table_and_the_error_and_the_password_comes_from_a_file(server, tmp_path, capsys,
                                                                                     monkeypatch):
    server.add_device("offline-1", "offline-token")
    password = tmp_path / "password"
    password.write_text("tenant\n")
    monkeypatch.setenv("IOTLINK_PASSWORD", "not-the-password")  # the file wins over the variable
    assert main(["ota", "-q", "--server", server.url, "--password-file", str(password), "--poll", "0.2",
                 "--device", "offline-1", "--timeout", "1"]) == 1
    out, err = capsys.readouterr()
    assert "package" not in out and "assigned" not in out and "offline-1: INITIATED" not in out
    assert "offline-1" in out and "INITIATED" in out  # the table, at the end
    assert err == "iotlink: error: 1 of 1 devices not updated: offline-1: INITIATED (not UPDATED within 1 s)\n"
