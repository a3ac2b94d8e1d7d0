"""A user's whole path: the tool installed from its wheel into a fresh virtual environment, run
from a folder of their own, puts the example fleet on a ThingsBoard server over verified TLS
(the local server, with a CA of its own, standing in for ThingsBoard Cloud), then updates every
board of it over the air. The boards are virtual, on pseudo-terminals."""

import csv
import json
import shutil

import pytest
from support import REPO, run_installed

from iotlink_lab.tlsutil import make_pki
from iotlink_tools.devserver import DevServer

pytestmark = pytest.mark.slow  # the installed tool, four boards on their loop, an update of each

EXAMPLES = REPO / "examples"


def test_the_example_fleet_goes_online_over_tls_and_is_updated_over_the_air(installed_tool, pty_board, tmp_path):
    pki, work = tmp_path / "pki", tmp_path / "work"
    pki.mkdir()
    work.mkdir()
    paths = make_pki(pki)
    shutil.copy(paths["ca"], work / "ca.pem")
    with open(EXAMPLES / "fleet.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    boards = {row["name"]: pty_board(row["name"]) for row in rows}
    with open(work / "fleet.csv", "w", newline="") as f:  # the example with this computer's ports
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**row, "port": boards[row["name"]].port} for row in rows)
    base = json.loads((EXAMPLES / "fleet-base.json").read_text())
    (work / "fleet-base.json").write_text(json.dumps({**base, "interval_s": 2}))  # updates found sooner

    with DevServer(port=0, async_timeout_ms=3000, tls=(str(paths["cert"]), str(paths["key"]))) as server:
        assert server.url.startswith("https://127.0.0.1:")
        account = ["--server", server.url, "--ca", "ca.pem", "--user", "tenant@thingsboard.org", "--password", "tenant"]
        done = run_installed(installed_tool, "provision", "fleet.csv", "--config", "fleet-base.json", *account,
                             "--wifi-ssid", "farm-wifi", "--poll", "0.5", cwd=work)
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads((work / "fleet.report.json").read_text())
        assert {r["name"]: r["status"] for r in report} == dict.fromkeys(boards, "online")
        for row in rows:
            flash = boards[row["name"]].folder
            assert server.telemetry(row["name"], "uptime_s")  # sent over TLS, the server verified
            assert json.loads((flash / "config.json").read_text())["ca"] == "ca.der"
            assert (flash / "ca.der").is_file() and server.device(row["name"])["label"] == row["label"]
        assert server.device("tank-02")["token"] == "A1b2C3d4E5f6G7h8I9j0"  # the CSV's own token

        done = run_installed(installed_tool, "ota", *account, "--device", *boards, "--timeout", "120",
                             "--poll", "0.5", cwd=work)
        assert done.returncode == 0, done.stdout + done.stderr
        version = done.stdout.split("firmware package iotlink ", 1)[1].split(":", 1)[0]
        assert f"4 of 4 devices run iotlink {version}" in done.stdout
        for name, board in boards.items():
            latest = server.latest_telemetry(name)
            assert latest["fw_state"][1] == "UPDATED" and latest["current_fw_version"][1] == version
            assert board.boots == 3  # the reset after provisioning, the one after the update
