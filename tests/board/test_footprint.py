"""What the device loop keeps in RAM: no start-up code, the OTA code only while it has work.

Loaded from .mpy, a module's bytecode lives in the heap, so the start-up code is unloaded before
the loop runs, and the loop unloads the OTA code after the start-up report and loads it again
only when a package other than the running one is announced. Runs the real App against the
devserver, one boot per run.
"""

import json

import pytest
from support import all_records, flash, telemetry

from iotlink_tools.vboard import Board

LOOP = """
import sys
from iotlink import app, app_once
a = app_once.start(app.App, "config.json", None)
while a.start_tasks:
    a.step()
loaded = lambda: [m for m in ("iotlink.ota", "iotlink.ota_swap", "iotlink.ota_once", "iotlink.clock_once") if m in sys.modules]
out(loaded())
a.read_attributes()
out(loaded())
"""


# The start as main.py runs it (app.started: what app.run() runs for ever). Before the loop runs,
# the start-up code is gone (app_once, app_connect_once, config_once, and token_once after a
# provisioning), and the board keeps only the loop's own modules.
STARTED = """
import gc, sys
gc.threshold(4096)  # as boot.py leaves it for the imports
from iotlink import app
a = app.started("config.json", None)
out([m[len("iotlink."):] for m in sorted(sys.modules) if m.startswith("iotlink.")])
out(a.client is not None and bool(a.cfg["token"]))
out(gc.threshold())
"""
LOOP_MODULES = ["app", "clock", "config", "config_values", "errors", "files", "http", "http_conn",
                "http_transport", "net", "outbox", "rpc", "store", "thingsboard"]


def test_the_start_up_code_is_gone_before_the_loop_runs(mp, server, device):
    (mp.flash / "config.json").write_text(json.dumps({"server": server.url, "token": "TEST_TOKEN"}))
    # Started, the collector no longer runs every 4 KB: the loop collects where it needs to.
    assert mp(STARTED).results == [LOOP_MODULES, True, -1]
    server.add_provision_profile("PROVISION-KEY", "PROVISION-SECRET")
    (mp.flash / "config.json").write_text(json.dumps({
        "server": server.url, "provision": {"key": "PROVISION-KEY", "secret": "PROVISION-SECRET"}}))
    run = mp(STARTED)
    assert "provision: token saved to config.json" in run.stdout
    # Provisioned over plain http: the one-shot transport it used (http_oneshot) is gone too.
    assert run.results == [LOOP_MODULES, True, -1]


def test_boot_py_leaves_the_collector_running_every_4_kb_for_main_py(tmp_path):
    # So that main.py's imports fill the heap from the bottom (the loop's start sets it back).
    folder = flash(tmp_path, None)
    (folder / "main.py").write_text("import gc\nprint('threshold', gc.threshold())\n")
    board = Board(folder).start()
    assert board.wait(20) == 0
    assert "threshold 4096" in board.console()


def boot(mp, server):
    (mp.flash / "config.json").write_text(json.dumps({"server": server.url, "token": "TEST_TOKEN",
                                                      "interval_s": 60, "pins": {"23": 23}}))
    return mp(LOOP).results


def fw_states(server):
    return [r.get("values", r) for r in all_records(telemetry(server)) if "fw_state" in r.get("values", r)]


@pytest.mark.slow
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
    assert boot(mp, server) == [[], ["iotlink.ota", "iotlink.ota_swap"]]
    assert fw_states(server) == [{"fw_state": "FAILED",
                                  "fw_error": "package announced without size and checksum: not applied"}]


# The OTA code stands in for a board too full to load it (MemoryError while it works) or for a
# report the server did not take: the loop must neither keep it in RAM nor stop behind it.
FAILING_REPORT = """
import sys
from iotlink import app, app_once
from iotlink.errors import ConnectionFailed

class ota:  # what `from iotlink import ota` finds, until app.py unloads it
    @staticmethod
    def follow(app):  # the start-up report
        if FAILURE == "memory":
            raise MemoryError("memory allocation failed")
        raise ConnectionFailed("server gone")  # the server did not take it

sys.modules["iotlink.ota"] = ota
a = app_once.start(app.App, "config.json", None)
try:
    a.step()
except Exception as e:
    out(repr(e))
out(["iotlink.ota" in sys.modules, len(a.start_tasks)])
a.take_reading(0)
while a.start_tasks or a.outbox.pending:
    a.step()
out(a.outbox.pending)
"""


