"""The real boot.py + main.py with `"platform": "thethings"` on a virtual board, against the
devserver's thethings.iO emulation (srv.thethings): activation, telemetry as values with client
time, interval_s from $settings, commands to pins with replies, a failing server.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from support import config, console_has, flash, queued, unix_s, wait_until

from iotlink_tools.vboard import Board

pytestmark = pytest.mark.slow  # the firmware's loop on virtual boards

SENSORS = "def read():\n    return {'temperature': 21.5, 'door': 'open', 'bad key': 1, 'nothing': None}\n"


def tt_config(server, token, **changes):
    return config(server, platform="thethings", token=token, **changes)


def writes(server, token):
    """The bodies of the thing's successful writes, in order of arrival."""
    return [e.json()["values"] for e in server.requests_to(f"/v2/things/{token}", "POST") if e.status == 201]


def telemetry_writes(server, token):
    return [values for values in writes(server, token) if any(v["key"] == "uptime_s" for v in values)]


def wait_listening(server, token):
    """Until the board's channel is open and its catch-up reads are done: a value written
    during those reads would reach it twice (read, and on the channel)."""
    assert server.thethings.wait_subscribed(token)
    wait_until(lambda: server.requests_to(f"/v2/things/{token}/resources/getGpioStatus", "GET"), 10,
               "the catch-up read of the last command key")


def test_activation_saves_the_token_and_a_restart_reuses_it(server, tmp_path):
    thing = server.thethings.add_thing(activation_code="ACT-17")
    token = thing["token"]
    cfg = tt_config(server, None, activation_code="ACT-17")
    folder = flash(tmp_path, cfg)
    with Board(folder) as board:
        wait_until(lambda: server.thethings.values(token, "uptime_s"), 15, "telemetry of the activated thing")
    saved = json.loads((folder / "config.json").read_text())
    assert saved == {**cfg, "token": token}
    activations = [e for e in server.exchanges if e.method == "POST" and e.path.rstrip("/") == "/v2/things"]
    assert [e.json() for e in activations] == [{"activationCode": "ACT-17"}]
    assert [e.status for e in activations] == [201]
    assert "provision: token saved to config.json" in board.console()
    assert token not in board.console() and "ACT-17" not in board.console()
    before = len(server.thethings.values(token, "uptime_s"))
    with Board(folder):
        wait_until(lambda: len(server.thethings.values(token, "uptime_s")) > before + 1, 15, "telemetry after a restart")
    assert len([e for e in server.exchanges if e.method == "POST" and e.path.rstrip("/") == "/v2/things"]) == 1


def test_a_refused_activation_code_waits_instead_of_hammering(server, tmp_path):
    server.thethings.add_thing(activation_code="ACT-17")
    with Board(flash(tmp_path, tt_config(server, None, activation_code="WRONG"))) as board:
        wait_until(console_has(board, "server: refused: ProvisionError"), 10)
        time.sleep(1.5)
        assert board.running
    assert len(server.requests_to("/v2/things", "POST")) == 1
    assert "next try in 300 s" in board.console() and "WRONG" not in board.console()


