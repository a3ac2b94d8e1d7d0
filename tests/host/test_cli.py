"""The `iotlink` command line: --version, -v/-q anywhere, help for every option, one way to name
a serial port, secrets from the environment or a file, and the one way every command reports an
error (one line on stderr, exit status 1, a traceback only with -v)."""

import argparse
import signal
import subprocess
import urllib.request
from importlib.metadata import version
from types import SimpleNamespace

import pytest
from support import IOTLINK, LIB, REPO, ctrl_c_works

from iotlink_tools import cli, serialports
from iotlink_tools.commands import devserver, mpy
from iotlink_tools.errors import ToolError


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


# ---- one line, status 1, for each error a user meets first ----------------------------------
def one_error_line(done) -> str:
    """The one line a failed command printed on stderr (after its prefix)."""
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("iotlink: error: "), done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr[len("iotlink: error: "):-1]


def test_devserver_on_a_port_in_use(server):
    port = server.url.rsplit(":", 1)[1]
    assert one_error_line(iotlink("devserver", "--http-port", port)).startswith(
        f"cannot serve on 127.0.0.1:{port} (Address already in use): try another --http-port")


def test_devserver_on_a_port_that_cannot_be():
    assert one_error_line(iotlink("devserver", "--http-port", "99999")) == \
        "argument --http-port: '99999' is not a port number (0 to 65535; 0 picks a free one) " \
        "(see iotlink devserver --help)"


def test_devserver_with_a_database_it_cannot_write():
    assert one_error_line(iotlink("devserver", "--http-port", "0", "--db", "/proc/forbidden/dev.db")) == \
        "cannot use the database /proc/forbidden/dev.db: unable to open database file"


def test_bundle_for_a_device_the_server_does_not_have(server, tmp_path):
    done = iotlink("bundle", "--out", str(tmp_path / "app.tar"), "--server", server.url, "--device", "nope")
    assert one_error_line(done) == "HTTP 404: no device named nope"


def test_bundle_for_a_server_that_is_down(tmp_path):
    done = iotlink("bundle", "--out", str(tmp_path / "app.tar"), "--server", "http://127.0.0.1:1")
    assert one_error_line(done) == "cannot reach http://127.0.0.1:1: [Errno 111] Connection refused"


def test_sim_with_a_missing_fleet_file(tmp_path):
    assert one_error_line(iotlink("sim", "--tokens", str(tmp_path / "fleet.txt"))) == \
        f"{tmp_path / 'fleet.txt'}: No such file or directory"


def test_mpy_into_a_folder_that_cannot_be_made(tmp_path):
    assert one_error_line(iotlink("mpy", "--out", "/proc/forbidden/x", cwd=tmp_path)).startswith("/proc/forbidden")


def test_sim_with_a_heap_size_that_is_no_size():
    assert one_error_line(iotlink("sim", "--token", "T", "--heapsize", "lots")) == \
        "argument --heapsize: 'lots' is not a heap size (a number of bytes, or with K or M: 512K, 2M) " \
        "(see iotlink sim --help)"


def test_a_command_line_it_cannot_use_is_one_line_too():
    assert one_error_line(iotlink("flash")) == \
        "the following arguments are required: firmware (see iotlink flash --help)"
    assert one_error_line(iotlink("nosuch")).startswith("argument COMMAND: invalid choice: 'nosuch'")


# ---- global options and help --------------------------------------------------------------
def subcommand_parsers():
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"iotlink": parser, **commands.choices}


@pytest.mark.parametrize("name", ["iotlink", *cli.COMMANDS])
def test_every_option_has_help(name):
    parser = subcommand_parsers()[name]
    missing = [a.option_strings or a.dest for a in parser._actions
               if not isinstance(a, argparse._SubParsersAction) and not a.help]
    assert not missing
    text = parser.format_help()
    assert "-v, --verbose" in text and "-q, --quiet" in text


def test_help_keeps_the_examples_lines_and_shows_defaults():
    text = subcommand_parsers()["devserver"].format_help()
    assert "\n  iotlink devserver --device kitchen                          # prints the token it made\n" in text
    assert "(default: 8080)" in " ".join(text.split())
    top = subcommand_parsers()["iotlink"].format_help()
    assert top.index("demo ") < top.index("devserver ") < top.index("flash ") < top.index("provision ")
    assert "\n  iotlink demo " in top


def test_no_command_shows_the_help():
    done = iotlink()
    assert done.returncode == 0 and done.stdout.startswith("usage: iotlink")


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_and_verbose_before_or_after_the_command(where, tmp_path):
    def mpy_run(flag):
        args = [flag, "mpy", "--out", str(tmp_path)] if where == "before" else ["mpy", "--out", str(tmp_path), flag]
        return iotlink(*args)

    quiet = mpy_run("-q")
    assert quiet.returncode == 0 and quiet.stdout.count("\n") == 1 and "total" in quiet.stdout
    normal = iotlink("mpy", "--out", str(tmp_path))
    assert normal.stdout.count("\n") > 10  # a line per module
    missing = str(tmp_path / "fleet.txt")
    verbose = iotlink(*(["-v", "sim", "--tokens", missing] if where == "before" else ["sim", "--tokens", missing, "-v"]))
    assert verbose.stderr.startswith("Traceback") and verbose.returncode == 1
    assert one_error_line(iotlink("-q", "mpy", "--out", str(tmp_path), "-v")) == \
        "-v and -q contradict each other: give one"


