"""The `iotlink` command line: --version, and the one way every command reports an error (one
line on stderr, exit status 1, a traceback only with -v)."""

import subprocess
from importlib.metadata import version

from support import IOTLINK, LIB, REPO

from iotlink_tools import cli
from iotlink_tools.commands import mpy


def iotlink(*args, cwd=None):
    return subprocess.run([IOTLINK, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def firmware_version():
    return (LIB / "iotlink" / "__init__.py").read_text().split('__version__ = "')[1].split('"')[0]


def test_version_names_the_tool_the_firmware_and_where_the_firmware_is():
    done = iotlink("--version")
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout == f"iotlink {version('iotlink-tools')}, firmware {firmware_version()} in {REPO}\n"


def test_a_missing_fleet_file_is_one_line_on_stderr_and_status_1(tmp_path):
    done = iotlink("sim", "--tokens", str(tmp_path / "fleet.txt"))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"iotlink: error: {tmp_path / 'fleet.txt'}: No such file or directory\n"


def test_an_output_folder_that_cannot_be_made_is_one_line_on_stderr_and_status_1(tmp_path):
    done = iotlink("mpy", "--out", "/proc/forbidden/x", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("iotlink: error: /proc/forbidden") and done.stderr.count("\n") == 1
    assert not (tmp_path / "build").exists()


def test_verbose_adds_the_traceback(tmp_path):
    done = iotlink("-v", "sim", "--tokens", str(tmp_path / "fleet.txt"))
    assert done.returncode == 1
    assert done.stderr.startswith("Traceback (most recent call last):")
    assert "FileNotFoundError" in done.stderr
    assert done.stderr.endswith(f"iotlink: error: {tmp_path / 'fleet.txt'}: No such file or directory\n")


def test_errors_of_a_command_are_reported_the_same_way(tmp_path, server, capsys):
    fleet = tmp_path / "fleet.txt"
    fleet.write_text("a,AAA\na,BBB\n")
    assert cli.main(["sim", "--tokens", str(fleet)]) == 1
    assert capsys.readouterr().err == f"iotlink: error: {fleet}: board names must be unique\n"
    assert cli.main(["sim", "--server", server.url, "--create", "--password", "wrong"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("iotlink: error: --create: ") and "401" in err and err.count("\n") == 1
    port = server.url.rsplit(":", 1)[1]
    assert cli.main(["devserver", "--http-port", port]) == 1
    assert capsys.readouterr().err.startswith(f"iotlink: error: cannot serve on 127.0.0.1:{port} (")
    assert cli.main(["bundle", "--out", str(tmp_path / "app.tar"), "--server", "http://127.0.0.1:1"]) == 1
    assert capsys.readouterr().err == "iotlink: error: cannot reach http://127.0.0.1:1: [Errno 111] Connection refused\n"


def test_ctrl_c_is_status_130(monkeypatch, tmp_path):
    def interrupted(out_dir):
        raise KeyboardInterrupt

    monkeypatch.setattr(mpy, "compile_library", interrupted)
    assert cli.main(["mpy", "--out", str(tmp_path)]) == 130
