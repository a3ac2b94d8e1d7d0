"""The devserver's web page: its JSON endpoints, and the page itself in a real headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request

import pytest
from support import REPO, wait_until

from iotlink_tools.commands.sim import board_config
from iotlink_tools.vboard import Board, prepare_flash

PINS = {"23": 23, "led": "LED"}
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def board(server, device, tmp_path):
    """A virtual board running the real firmware, sending telemetry every second."""
    flash = prepare_flash(tmp_path / "board", board_config(server.url, device["token"], PINS, 1))
    board = Board(flash).start()
    yield board
    board.stop()


def get(server, path):
    with urllib.request.urlopen(server.url + path, timeout=5) as resp:
        return resp.status, resp.headers.get("Content-Type"), resp.read()


def post_json(server, path, body):
    req = urllib.request.Request(server.url + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def reported(server, device):
    def ready():
        latest = server.latest_telemetry(device["id"])
        return "uptime_s" in latest and "gpio_pins" in server.client_attributes(device["id"])
    wait_until(ready, 15, "the board's first telemetry and gpio_pins")


def test_page_and_its_assets_are_served(server):
    status, ctype, body = get(server, "/")
    assert status == 200 and ctype.startswith("text/html")
    assert b'src="/static/app.js"' in body and b'href="/static/style.css"' in body
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        status, ctype, body = get(server, f"/static/{name}")
        assert status == 200 and kind in ctype
        assert body == (REPO / "tools/iotlink_tools/devserver/static" / name).read_bytes()
    with pytest.raises(urllib.error.HTTPError) as err:
        get(server, "/static/..%2Fcore.py")
    assert err.value.code == 404


def test_devices_endpoint_shows_latest_telemetry_and_allowed_pins(server, device):
    server.add_device("quiet-device", "QUIET_TOKEN")
    server.store_telemetry(device["id"], 1000, {"uptime_s": 5, "mem_free": 100})
    server.store_telemetry(device["id"], 2000, {"uptime_s": 10})
    server.save_attributes(device["id"], "CLIENT_SCOPE", {"gpio_pins": ["23", "led"]})

    status, _, body = get(server, "/ui/devices")
    data = json.loads(body)
    assert status == 200 and isinstance(data["now_ms"], int)
    by_name = {d["name"]: d for d in data["devices"]}
    assert by_name["test-device"]["telemetry"] == {"uptime_s": {"ts": 2000, "value": 10},
                                                   "mem_free": {"ts": 1000, "value": 100}}
    assert by_name["test-device"]["last_ts"] == 2000
    assert by_name["test-device"]["gpio_pins"] == ["23", "led"]
    assert by_name["quiet-device"] == {"id": server.device("quiet-device")["id"], "name": "quiet-device",
                                       "type": "default", "telemetry": {}, "last_ts": None, "gpio_pins": []}
    assert "TEST_TOKEN" not in body.decode()  # the page never needs a token


def test_rpc_endpoint_moves_the_pin_and_returns_the_reply(server, device, board):
    reported(server, device)
    status, body = post_json(server, f"/ui/devices/{device['id']}/rpc",
                             {"method": "setGpio", "params": {"pin": "23", "value": 1}})
    assert (status, body) == (200, {"reply": {"pin": "23", "value": 1}})
    assert board.pins() == {23: 1}
    reply = server.requests_to(f"/api/v1/{device['token']}/rpc/", "POST")[-1]
    assert reply.json() == {"pin": "23", "value": 1}  # the device's answer, as it crossed the wire


def test_rpc_endpoint_errors(server, device):
    url = f"/ui/devices/{device['id']}/rpc"
    assert post_json(server, url, {"method": "setGpio", "params": {}, "timeout": 300})[0] == 504
    assert post_json(server, url, {"params": {}})[0] == 400
    assert post_json(server, url, {"method": "setGpio", "timeout": 0})[0] == 400
    assert post_json(server, "/ui/devices/no-such-device/rpc", {"method": "setGpio", "timeout": 300})[0] == 404


# ---- the page in a real browser ---------------------------------------------------------

@pytest.fixture
def browser(tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("CI"):
            pytest.fail("chromium/chromium-driver missing: `make test` installs them")
        pytest.skip("chromium/chromium-driver missing: `make test` installs them")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--window-size=1100,700", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.mark.browser
def test_page_shows_live_telemetry_and_switches_a_pin(server, device, board, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 15)
    browser.get(server.url + "/")
    card = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, '[data-device="test-device"]'))

    def shown(key):
        cells = card.find_elements(By.CSS_SELECTOR, f'tr[data-key="{key}"] td.value')
        return cells[0].text if cells else None

    # Live: the uptime shown follows what the server stores, without reloading the page.
    first = wait.until(lambda d: shown("uptime_s"))
    wait.until(lambda d: shown("uptime_s") != first)
    latest = server.latest_telemetry(device["id"])
    assert shown("mem_free") == str(latest["mem_free"][1])

    pins = wait.until(lambda d: card.find_elements(By.CSS_SELECTOR, ".pins li"))
    assert [p.get_attribute("data-pin") for p in pins] == ["23", "led"]
    switch = card.find_element(By.CSS_SELECTOR, 'li[data-pin="23"] .switch')
    assert switch.get_attribute("aria-checked") == "false"
    switch.click()

    reply = card.find_element(By.CSS_SELECTOR, 'li[data-pin="23"] .reply')
    wait.until(lambda d: reply.text.startswith("→ {"))
    assert json.loads(reply.text[2:]) == {"pin": "23", "value": 1}
    assert switch.get_attribute("aria-checked") == "true"
    assert board.pins() == {23: 1}
    sent = server.requests_to("/ui/devices/", "POST")[-1]
    assert sent.json() == {"method": "setGpio", "params": {"pin": "23", "value": 1}}

    browser.save_screenshot(str(tmp_path / "page.png"))
    if os.environ.get("IOTLINK_SCREENSHOT"):  # for a person to look at the page
        shutil.copy(tmp_path / "page.png", os.environ["IOTLINK_SCREENSHOT"])
