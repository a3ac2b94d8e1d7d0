"""What the device loop keeps in RAM: the OTA code only while it has work (issue #8, footprint).

Loaded from .mpy, a module's bytecode lives in the heap, so the loop unloads the OTA code after
the start-up report and loads it again only when a package other than the running one is
announced. Runs the real App against the devserver, one boot per run.
"""

import json

from test_app import all_records, telemetry

LOOP = """
import sys
from iotlink import app
a = app.App(app.config.load(), app.Watchdog())
a.start()
while a.start_tasks:
    a.step()
loaded = lambda: [m for m in ("iotlink.ota", "iotlink.swap", "iotlink.install", "iotlink.clocksync") if m in sys.modules]
out(loaded())
a.read_attributes()
out(loaded())
"""


def boot(mp, server):
    (mp.flash / "config.json").write_text(json.dumps({"server": server.url, "token": "TEST_TOKEN",
                                                      "interval_s": 60, "pins": {"23": 23}}))
    return mp(LOOP).results


def fw_states(server):
    return [r.get("values", r) for r in all_records(telemetry(server)) if "fw_state" in r.get("values", r)]


def test_the_ota_code_is_loaded_only_for_a_package_other_than_the_running_one(mp, server, device):
    # Nothing announced: after the start-up report (current_fw_*) the OTA code is gone.
    assert boot(mp, server) == [[], []]
    current = [r.get("values", r) for r in all_records(telemetry(server))
               if "current_fw_version" in r.get("values", r)]
    assert current == [{"current_fw_title": "iotlink", "current_fw_version": "0.1.0"}]
    # The running firmware announced: nothing to do, nothing loaded.
    server.set_shared_attributes("test-device", {"fw_title": "iotlink", "fw_version": "0.1.0"})
    assert boot(mp, server) == [[], []]
    # Another version: the updater is loaded and handles it (here: refused, no checksum).
    server.set_shared_attributes("test-device", {"fw_version": "2.0.0"})
    assert boot(mp, server) == [[], ["iotlink.ota", "iotlink.swap"]]
    assert fw_states(server) == [{"fw_state": "FAILED",
                                  "fw_error": "package announced without size and checksum: not applied"}]
