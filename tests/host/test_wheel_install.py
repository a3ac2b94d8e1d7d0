"""The tool installed from its wheel into a fresh virtual environment (installed_tool), run from a
folder outside the checkout: it carries the firmware it deploys, compiles the .mpy on demand,
and ships no lab code."""

import json
import subprocess

import pytest
from support import REPO, run_installed

pytestmark = pytest.mark.slow  # a wheel built and pip-installed into a new environment


def installed_python(bin_dir, code):
    return subprocess.run([str(bin_dir / "python"), "-c", code], capture_output=True, text=True)


def test_version_names_the_firmware_inside_the_installed_package(installed_tool, tmp_path):
    done = run_installed(installed_tool, "--version", cwd=tmp_path)
    package = installed_python(installed_tool, "import iotlink_tools, os; print(os.path.dirname(iotlink_tools.__file__))")
    library = (REPO / "lib" / "iotlink" / "__init__.py").read_text()
    version = library.split('__version__ = "')[1].split('"')[0]
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"iotlink 0.1.0, firmware {version} in {package.stdout.strip()}/device\n"
    assert not package.stdout.startswith(str(REPO))
    assert "ModuleNotFoundError" in installed_python(installed_tool, "import iotlink_lab").stderr


def test_deploy_and_provision_from_a_folder_of_the_users(installed_tool, server, pty_board, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    server.add_device("desk-1", "DESK_TOKEN_1")
    board = pty_board("desk-1")
    (work / "board.json").write_text(json.dumps({"server": server.url, "token": "DESK_TOKEN_1", "interval_s": 1}))
    done = run_installed(installed_tool, "deploy", "-p", board.port, "--config", "board.json", "--reset", cwd=work)
    assert done.returncode == 0, done.stdout + done.stderr
    assert server.wait_for(lambda: server.telemetry("desk-1", "uptime_s"), 20)
    assert (board.folder / "main.py").read_bytes() == (REPO / "main.py").read_bytes()
    compiled = {p.relative_to(REPO).with_suffix(".mpy") for p in (REPO / "lib" / "iotlink").rglob("*.py")}
    assert {p.relative_to(board.folder) for p in (board.folder / "lib" / "iotlink").rglob("*")} == compiled

    second = pty_board("desk-2")
    (work / "fleet.csv").write_text(f"name,port\ndesk-2,{second.port}\n")
    done = run_installed(installed_tool, "provision", "fleet.csv", "--url", server.url, "--user",
                         "tenant@thingsboard.org", "--password", "tenant", "--wifi-ssid", "lab", "--poll", "0.5", cwd=work)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [r["status"] for r in json.loads((work / "fleet.report.json").read_text())] == ["online"]
    assert server.telemetry("desk-2", "uptime_s")
