"""An update through the real firmware loop: announced, downloaded, swapped in, rebooted, UPDATED."""

import pytest
from support import all_records, config, flash, records, telemetry, wait_until

from iotlink_tools.commands.bundle import app_files, build
from iotlink_tools.vboard import Board

pytestmark = pytest.mark.slow  # the firmware's loop on a virtual board


def fw_states(server):
    return [r.get("values", r)["fw_state"] for r in all_records(telemetry(server))
            if "fw_state" in r.get("values", r)]


def test_the_loop_installs_an_announced_bundle_and_reports_it(server, device, tmp_path):
    # The new app: the same firmware plus a file that tells it apart on the flash.
    files = {**app_files(), "lib/new_app_marker.py": b"MARKER = 2\n"}
    package = server.add_package("iotlink", "2.0.0", build(files), algorithm="MURMUR3_128")
    folder = flash(tmp_path, config(server))
    with Board(folder) as board:
        wait_until(lambda: records(telemetry(server)), 15, "first telemetry")
        server.assign_package("test-device", package)
        wait_until(lambda: fw_states(server)[-1:] == ["UPDATED"], 60, "UPDATED")
        assert board.boots == 2  # the update rebooted the board once
    assert fw_states(server) == ["DOWNLOADING", "DOWNLOADED", "VERIFIED", "UPDATING", "UPDATED"]
    current = [r.get("values", r) for r in all_records(telemetry(server))
               if "current_fw_version" in r.get("values", r)]
    assert current[0]["current_fw_version"] == "0.1.0" and current[-1]["current_fw_version"] == "2.0.0"
    assert (folder / "lib" / "new_app_marker.py").read_text() == "MARKER = 2\n"
    assert (folder / "config.json").exists()  # a bundle never replaces the board's config
    chunks = server.requests_to("/api/v1/TEST_TOKEN/firmware")
    assert chunks and all(e.query["title"] == ["iotlink"] and e.query["version"] == ["2.0.0"] for e in chunks)


def fw_errors(server):
    return [r.get("values", r).get("fw_error") for r in all_records(telemetry(server))
            if "fw_state" in r.get("values", r)]


@pytest.mark.parametrize("files, why", [
    # lib/ is replaced whole: this one has no iotlink, which main.py imports
    ({"lib/other.py": b"OTHER = 1\n"}, "did not start (ImportError: no module named 'iotlink"),
    ({"main.py": b"from iotlink.app import run\nrun(\n"}, "did not start (SyntaxError: "),
])
def test_a_new_app_that_cannot_start_is_rolled_back_by_the_board_itself(server, device, tmp_path, files, why):
    folder = flash(tmp_path, config(server))
    before = {p: (folder / p).read_bytes() for p in ("main.py", "lib/iotlink/app.py", "boot.py")}
    package = server.add_package("iotlink", "2.0.0", build(files), algorithm="SHA256")
    with Board(folder) as board:
        wait_until(lambda: records(telemetry(server)), 15, "first telemetry")
        server.assign_package("test-device", package)
        wait_until(lambda: fw_states(server)[-1:] == ["FAILED"], 60, "FAILED")
        # Reset into the swap, reset by the guard, then the old app: no one touched the board.
        assert board.boots == 3 and board.running
        sent = len(records(telemetry(server)))
        wait_until(lambda: len(records(telemetry(server))) > sent, 15, "telemetry from the old app")
    assert fw_states(server) == ["DOWNLOADING", "DOWNLOADED", "VERIFIED", "UPDATING", "FAILED"]
    error = fw_errors(server)[-1]
    assert error.startswith("iotlink 2.0.0 " + why) and error.endswith(": rolled back"), error
    assert {p: (folder / p).read_bytes() for p in before} == before
    assert not (folder / "lib" / "other.py").exists() and not (folder / ".ota" / "old").exists()