def test_a_board_too_full_for_the_ota_code_turns_updates_off_and_sends_its_telemetry(mp, server, device):
    (mp.flash / "config.json").write_text(json.dumps({"server": server.url, "token": "TEST_TOKEN",
                                                      "interval_s": 60, "pins": {}}))
    run = mp('FAILURE = "memory"\n' + FAILING_REPORT)
    assert run.results == [[False, 1], 0]  # no exception; the report task is done, the queue sent
    assert "ota: not enough free memory: updates off until a reset" in run.stdout
    assert [r for r in all_records(telemetry(server)) if "uptime_s" in r.get("values", r)]


def test_a_report_the_server_did_not_take_is_retried_with_the_ota_code_unloaded(mp, server, device):
    (mp.flash / "config.json").write_text(json.dumps({"server": server.url, "token": "TEST_TOKEN",
                                                      "interval_s": 60, "pins": {}}))
    run = mp('FAILURE = "server"\n' + FAILING_REPORT.replace("while a.start_tasks or", "while"))
    assert run.results[:2] == ["ConnectionFailed('server gone',)", [False, 2]]


SHORT_HEAP_DRAIN = """
from iotlink import app, app_once

class gc:  # the heap a board would report with this much free
    collect = staticmethod(lambda: None)
    mem_free = staticmethod(lambda: FREE)

app.gc = gc
a = app_once.start(app.App, "config.json", None)
for i in range(60):
    a.outbox.add({"reading": i, "label": "x" * 40}, 1700000000000 + i, i)
while a.outbox.pending:
    a.send_batch()
"""


def test_a_short_heap_drains_the_queue_in_smaller_batches(mp, server, device):
    (mp.flash / "config.json").write_text(json.dumps({"server": server.url, "token": "TEST_TOKEN",
                                                      "interval_s": 60, "pins": {}}))
    sizes = {}
    for free in (400000, 4000):
        server.exchanges.clear()
        mp(f"FREE = {free}\n" + SHORT_HEAP_DRAIN)
        bodies = [json.loads(x.body) for x in server.requests_to("/telemetry")]
        assert [r["values"]["reading"] for r in all_records(bodies)] == list(range(60))
        sizes[free] = [len(b) for b in bodies]
    # A record is about 100 bytes of JSON: 4 KB with room to spare, 1 KB (free / 4) with 4 KB free.
    assert sizes[400000] == [40, 20]
    assert max(sizes[4000]) <= 10 and sum(sizes[4000]) == 60


FRAGMENTED = """
from iotlink import app, app_once
a = app_once.start(app.App, "config.json", None)
while a.start_tasks:
    a.step()
real = a.client.transport.request
SHORT = [True]
def short(*args):  # a request the heap has no room for, as in a heap fragmented for good
    if SHORT[0]:
        raise MemoryError("memory allocation failed, allocating 512 bytes")
    return real(*args)
a.client.transport.request = short
def tries(n):
    for i in range(n):
        try:
            a.announce()
        except Exception as e:
            a.recover(e)  # as App.run does: a MemoryError out of it ends App.run
tries(9)
SHORT[0] = False
a.announce()
a.healthy()  # one success: the count starts again
SHORT[0] = True
tries(9)
out(a.memory_errors)
try:
    tries(1)
except MemoryError:
    out("escaped")
"""


def test_a_heap_short_at_every_try_since_the_last_success_resets_the_board(mp, server, device):
    # App.run then lets the MemoryError escape to run(), which resets the board 30 s later:
    # a reset is what makes a fragmented heap whole again, and the queue is on flash.
    (mp.flash / "config.json").write_text(json.dumps({"server": server.url, "token": "TEST_TOKEN",
                                                      "interval_s": 60, "pins": {}}))
    run = mp(FRAGMENTED)
    assert run.results == [9, "escaped"], run.stdout
    assert "memory: short 10 times since the last success" in run.stdout