def test_telemetry_arrives_as_values_with_client_time_and_attributes_as_settings(server, tmp_path):
    token = server.thethings.add_thing()["token"]
    with Board(flash(tmp_path, tt_config(server, token), SENSORS)) as board:
        wait_until(lambda: len(telemetry_writes(server, token)) >= 3, 15, "three telemetry writes")
    sent = telemetry_writes(server, token)
    for values in sent:  # one record or more per write, each record's values with its time
        assert all(re.fullmatch(r"\d{14}", v["datetime"]) for v in values)
        for stamp in {v["datetime"] for v in values}:
            record = {v["key"]: v["value"] for v in values if v["datetime"] == stamp}
            assert set(record) == {"temperature", "door", "uptime_s", "mem_free"}
            assert record["temperature"] == 21.5
    stamps = [unix_s(v["datetime"]) for values in sent for v in values]
    assert stamps == sorted(stamps) and abs(stamps[-1] - time.time()) < 60  # the clock was set
    stored = server.thethings.values(token, "door")
    assert stored[0]["value"] == "open" and len(stored) >= 3
    uptimes = [v["value"] for v in server.thethings.values(token, "uptime_s")]
    assert uptimes == sorted(uptimes, reverse=True)  # newest first, by the board's own time
    # Attributes: one $settings field per request, merged by the server.
    settings_writes = [w for w in writes(server, token) if w[0]["key"].startswith("$settings")]
    assert sorted(settings_writes, key=lambda w: w[0]["key"]) == [
        [{"key": "$settings.gpio_pins", "value": ["23", "led"]}],
        [{"key": "$settings.iotlink_version", "value": "0.1.0"}]]
    assert server.thethings.settings(token) == {"gpio_pins": ["23", "led"], "iotlink_version": "0.1.0"}
    console = board.console()
    assert "thethings: value 'bad key' left out" in console and "thethings: value 'nothing' left out" in console
    assert console.count("left out") == 2  # said once per key, not every record
    assert token not in console and "WIFI-PASSWORD" not in console


def test_interval_follows_the_settings(server, tmp_path):
    token = server.thethings.add_thing(settings={"interval_s": 0.5})["token"]
    with Board(flash(tmp_path, tt_config(server, token))) as board:
        wait_until(console_has(board, "interval: 0.5 s"), 10)
        server.thethings.write(token, [{"key": "$settings.interval_s", "value": "fast"}])
        wait_until(console_has(board, "attributes: interval_s ignored (not a positive number)"), 10)
        server.thethings.write(token, [{"key": "$settings.interval_s", "value": 2}])
        wait_until(console_has(board, "interval: 2 s"), 10)
    reads = [e for e in server.requests_to(f"/v2/things/{token}/resources/", "GET") if "settings" in e.path]
    assert len(reads) >= 3 and {e.path.rsplit("/", 1)[1] for e in reads} == {"$settings"}


def test_commands_move_pins_and_replies_are_written_back(server, tmp_path):
    token = server.thethings.add_thing()["token"]
    # Written while the board is off: applied once it is up (the latest value of a command key).
    server.thethings.write(token, {"setGpio": {"pin": "led", "value": 1}})
    with Board(flash(tmp_path, tt_config(server, token))) as board:
        wait_until(lambda: board.pins() == {"LED": 1}, 10, "the command written before the boot")
        wait_listening(server, token)
        server.thethings.write(token, {"setGpio": {"pin": "23", "value": 1}})
        wait_until(lambda: board.pins() == {"LED": 1, 23: 1}, 10, "pin 23 high")
        wait_until(lambda: len(server.thethings.values(token, "setGpio.result")) == 2, 10, "the reply")
        server.thethings.write(token, {"getGpio": {"pin": "2"}})
        wait_until(lambda: server.thethings.values(token, "getGpio.result"), 10, "the error reply")
        server.thethings.write(token, {"note": "not a command"})
        server.thethings.write(token, {"getGpioStatus": {}})
        wait_until(lambda: server.thethings.values(token, "getGpioStatus.result"), 10, "the status reply")
        count = len(telemetry_writes(server, token))
        wait_until(lambda: len(telemetry_writes(server, token)) > count, 10, "telemetry after the commands")
    assert board.pin_writes() == [{"pin": "LED", "value": 1}, {"pin": 23, "value": 1}]  # each run once
    assert [v["value"] for v in server.thethings.values(token, "setGpio.result")] == \
        [{"pin": "23", "value": 1}, {"pin": "led", "value": 1}]
    assert server.thethings.values(token, "getGpio.result")[0]["value"] == {"error": "pin '2' is not allowed"}
    assert server.thethings.values(token, "getGpioStatus.result")[0]["value"] == {"23": True, "led": True}
    replies = [w[0]["key"] for w in writes(server, token) if w[0]["key"].endswith(".result")]
    assert replies == ["setGpio.result", "setGpio.result", "getGpio.result", "getGpioStatus.result"]
    assert board.boots == 1


