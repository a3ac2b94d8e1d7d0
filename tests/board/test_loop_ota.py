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
