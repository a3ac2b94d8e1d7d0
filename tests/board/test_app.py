"""The real boot.py + main.py on a virtual board (vboard.Board) against the devserver.

Each test flashes a folder with the firmware and a config.json, runs it as the sim does, and
asserts on what crossed the wire, the pins the fake machine logged and the files on the flash.
"""

from __future__ import annotations

import json
import re
import shutil
import time

import pytest
from support import REPO, TOKEN, config, console_has, flash, queued, records, run_mp, telemetry, wait_until

from iotlink_lab.faultproxy import FaultProxy
from iotlink_tools.devserver import DevServer
from iotlink_tools.devserver.core import DeviceNotFound
from iotlink_tools.firmware import compile_library
from iotlink_tools.vboard import Board, compiled_fakes, micropython_command
from iotlink_tools.vboard.sensors import numbered_sensors, readings

pytestmark = pytest.mark.slow  # the firmware's loop on virtual boards

# The shared attributes the loop reads: remote config, then the OTA announcements.
FOLLOWED = ",".join(["interval_s"] + [f"{p}_{f}" for p in ("fw", "sw") for f in
                                      ("title", "version", "size", "checksum", "checksum_algorithm", "url")])


def telemetry_once_created(server, name):
    """The stored telemetry of a device, or None while no device has that name."""
    try:
        return server.telemetry(name)
    except DeviceNotFound:
        return None


def test_telemetry_every_interval_with_health_and_sensor_values(server, device, tmp_path):
    sensors = "def read():\n    return {'temperature': 21.5, 'door': 'open'}\n"
    with Board(flash(tmp_path, config(server), sensors)) as board:
        wait_until(lambda: len(telemetry(server)) >= 3, 15, "three telemetry posts")
    sent = records(telemetry(server))
    for record in sent:
        assert set(record) == {"ts", "values"}
        assert set(record["values"]) == {"temperature", "door", "uptime_s", "mem_free"}
        assert record["values"]["temperature"] == 21.5 and record["values"]["mem_free"] > 0
    uptimes = [r["values"]["uptime_s"] for r in sent]
    stamps = [r["ts"] for r in sent]
    assert uptimes == sorted(uptimes) and uptimes[-1] > uptimes[0]
    assert all(b - a >= 900 for a, b in zip(stamps, stamps[1:]))  # one record per interval
    assert abs(stamps[-1] - time.time() * 1000) < 60000  # milliseconds, and the clock was set
    assert server.latest_telemetry("test-device")["door"][1] == "open"
    assert server.client_attributes("test-device") == {"gpio_pins": ["23", "led"], "iotlink_version": "0.1.0"}
    gets = server.requests_to(f"/api/v1/{TOKEN}/attributes", "GET")
    assert gets[0].query == {"sharedKeys": [FOLLOWED]}
    console = board.console()
    assert "server: " + server.url in console
    assert TOKEN not in console and "WIFI-PASSWORD" not in console
    assert board.boots == 1


def test_rpc_drives_pins_and_bad_requests_get_errors_while_the_loop_goes_on(server, device, tmp_path):
    with Board(flash(tmp_path, config(server))) as board:
        assert server.call_rpc("test-device", "setGpio", {"pin": "23", "value": 1}) == {"pin": "23", "value": 1}
        assert board.pins() == {23: 1}
        assert server.call_rpc("test-device", "getGpio", {"pin": 23}) == {"pin": "23", "value": 1}
        assert server.call_rpc("test-device", "reboot", {}) == {"error": "unknown method 'reboot'"}
        assert server.call_rpc("test-device", "setGpio", {"pin": "2", "value": 1}) == {"error": "pin '2' is not allowed"}
        assert server.call_rpc("test-device", "setGpio", "23=1") == {"error": "params must be an object"}
        assert server.call_rpc("test-device", "setGpio", {"pin": "led", "value": 7}) == \
            {"error": "'value' must be 0, 1, true or false"}
        assert server.call_rpc("test-device", "setGpioStatus", {"pin": "led", "enabled": True}) == \
            {"23": True, "led": True}
        assert server.call_rpc("test-device", "getGpioStatus", None) == {"23": True, "led": True}
        count = len(telemetry(server))
        wait_until(lambda: len(telemetry(server)) > count, 10, "telemetry after the RPCs")
    assert board.pin_writes() == [{"pin": 23, "value": 1}, {"pin": "LED", "value": 1}]
    replies = server.requests_to(f"/api/v1/{TOKEN}/rpc/", "POST")
    assert [e.path.rsplit("/", 1)[1] for e in replies] == [str(i) for i in range(8)]  # id 0 included
    assert replies[0].json() == {"pin": "23", "value": 1}
    # The console says which pin and level each GPIO call was about; other methods' params stay out.
    lines = [line for line in board.console().splitlines() if line.startswith("rpc ")]
    assert lines == ["rpc 0 setGpio pin=23 value=1 -> ok", "rpc 1 getGpio pin=23 -> ok", "rpc 2 reboot -> error",
                     "rpc 3 setGpio pin=2 value=1 -> error", "rpc 4 setGpio -> error",
                     "rpc 5 setGpio pin=led value=7 -> error", "rpc 6 setGpioStatus pin=led enabled=True -> ok",
                     "rpc 7 getGpioStatus -> ok"]
    assert board.boots == 1