def test_a_failing_server_keeps_telemetry_queued_and_delivers_it_later_oldest_first(server, tmp_path):
    token = server.thethings.add_thing()["token"]
    with Board(flash(tmp_path, tt_config(server, token))) as board:
        wait_until(lambda: telemetry_writes(server, token), 10, "telemetry while the server answers")
        server.thethings.fail_next(503, count=6, path=f"/v2/things/{token}")
        wait_until(lambda: queued(board) >= 2, 15, "records queued")
        wait_until(console_has(board, "server: reachable again"), 15)
        wait_until(console_has(board, " 0 left"), 15, "the queue drained")
    posts = server.requests_to(f"/v2/things/{token}", "POST")
    failed = [e.json()["values"] for e in posts if e.status == 503]
    assert failed and all(e.status in (201, 503) for e in posts)
    delivered = [v for values in telemetry_writes(server, token) for v in values if v["key"] == "uptime_s"]
    stamps = [(v["datetime"], v["value"]) for v in delivered]
    assert [s[1] for s in stamps] == sorted(s[1] for s in stamps)  # oldest first
    assert len(set(stamps)) == len(stamps)  # nothing written twice
    lost = {(v["datetime"], v["value"]) for values in failed for v in values if v["key"] == "uptime_s"}
    assert lost <= set(stamps)  # every record a failed write carried came later, its time kept
    assert any(len(values) > 2 for values in telemetry_writes(server, token))  # a batch: one write
    assert not [p for p in (tmp_path / "board" / "queue").iterdir() if p.name.isdigit()]


def fail_once(server, when):
    """Make the devserver answer 500 to the first write whose records match `when`."""
    apply = server.thethings.apply
    failed = []

    def apply_or_fail(token, records, store, broadcast):
        if not failed and when(records):
            failed.append(records)
            raise RuntimeError("write lost")  # the devserver answers 500, stores nothing
        apply(token, records, store, broadcast)

    server.thethings.apply = apply_or_fail
    return failed


def test_a_lost_reply_is_written_again_and_the_command_runs_once(server, tmp_path):
    token = server.thethings.add_thing()["token"]
    failed = fail_once(server, lambda records: records[0]["key"] == "setGpio.result")
    with Board(flash(tmp_path, tt_config(server, token))) as board:
        wait_listening(server, token)
        server.thethings.write(token, {"setGpio": {"pin": "23", "value": 1}})
        wait_until(lambda: server.thethings.values(token, "setGpio.result"), 10, "the reply, written again")
    assert failed
    replies = [e for e in server.requests_to(f"/v2/things/{token}", "POST") if b"setGpio.result" in e.body]
    assert [e.status for e in replies] == [500, 201] and replies[0].body == replies[1].body
    assert board.pin_writes() == [{"pin": 23, "value": 1}]
    assert "rpc 1: delivered again, same reply" in board.console()


def test_a_batch_goes_in_writes_of_whole_records_and_a_retry_skips_what_was_written(server, mp):
    token = server.thethings.add_thing()["token"]
    fail_once(server, lambda records: any(r["key"] == "n" and r["value"] == 25 for r in records))
    run = mp(f"""
from iotlink.errors import HTTPError
from iotlink.thethings_device import TTDevice
dev = TTDevice({server.url!r}, {token!r})
batch = [{{"ts": 1700000000000 + i * 1000, "values": {{"n": i, "m": -i}}}} for i in range(40)]
try:
    dev.send_telemetry(batch)
except HTTPError as e:
    out(e.status)
dev.send_telemetry(batch)
out("sent")
""")
    assert run.results == [500, "sent"]
    bodies = [(e.status, e.json()["values"]) for e in server.requests_to(f"/v2/things/{token}", "POST")]
    assert [(status, len(values)) for status, values in bodies] == [(201, 50), (500, 30), (201, 30)]
    assert bodies[1][1] == bodies[2][1]  # records 25..39 again, not 0..24
    stored = server.thethings.values(token, "n")
    assert sorted(v["value"] for v in stored) == list(range(40))
    assert stored[-1]["datetime"] == "2023-11-14T22:13:20.000Z"  # 1700000000 s, the record's time
