"""`make mpy`: the .mpy build loads and works in micropython exactly like the source."""

import shutil

from iotlink_tools.firmware import compile_library


def test_mpy_build_replaces_the_source(tmp_path, server, device, mp):
    files = compile_library(tmp_path / "build")
    assert {f.name for f in files} >= {"thingsboard.mpy", "http.mpy", "errors.mpy"}
    # A board with only the .mpy files in /lib: no source anywhere on its path.
    shutil.copytree(tmp_path / "build" / "iotlink", mp.flash / "lib" / "iotlink")
    run = mp(f"""
import sys
sys.path[:] = ["lib", ".frozen"]
import iotlink.thingsboard as m
out(m.__file__)
m.ThingsBoard({server.url!r}, "TEST_TOKEN").send_telemetry({{"from_mpy": 1}})
""", env={"MICROPYPATH": "lib:.frozen"})
    assert run.result.endswith(".mpy")
    assert server.latest_telemetry("test-device")["from_mpy"][1] == 1


def test_a_compiled_module_names_itself_by_its_module_name(tmp_path, mp):
    # Each .mpy carries its module name as its source name: the name the board keeps anyway for
    # the module, where a path would be one more interned name per module. Tracebacks show it.
    compile_library(tmp_path / "build")
    shutil.copytree(tmp_path / "build" / "iotlink", mp.flash / "lib" / "iotlink")
    run = mp("""
import sys
sys.path[:] = ["lib", ".frozen"]
from iotlink import http
try:
    http.length({"content-length": b"x"})
except Exception as e:
    sys.print_exception(e)
""", env={"MICROPYPATH": "lib:.frozen"})
    assert 'File "iotlink.http", line ' in run.stdout and "in length" in run.stdout
    assert "ProtocolError: bad Content-Length" in run.stdout
