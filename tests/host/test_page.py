"""The devserver's web page: its assets, the REST calls it makes, and the page itself in a real
headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request

import pytest
from support import REPO, wait_until

from iotlink_tools.commands.sim import board_config
from iotlink_tools.rest import ThingsBoardREST
from iotlink_tools.vboard import Board, prepare_flash

PINS = {"23": 23, "led": "LED"}


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


def rest(server):
    return ThingsBoardREST(server.url, "tenant@thingsboard.org", "tenant", retries=0)


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


def test_the_pages_rpc_moves_the_pin_and_returns_the_reply(server, device, board):
    reported(server, device)
    reply = rest(server).rpc(device["id"], "setGpio", {"pin": "23", "value": 1})
    assert reply == {"pin": "23", "value": 1}
    assert board.pins() == {23: 1}
    answer = server.requests_to(f"/api/v1/{device['token']}/rpc/", "POST")[-1]
    assert answer.json() == {"pin": "23", "value": 1}  # the device's answer, as it crossed the wire


# ---- the page in a real browser ---------------------------------------------------------

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
    # Readable: memory in MB, with the value the board sent kept in data-value.
    text, sent = browser.execute_script(  # one read: the table is redrawn at every poll
        "const cell = arguments[0].querySelector('tr[data-key=mem_free] td.value');"
        "return [cell.textContent, Number(cell.dataset.value)]", card)
    assert sent in [value for _, _, value in server.telemetry(device["id"], "mem_free")]
    assert text == f"{sent / 1024**2:.1f} MB"

    pins = wait.until(lambda d: card.find_elements(By.CSS_SELECTOR, ".pins li"))
    assert [p.get_attribute("data-pin") for p in pins] == ["23", "led"]
    switch = card.find_element(By.CSS_SELECTOR, 'li[data-pin="23"] .switch')
    wait.until(lambda d: switch.is_enabled())  # once the board answered getGpioStatus
    assert switch.get_attribute("aria-checked") == "false"
    switch.click()

    reply = card.find_element(By.CSS_SELECTOR, 'li[data-pin="23"] .reply')
    wait.until(lambda d: reply.text.startswith("→ {"))
    assert json.loads(reply.text[2:]) == {"pin": "23", "value": 1}
    assert switch.get_attribute("aria-checked") == "true"
    assert board.pins() == {23: 1}
    sent = [r.json() for r in server.requests_to(f"/api/rpc/twoway/{device['id']}", "POST")]
    assert {"method": "setGpio", "params": {"pin": "23", "value": 1}, "timeout": 10000} in sent
    # The page used ThingsBoard's REST API and nothing else.
    assert {e.path.split("/")[2] for e in server.exchanges if e.path.startswith("/api/")
            and not e.path.startswith("/api/v1/")} == {"auth", "tenant", "plugins", "rpc"}

    browser.save_screenshot(str(tmp_path / "page.png"))
    if os.environ.get("IOTLINK_SCREENSHOT"):  # for a person to look at the page
        shutil.copy(tmp_path / "page.png", os.environ["IOTLINK_SCREENSHOT"])