# ---- the devserver's output ----------------------------------------------------------------
def test_devserver_prints_the_tokens_it_makes_and_logs_requests_on_verbose(tmp_path):
    proc = subprocess.Popen([IOTLINK, "-v", "devserver", "--http-port", "0", "--device", "kitchen",
                             "--device", "given:GIVEN_TOKEN"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=ctrl_c_works)
    try:
        made = proc.stdout.readline()
        assert made.startswith("device kitchen ready, token ")
        token = made.split()[-1]
        assert proc.stdout.readline() == "device given ready\n"  # a token given is not printed back
        url = proc.stdout.readline().split()[3]
        urllib.request.urlopen(urllib.request.Request(f"{url}/api/v1/{token}/telemetry", b'{"t": 1}'), timeout=5)
        line = proc.stdout.readline().split()
        assert line[1:4] == ["POST", "/api/v1/***/telemetry", "200"] and line[5] == "ms"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert token not in line


@pytest.mark.parametrize("path,shown", [
    ("/api/v1/SECRET/telemetry", "/api/v1/***/telemetry"), ("/api/v1/SECRET/rpc/3", "/api/v1/***/rpc/3"),
    ("/api/v1/provision", "/api/v1/provision"), ("/v2/things/SECRET", "/v2/things/***"),
    ("/v2/things/SECRET/resources/temp", "/v2/things/***/resources/temp"), ("/api/tenant/devices", "/api/tenant/devices"),
])
def test_request_log_masks_device_credentials(path, shown):
    assert devserver.shown_path(path) == shown


# ---- serial ports --------------------------------------------------------------------------
def fake_ports(monkeypatch, *ports):
    from serial.tools import list_ports

    found = [SimpleNamespace(device=d, vid=v, pid=p, serial_number=f"SN{i}") for i, (d, v, p) in enumerate(ports)]
    monkeypatch.setattr(list_ports, "comports", lambda: found)


def test_port_auto_picks_the_only_board(monkeypatch):
    fake_ports(monkeypatch, ("/dev/ttyS0", None, None), ("/dev/ttyACM3", 0x2341, 0x0043),  # a modem, an Arduino
               ("/dev/ttyUSB1", 0x10C4, 0xEA60))
    assert serialports.resolve("auto") == "/dev/ttyUSB1"
    assert serialports.resolve("/dev/ttyS0") == "/dev/ttyS0"  # a port named is taken as it is
    fake_ports(monkeypatch, ("/dev/ttyACM0", 0x2E8A, 0x0005))
    assert serialports.usb_boards() == [("/dev/ttyACM0", "picow", "SN0")]


def test_port_auto_with_no_board_or_several_says_what_it_found(monkeypatch):
    fake_ports(monkeypatch, ("/dev/ttyS0", None, None))
    with pytest.raises(ToolError, match="^-p auto: no board found on USB"):
        serialports.resolve("auto")
    fake_ports(monkeypatch, ("/dev/ttyUSB0", 0x1A86, 0x7523), ("/dev/ttyACM0", 0x303A, 0x1001),
               ("/dev/ttyUSB1", 0x0403, 0x6001), ("/dev/ttyUSB2", 0x1A86, 0x55D4))
    with pytest.raises(ToolError) as caught:
        serialports.resolve("auto")
    assert str(caught.value) == ("-p auto: 4 boards found (/dev/ttyACM0 (esp32), /dev/ttyUSB0 (esp32), "
                                 "/dev/ttyUSB1 (esp32), /dev/ttyUSB2 (esp32)): choose one with -p PORT")


def test_deploy_port_auto_is_one_line_when_no_board_is_there(monkeypatch, capsys):
    fake_ports(monkeypatch)
    assert cli.main(["deploy"]) == 1
    assert capsys.readouterr().err.startswith("iotlink: error: -p auto: no board found on USB")


# ---- secrets -------------------------------------------------------------------------------
def test_a_secret_comes_from_its_option_its_file_or_its_variable(tmp_path, monkeypatch):
    parser = subcommand_parsers()["sim"]
    secret_file = tmp_path / "password"
    secret_file.write_text("from-file\nsecond line ignored\n")

    def resolved(*argv):
        args = parser.parse_args(["--create", *argv])
        cli.resolve_secrets(args)
        return args.password

    monkeypatch.delenv("IOTLINK_PASSWORD", raising=False)
    assert resolved() == "tenant"  # the devserver's, as the help says
    monkeypatch.setenv("IOTLINK_PASSWORD", "from-env")
    assert resolved() == "from-env"
    assert resolved("--password-file", str(secret_file)) == "from-file"
    assert resolved("--password", "given") == "given"
    with pytest.raises(ToolError, match="not allowed with argument"):
        resolved("--password", "given", "--password-file", str(secret_file))
    secret_file.write_text("\n")
    with pytest.raises(ToolError, match="the first line is empty"):
        resolved("--password-file", str(secret_file))


def test_every_secret_option_says_how_to_keep_it_off_the_command_line():
    for name, parser in subcommand_parsers().items():
        for action in parser._actions:
            if action.dest in ("password", "token", "provision_secret", "wifi_password", "provision"):
                assert "better $IOTLINK_" in action.help and f"{action.option_strings[0]}-file" in action.help, \
                    (name, action.dest)
                assert "%(default)" not in action.help and action.default is None  # never shown in --help


def test_sim_token_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("IOTLINK_TOKEN", "ENV_TOKEN")
    args = subcommand_parsers()["sim"].parse_args([])
    cli.resolve_secrets(args)
    assert args.token == "ENV_TOKEN"
