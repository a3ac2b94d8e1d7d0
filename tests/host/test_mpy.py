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