def test_an_rpc_delivered_again_after_a_lost_reply_is_answered_not_run_twice(server, device, tmp_path):
    answer = server.answer_rpc
    lost = []

    def lose_first_reply(device_id, rpc_id, response):
        if not lost:
            lost.append(rpc_id)
            raise RuntimeError("reply lost")  # the devserver answers 500; the RPC stays unanswered
        answer(device_id, rpc_id, response)

    server.answer_rpc = lose_first_reply
    with Board(flash(tmp_path, config(server))) as board:
        reply = server.call_rpc("test-device", "setGpio", {"pin": "23", "value": 1}, timeout_s=10)
    assert reply == {"pin": "23", "value": 1}
    posts = server.requests_to(f"/api/v1/{TOKEN}/rpc/0", "POST")
    assert [e.status for e in posts] == [500, 200]
    assert posts[0].body == posts[1].body
    assert board.pin_writes() == [{"pin": 23, "value": 1}]  # run once
    assert "rpc 0: delivered again, same reply" in board.console()


def test_a_failing_or_sloppy_sensor_module_is_reported_and_the_board_goes_on(server, device, tmp_path):
    sensors = """
calls = []
def read():
    calls.append(1)
    n = len(calls)
    if n == 1:
        raise OSError(19)
    if n == 2:
        return [21.5]
    if n == 3:
        return {"t": 3, "raw": b"\\x01", "bad": float("nan")}
    return {"t": n}
"""
    with Board(flash(tmp_path, config(server), sensors)):
        wait_until(lambda: len(records(telemetry(server))) >= 4, 15, "four records")
    sent = [r["values"] for r in records(telemetry(server))]
    assert sent[0]["sensor_error"] == "OSError: [Errno 19] ENODEV"
    assert sent[1]["sensor_error"] == "TypeError: read() returned list, not a dict"
    assert sent[2]["t"] == 3 and "raw" not in sent[2] and "bad" not in sent[2]
    assert "not a name and a JSON value" in sent[2]["sensor_error"]
    assert sent[3]["t"] == 4 and "sensor_error" not in sent[3]
    assert all({"uptime_s", "mem_free"} <= v.keys() for v in sent)


def test_a_sensor_module_that_does_not_import_is_reported(server, device, tmp_path):
    with Board(flash(tmp_path, config(server), "def read(:\n")):
        wait_until(lambda: records(telemetry(server)), 10, "telemetry")
    values = records(telemetry(server))[0]["values"]
    assert values["sensor_error"].startswith("sensors.py: SyntaxError")
    assert {"uptime_s", "mem_free"} <= values.keys()


def test_a_missing_or_broken_config_is_reported_and_the_board_waits(server, tmp_path):
    with Board(flash(tmp_path, None, name="missing")) as missing, \
            Board(flash(tmp_path, {"server": server.url, "token": TOKEN, "interval_s": "fast",
                                   "wdt_ms": 1000}, name="broken")) as broken:
        wait_until(console_has(missing, "config: config.json not found; waiting for a fixed config"), 10)
        wait_until(console_has(broken, "config: config.json: 'interval_s' must be a positive number"), 10)
        time.sleep(2.5)  # longer than the broken config's watchdog: it is fed while waiting
        assert missing.running and broken.running
        assert missing.boots == 1 and broken.boots == 1
        assert broken.console().count("waiting for a fixed config") == 1  # said once, not every look
        assert "watchdog: 1000 ms" in broken.console()
    assert TOKEN not in broken.console()
    assert server.exchanges == []


