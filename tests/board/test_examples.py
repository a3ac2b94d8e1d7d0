"""The files in examples/: each config passes the firmware's own checks in MicroPython, the https
config verifies a server with the CA file it names, the fleet CSV reads without a bad row, and the
app example answers its RPC method and follows its shared attribute on a virtual board."""

from __future__ import annotations

import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from support import REPO, load, records, telemetry, wait_until

from iotlink_tools.devserver import DevServer
from iotlink_tools.commands.provision import COLUMNS, read_fleet
from iotlink_lab.tlsutil import make_pki
from iotlink_tools.vboard import Board, prepare_flash

EXAMPLES = REPO / "examples"
CONFIGS = sorted(p.name for p in EXAMPLES.glob("*.json") if p.name != "fleet-base.json")


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def test_there_is_a_config_for_each_platform_and_way_to_a_token():
    assert CONFIGS == ["thethings-activation.json", "thethings-token.json", "thingsboard-http.json",
                       "thingsboard-https.json", "thingsboard-provision.json"]


@pytest.mark.parametrize("name", CONFIGS)
def test_each_example_config_passes_the_firmware_checks(mp, name):
    run = load(mp, (EXAMPLES / name).read_text())
    kind, cfg = run.result
    assert kind == "ok", cfg
    assert "unknown key" not in run.stdout  # every key is one the firmware uses
    assert cfg == {**cfg, **example(name)}  # loaded as written, defaults only added


def test_the_fleet_base_config_passes_the_checks_once_provision_adds_server_and_token(mp):
    base = example("fleet-base.json")
    run = load(mp, {**base, "platform": "thingsboard", "server": "http://192.168.1.10:8080", "token": "T"})
    kind, cfg = run.result
    assert kind == "ok", cfg
    assert "unknown key" not in run.stdout
    assert cfg["queue_kb"] == base["queue_kb"] and cfg["pins"] == base["pins"]


def test_the_fleet_csv_has_every_column_and_no_bad_row():
    boards, problems = read_fleet(EXAMPLES / "fleet.csv", wifi_default=True)  # fleets.md gives --wifi-ssid
    assert problems == []
    header = (EXAMPLES / "fleet.csv").read_text().splitlines()[0].split(",")
    assert tuple(header) == COLUMNS
    assert [b.name for b in boards] == ["pump-01", "pump-02", "tank-01", "tank-02"]
    assert {b.type for b in boards} == {"esp32", "picow"}
    assert [b.port for b in boards][-1] == ""  # a row the next board found on USB takes


def test_the_https_example_verifies_the_server_with_the_ca_file_it_names(mp, tmp_path):
    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki")
    ca = x509.load_pem_x509_certificate(pki["ca"].read_bytes())
    with DevServer(async_timeout_ms=3000, tls=(str(pki["cert"]), str(pki["key"]))) as server:
        server.add_device("pump-17", "TLS_TOKEN")
        cfg = {**example("thingsboard-https.json"), "server": server.url, "token": "TLS_TOKEN"}
        flash = prepare_flash(tmp_path / "board", cfg)
        (flash / cfg["ca"]).write_bytes(ca.public_bytes(Encoding.DER))  # as the guide exports it
        with Board(flash) as board:
            wait_until(lambda: records(telemetry(server, "TLS_TOKEN")), 15, "telemetry over TLS")
        assert "TLSError" not in board.console() and board.boots == 1
        # The board trusts the first certificate of the file: a whole chain as the server sends
        # it (its own certificate first) is refused, and nothing is sent.
        (mp.flash / "chain.pem").write_bytes(pki["cert"].read_bytes() + pki["ca"].read_bytes())
        run = mp(f"""
from iotlink.errors import TLSError
from iotlink.thingsboard import ThingsBoard
try:
    ThingsBoard({server.url!r}, "TLS_TOKEN", cadata=open("chain.pem", "rb").read()).send_telemetry({{"v": 1}})
    out("sent")
except TLSError:
    out("TLSError")
""")
        assert run.result == "TLSError"


def test_the_app_example_answers_its_rpc_method_and_follows_its_shared_attribute(server, device, tmp_path):
    cfg = {"server": server.url, "token": "TEST_TOKEN", "interval_s": 1, "pins": {"led": "LED"}}
    flash = prepare_flash(tmp_path / "board", cfg)
    (flash / "main.py").write_text((EXAMPLES / "app_main.py").read_text())
    server.set_shared_attributes("test-device", {"target_c": 22.5})
    with Board(flash) as board:
        wait_until(lambda: "app: target 22.5 C" in board.console(), 15, "the shared attribute")
        assert server.call_rpc("test-device", "getTarget", {}) == {"target": 22.5, "unit": "C"}
        assert server.call_rpc("test-device", "getTarget", {"unit": "F"}) == {"target": 72.5, "unit": "F"}
        assert server.call_rpc("test-device", "getTarget", {"unit": "K"}) == {"error": "getTarget: unit must be C or F"}
        server.set_shared_attributes("test-device", {"target_c": "warm"})
        wait_until(lambda: "app: target_c ignored" in board.console(), 15, "a bad set point ignored")
        assert server.call_rpc("test-device", "getTarget", None) == {"target": 22.5, "unit": "C"}
        # The stock loop goes on beside the app: pins, telemetry.
        assert server.call_rpc("test-device", "setGpio", {"pin": "led", "value": 1}) == {"pin": "led", "value": 1}
        wait_until(lambda: records(telemetry(server)), 10, "telemetry")
    assert board.pins() == {"LED": 1} and board.boots == 1
    asked = server.requests_to("/api/v1/TEST_TOKEN/attributes", "GET")[0].query["sharedKeys"][0].split(",")
    assert "target_c" in asked and "interval_s" in asked