def test_a_fixed_config_is_picked_up_without_a_reset(server, device, tmp_path):
    folder = flash(tmp_path, None)
    board = Board(folder)
    # The real firmware with a shorter look-again period than the 10 s a user gets.
    board.command = micropython_command() + ["-c", "from iotlink import app, app_once\napp_once.CONFIG_RETRY_S = 1\napp.run()"]
    with board:
        wait_until(console_has(board, "config.json not found"), 10)
        (folder / "config.json").write_text(json.dumps(config(server)))
        wait_until(lambda: telemetry(server), 10, "telemetry once the config is there")
    assert board.boots == 1


def test_self_provisioning_saves_the_token_and_later_boots_reuse_it(server, tmp_path):
    server.add_provision_profile("PROVISION-KEY", "PROVISION-SECRET")
    cfg = config(server, token=None,
                 provision={"device_name": "pump-17", "key": "PROVISION-KEY", "secret": "PROVISION-SECRET"})
    folder = flash(tmp_path, cfg)
    with Board(folder) as board:
        wait_until(lambda: telemetry_once_created(server, "pump-17"), 15, "telemetry from the provisioned device")
    dev = server.device("pump-17")
    saved = json.loads((folder / "config.json").read_text())
    assert saved == {**cfg, "token": dev["token"]}
    assert [e.json()["deviceName"] for e in server.requests_to("/api/v1/provision")] == ["pump-17"]
    assert dev["token"] not in board.console() and "PROVISION-SECRET" not in board.console()
    assert "provision: token saved to config.json" in board.console()
    before = len(telemetry(server, dev["token"]))
    with Board(folder):
        wait_until(lambda: len(telemetry(server, dev["token"])) > before + 1, 15, "telemetry after a restart")
    assert len(server.requests_to("/api/v1/provision")) == 1


def test_refused_provisioning_and_an_unknown_token_do_not_hammer_the_server(server, tmp_path):
    server.add_provision_profile("PROVISION-KEY", "PROVISION-SECRET")
    prov = config(server, token=None, provision={"key": "PROVISION-KEY", "secret": "WRONG"})
    with Board(flash(tmp_path, prov, name="prov")) as refused, \
            Board(flash(tmp_path, config(server, token="NO-SUCH-TOKEN"), name="tok")) as unknown:
        wait_until(console_has(refused, "server: refused: ProvisionError NOT_FOUND Provision data was not found!"), 10)
        wait_until(console_has(unknown, "server: refused: HTTP 401"), 10)
        time.sleep(2)
        assert refused.running and unknown.running
    assert len(server.requests_to("/api/v1/provision")) == 1
    assert len(server.requests_to("/api/v1/NO-SUCH-TOKEN/")) == 1  # then silence for 5 minutes
    assert "next try in 300 s" in unknown.console()
    assert "WRONG" not in refused.console() and "NO-SUCH-TOKEN" not in unknown.console()
    assert (tmp_path / "tok" / "queue").is_dir()  # telemetry meanwhile goes to the flash queue


PROVISION = {"device_name": "pump-17", "key": "PROVISION-KEY", "secret": "PROVISION-SECRET"}


def test_provisioning_retried_after_a_lost_reply_finds_the_device_that_try_created(server, tmp_path):
    server.add_provision_profile("PROVISION-KEY", "PROVISION-SECRET")
    with FaultProxy(server.url, rate=1.0, faults=("lose_reply",)) as proxy:
        folder = flash(tmp_path, config(proxy, token=None, provision=PROVISION))
        with Board(folder) as board:
            wait_until(lambda: server.requests_to("/api/v1/provision"), 10, "a provisioning request")
            proxy.rate = 0  # the server created the device, the board never heard
            wait_until(lambda: telemetry(server, server.device("pump-17")["token"]), 20, "telemetry")
    token = server.device("pump-17")["token"]
    assert len(server.devices()) == 1 and json.loads((folder / "config.json").read_text())["token"] == token
    asked = [e.json() for e in server.requests_to("/api/v1/provision")]
    assert len(asked) >= 2 and {a["token"] for a in asked} == {token}  # every try with the same token
    assert "provision: the device was created by an earlier try" in board.console()
    assert not (folder / "token.chosen").exists() and token not in board.console()


def test_a_token_the_server_no_longer_knows_is_replaced_by_provisioning_again(server, tmp_path):
    server.add_provision_profile("PROVISION-KEY", "PROVISION-SECRET")
    server.add_device("pump-17", "OLD-TOKEN")
    folder = flash(tmp_path, config(server, token="OLD-TOKEN", provision=PROVISION))
    with Board(folder) as board:
        wait_until(lambda: telemetry(server, "OLD-TOKEN"), 10, "telemetry with the old token")
        server.delete_device("pump-17")  # an admin deleted it: the board's token is unknown now
        wait_until(lambda: telemetry_once_created(server, "pump-17"), 20, "telemetry from the device provisioned again")
        wait_until(lambda: len(server.telemetry("pump-17")) >= 4, 10, "more of it")
    token = server.device("pump-17")["token"]
    assert token != "OLD-TOKEN" and json.loads((folder / "config.json").read_text())["token"] == token
    assert [e.json()["deviceName"] for e in server.requests_to("/api/v1/provision")] == ["pump-17"]
    assert "server: token refused; provisioning again" in board.console() and token not in board.console()


def test_a_refused_token_whose_name_is_taken_waits_instead_of_hammering(server, tmp_path):
    server.add_provision_profile("PROVISION-KEY", "PROVISION-SECRET")
    server.add_device("pump-17", "CURRENT-TOKEN")  # someone else holds the name
    with Board(flash(tmp_path, config(server, token="STALE-TOKEN", provision=PROVISION))) as board:
        wait_until(console_has(board, "next try in 300 s"), 10)
        time.sleep(2)
        assert board.running
    assert len(server.requests_to("/api/v1/provision")) == 1
    assert "server: token refused; provisioning again" in board.console()
    assert "refused: ProvisionError" in board.console()


def test_telemetry_queued_while_the_server_is_down_arrives_later_oldest_first(tmp_path):
    db = str(tmp_path / "server.sqlite")
    first = DevServer(port=0, db=db, async_timeout_ms=3000).start()
    first.add_device("test-device", TOKEN)
    folder = flash(tmp_path, config(first))
    board = Board(folder).start()
    try:
        # A record, not only the start-up OTA report: the queue went out once before the outage.
        wait_until(lambda: records(telemetry(first)), 10, "telemetry while the server is up")
        first.stop()
        wait_until(lambda: queued(board) >= 2, 15, "records queued")
        before_reboot = queued(board)
        board.stop()  # and a power cut while the server is away: the queue is on flash
        first_console = board.console()
        board = Board(folder).start()
        wait_until(lambda: queued(board) >= before_reboot + 2, 15, "more records queued after the reboot")
        down_until = time.time() * 1000
        second = DevServer(port=first.port, db=db, async_timeout_ms=3000).start()
        try:
            wait_until(console_has(board, "server: reachable again"), 15)
            wait_until(lambda: any(isinstance(b, list) for b in telemetry(second)), 15, "a batch")
            wait_until(lambda: "0 left" in board.console(), 15, "the queue drained")
        finally:
            second.stop()
    finally:
        board.stop()
    sent = records([b for b in telemetry(second) if isinstance(b, list)])
    assert len(sent) >= before_reboot + 2
    assert all("ts" in r for r in sent), first_console + board.console()
    # Oldest first: the boot before the power cut, then the one after (its uptime starts again),
    # the stamps rising across both.
    boots = []
    for r in sent:
        if not boots or r["values"]["uptime_s"] < boots[-1][-1]["values"]["uptime_s"]:
            boots.append([])
        boots[-1].append(r)
    assert len(boots) == 2 and len(boots[0]) >= before_reboot
    stamps = [r["ts"] for r in sent]
    assert stamps == sorted(set(stamps))
    assert all(ts < down_until for ts in stamps[:before_reboot + 2])  # when read, not when sent
    assert all(set(r["values"]) == {"uptime_s", "mem_free"} for r in sent)
    stored = {ts for ts, key, _ in second.telemetry("test-device", "uptime_s")}
    assert set(stamps) <= stored


# Readings numbered on flash (soak's sensors.py, one key): the order the server stores them in shows.
NUMBERED_SENSORS = numbered_sensors(keys=1)
SEQ = "s00"


def stored_seq(server):
    return [value for _, _, value in server.telemetry("test-device", SEQ)]


def all_delivered(server, folder):
    """How many readings were taken, once the server has every one of them."""
    taken = readings(folder)
    return len(stored_seq(server)) == taken and taken


def test_a_boot_whose_clock_is_set_behind_the_last_stamp_still_stamps_after_it(server, device, tmp_path):
    folder = flash(tmp_path, config(server, interval_s=0.3), NUMBERED_SENSORS)
    with Board(folder) as board:
        wait_until(lambda: len(server.telemetry("test-device", SEQ)) >= 3, 15, "the first boot's readings")
    server.clock_skew_s = -30  # the next boot sets its clock from a Date half a minute behind
    with Board(folder) as board:
        wait_until(lambda: readings(folder) >= 8 and all_delivered(server, folder), 20, "the second boot's readings")
    stored = stored_seq(server)  # in order of their stamps: the order they were read in
    assert stored == list(range(1, len(stored) + 1))
    assert all("ts" in r for r in records(telemetry(server)))
    shift = re.search(r"clock: (\d+) ms behind the last stamp", board.console())
    assert shift and 29_000 < int(shift.group(1)) < 31_000


def test_readings_of_a_boot_that_died_before_its_clock_was_set_are_placed_in_order(tmp_path):
    db = str(tmp_path / "server.sqlite")
    server = DevServer(port=0, db=db, async_timeout_ms=3000).start()
    server.add_device("test-device", TOKEN)
    port = server.port
    folder = flash(tmp_path, config(server, interval_s=0.3), NUMBERED_SENSORS)
    try:
        with Board(folder) as board:
            wait_until(lambda: len(server.telemetry("test-device", SEQ)) >= 3, 15, "readings with a clock")
    finally:
        server.stop()
    with Board(folder) as board:  # no server, so no clock: readings carry their uptime only
        first_dead = readings(folder) + 1
        wait_until(lambda: queued(board) >= 4, 20, "readings queued without a clock")
    last_dead = readings(folder)  # and the power goes before the clock was ever set
    server = DevServer(port=port, db=db, async_timeout_ms=3000).start()
    try:
        with Board(folder) as board:
            wait_until(lambda: readings(folder) > last_dead and all_delivered(server, folder), 20, "the queue sent")
        sent = records(telemetry(server))
    finally:
        server.stop()
    stored = stored_seq(server)  # in order of their stamps: the order they were read in
    assert stored == list(range(1, len(stored) + 1)) and len(stored) > last_dead
    assert all("ts" in r for r in sent)  # placed on the board, none left for the server to stamp
    dead = [r["ts"] for r in sent if first_dead <= r["values"][SEQ] <= last_dead]
    assert len(dead) == last_dead - first_dead + 1 and dead == sorted(set(dead))


def test_interval_follows_the_shared_attribute(server, device, tmp_path):
    server.set_shared_attributes("test-device", {"interval_s": 0.5})
    with Board(flash(tmp_path, config(server))) as board:
        wait_until(console_has(board, "interval: 0.5 s"), 10)
        server.set_shared_attributes("test-device", {"interval_s": "fast"})
        wait_until(console_has(board, "attributes: interval_s ignored (not a positive number)"), 10)
        server.delete_shared_attributes("test-device", ["interval_s"])
        wait_until(console_has(board, "interval: 1 s"), 10)  # back to config.json's
    reads = server.requests_to(f"/api/v1/{TOKEN}/attributes", "GET")
    assert len(reads) >= 3 and all(e.query == {"sharedKeys": [FOLLOWED]} for e in reads)


def test_the_watchdog_resets_a_hung_board_and_a_healthy_one_runs_on(server, device, tmp_path):
    hang_once = """
import os, time
def read():
    if "hung" not in os.listdir():
        open("hung", "w").close()
        time.sleep(2)  # longer than the watchdog
    return {}
"""
    with Board(flash(tmp_path, config(server, wdt_ms=1500), hang_once)) as board:
        wait_until(lambda: board.boots == 2, 15, "a reset by the watchdog")
        count = len(telemetry(server))
        wait_until(lambda: len(telemetry(server)) >= count + 3, 15, "telemetry after the reset")
    assert "machine: WDT not fed for 1500 ms: reset" in board.console()
    assert board.console().count("## reboot") == 1  # fed while healthy: no further resets
    polls = [int(e.query["timeout"][0]) for e in server.requests_to(f"/api/v1/{TOKEN}/rpc", "GET")]
    assert polls and max(polls) <= 750  # a long-poll ends well before the watchdog


def test_wifi_lost_is_rejoined_and_no_access_point_is_waited_out(server, device, tmp_path):
    with Board(flash(tmp_path, config(server), name="drop"), wifi="drop_after:1500") as dropping, \
            Board(flash(tmp_path, config(server, token="OTHER"), name="noap"), wifi="no_ap") as lonely:
        server.add_device("other", "OTHER")
        wait_until(console_has(dropping, "wifi: connecting to 'lab'"), 10, "a reconnection")
        count = len(telemetry(server))
        wait_until(lambda: len(telemetry(server)) > count + 1, 10, "telemetry after it")
        wait_until(console_has(lonely, "wifi: WifiError Wi-Fi 'lab': access point not found; next try"), 10)
        assert lonely.running
    assert telemetry(server, "OTHER") == []
    assert "boot: Wi-Fi 'lab': access point not found" in lonely.console()


def test_a_full_queue_reports_what_it_dropped_and_sends_the_rest(server, device, tmp_path):
    folder = flash(tmp_path, config(server, queue_kb=8))
    # A long outage the board lived through: far more records than 8 KiB hold.
    run = run_mp("""
from iotlink.store import Store
s = Store(max_bytes=8192)
for i in range(300):
    s.append({"ts": 1700000000000 + i * 1000, "values": {"n": i}})
out([s.pending, s.dropped])
""", folder)
    pending, dropped = run.result
    assert dropped > 0 and pending + dropped == 300
    with Board(folder):
        wait_until(lambda: any("dropped" in r["values"] for r in records(telemetry(server))), 15,
                   "telemetry reporting the drops")
        wait_until(lambda: len([r for r in records(telemetry(server)) if "n" in r["values"]]) == pending,
                   15, "every kept record")
    old = [r for r in records(telemetry(server)) if "n" in r["values"]]
    assert [r["values"]["n"] for r in old] == list(range(dropped, 300))  # the newest, oldest first
    assert [r["ts"] for r in old] == [1700000000000 + n * 1000 for n in range(dropped, 300)]
    live = [r["values"] for r in records(telemetry(server)) if "uptime_s" in r["values"]]
    assert live[0]["dropped"] == dropped


def test_the_example_sensor_module_runs_on_a_virtual_board(server, device, tmp_path):
    example = (REPO / "examples" / "sensors.py").read_text()
    with Board(flash(tmp_path, config(server), example)):
        wait_until(lambda: records(telemetry(server)), 10, "telemetry")
    values = records(telemetry(server))[0]["values"]
    assert "sensor_error" not in values
    assert 20 < values["chip_temp"] < 35  # the fake RP2040 sensor reads about 27 degC


def test_the_firmware_as_mpy_runs_in_a_small_heap(server, device, tmp_path):
    # As a board gets it from `iotlink mpy` / `iotlink deploy`; the fakes compiled too, as
    # a board's machine and network are built in.
    folder = flash(tmp_path, config(server))
    shutil.rmtree(folder / "lib")
    compile_library(folder / "lib")
    fakes = compiled_fakes(tmp_path / "fakes")
    # `make bench` finds the smallest heap for 1,000 iterations; 96 KiB leave a margin above it for
    # a loaded test machine.
    with Board(folder, heapsize="96K", env={"MICROPYPATH": f"{fakes}:lib:.frozen"}) as board:
        wait_until(lambda: records(telemetry(server)), 10, "telemetry")
        assert server.call_rpc("test-device", "setGpio", {"pin": "23", "value": 1}) == {"pin": "23", "value": 1}
        wait_until(lambda: len(telemetry(server)) >= 2, 10, "telemetry")
    assert board.boots == 1 and board.pins() == {23: 1}
    assert all(r["values"]["mem_free"] < 96 * 1024 for r in records(telemetry(server)))
