"""The web page as a person uses it, in a real headless Chromium against the devserver and real
virtual boards: charts of what the boards sent, pin switches that show the board's own state,
shared attributes that change a board, cards that go grey when a board or the server goes away,
readable numbers, and server data shown only as text."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request

import pytest
from support import REPO, wait_until

from iotlink_tools.commands.sim import board_config
from iotlink_tools.rest import ThingsBoardREST
from iotlink_tools.vboard import Board, prepare_flash

STATIC = REPO / "tools" / "iotlink_tools" / "devserver" / "static"
UPLOT = STATIC / "node_modules" / "uplot"
MINUTE = 60 * 1000
HOUR = 60 * MINUTE
WAIT_S = 30


@pytest.fixture
def board(server, device, tmp_path):
    """A virtual board with the real firmware: pins 23 and led, telemetry every second."""
    flash = prepare_flash(tmp_path / "board", board_config(server.url, device["token"], {"23": 23, "led": "LED"}, 1))
    with Board(flash) as running:
        yield running


def fetch(server, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return resp.status, resp.headers.get("Content-Type"), resp.read()


def open_card(browser, server, name="test-device"):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_S)
    browser.get(server.url + "/")
    return wait, wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'[data-device="{name}"]'))


def css(element, selector):
    from selenium.webdriver.common.by import By

    return element.find_elements(By.CSS_SELECTOR, selector)


def chart(browser, card, key):
    """[times, values] of the key's chart, as its uPlot instance holds them (None: no chart)."""
    return browser.execute_script(
        "const figure = arguments[0].querySelector(`.chart[data-key='${arguments[1]}']`);"
        "return figure ? [Array.from(figure.uplot.data[0]), Array.from(figure.uplot.data[1])] : null",
        card, key)


def switches(card):
    return {item.get_attribute("data-pin"): (css(item, ".switch")[0].get_attribute("aria-checked"),
                                             css(item, ".switch")[0].is_enabled())
            for item in css(card, ".pins li")}


def choose_range(browser, label):
    button = css(browser, f'#ranges button[data-minutes="{label}"]')[0]
    button.click()
    assert button.get_attribute("aria-pressed") == "true"


# ---- the assets ------------------------------------------------------------------------------

def test_the_chart_library_is_served_from_the_pinned_npm_package_and_nothing_else(server):
    assert UPLOT.is_dir(), "the page's npm package is missing: `make` installs it (npm ci)"
    lock = json.loads((STATIC / "package-lock.json").read_text())
    assert lock["packages"][""]["dependencies"] == {"uplot": "1.6.32"}
    assert json.loads((UPLOT / "package.json").read_text())["version"] == "1.6.32"
    for name, kind in (("uPlot.iife.min.js", "javascript"), ("uPlot.min.css", "text/css")):
        status, ctype, body = fetch(server, f"/static/vendor/{name}")
        assert status == 200 and kind in ctype
        assert body == (UPLOT / "dist" / name).read_bytes()
    status, ctype, body = fetch(server, "/static/favicon.svg")
    assert ctype.startswith("image/svg+xml") and body.startswith(b"<svg")
    # A fixed list of files: nothing else of node_modules or the folder is reachable.
    for path in ("/static/vendor/uPlot.esm.js", "/static/vendor/..%2F..%2Fpackage.json", "/static/package.json",
                 "/static/package-lock.json", "/static/node_modules", "/static/vendor/LICENSE"):
        with pytest.raises(urllib.error.HTTPError) as err:
            fetch(server, path)
        assert err.value.code == 404, path
    # Offline: everything the page loads comes from the server itself.
    refs = re.findall(r'(?:src|href)="([^"]+)"', fetch(server, "/")[2].decode())
    assert sorted(refs) == ["/static/app.js", "/static/favicon.svg", "/static/style.css",
                            "/static/vendor/uPlot.iife.min.js", "/static/vendor/uPlot.min.css"]


# ---- the page in a real browser ----------------------------------------------------------------

@pytest.mark.browser
@pytest.mark.slow
def test_a_chart_draws_the_points_sent_in_its_range_and_follows_the_board(server, device, board, browser):
    now = int(time.time() * 1000)
    sent = {now - 2 * HOUR: 30.0, now - 50 * MINUTE: 21.5, now - 30 * MINUTE: 22.25, now - 10 * MINUTE: 23,
            now - MINUTE: 22.5}
    fetch(server, f"/api/v1/{device['token']}/telemetry",
          [{"ts": ts, "values": {"temperature": value, "state": "ok"}} for ts, value in sent.items()])
    wait, card = open_card(browser, server)

    # The last hour by default: exactly the points of that hour, as they were sent.
    hour = [[ts for ts in sent if ts > now - HOUR], [v for ts, v in sent.items() if ts > now - HOUR]]
    wait.until(lambda d: chart(browser, card, "temperature") == hour)
    assert chart(browser, card, "state") is None  # a string has no chart
    # The board's own readings first, then its uptime and free memory (once it has reported them).
    wait.until(lambda d: [f.get_attribute("data-key") for f in css(card, ".chart")] == [
        "temperature", "uptime_s", "mem_free"])

    # Live: the board's own key gains points without a reload, each one what the board sent.
    count = len(wait.until(lambda d: chart(browser, card, "uptime_s"))[0])
    wait.until(lambda d: len(chart(browser, card, "uptime_s")[0]) > count + 1)
    times, values = chart(browser, card, "uptime_s")
    stored = {ts: value for ts, _, value in server.telemetry(device["id"], "uptime_s")}
    assert [stored[ts] for ts in times] == values and times == sorted(times)

    choose_range(browser, "15")
    wait.until(lambda d: chart(browser, card, "temperature") == [[now - 10 * MINUTE, now - MINUTE], [23, 22.5]])
    # Six hours: averages over 500 intervals, one point sent in each here, the 2-hour-old one too.
    choose_range(browser, "360")
    wait.until(lambda d: chart(browser, card, "temperature")[1] == list(sent.values()))
    asked = [e.query for e in server.requests_to(f"/api/plugins/telemetry/DEVICE/{device['id']}/values/timeseries")
             if e.query.get("agg") == ["AVG"]]
    assert asked and all(int(q["interval"][0]) == 6 * HOUR // 500 and "temperature" in q["keys"][0].split(",")
                         for q in asked)


@pytest.mark.browser
@pytest.mark.slow
def test_a_pin_switch_shows_the_boards_own_state_after_a_reload(server, device, board, browser):
    wait, card = open_card(browser, server)
    wait.until(lambda d: switches(card) == {"23": ("false", True), "led": ("false", True)})
    css(card, 'li[data-pin="23"] .switch')[0].click()
    wait.until(lambda d: switches(card) == {"23": ("true", True), "led": ("false", True)})
    assert board.pins() == {23: 1}
    # Another client switches led: the page learns it from the board, not from what it did itself.
    ThingsBoardREST(server.url, "tenant@thingsboard.org", "tenant", retries=0).rpc(
        device["id"], "setGpio", {"pin": "led", "value": 1})

    browser.refresh()
    wait, card = open_card(browser, server)
    wait.until(lambda d: switches(card) == {"23": ("true", True), "led": ("true", True)})
    asked = [e.json() for e in server.requests_to(f"/api/rpc/twoway/{device['id']}", "POST")]
    status = {"method": "getGpioStatus", "params": {}, "timeout": 5000}
    assert asked.count(status) >= 3  # on loading, after the switch, on loading again
    answers = [e.json() for e in server.requests_to(f"/api/v1/{device['token']}/rpc/", "POST")]
    assert answers[-1] == {"23": True, "led": True}  # the board's reply, as it crossed the wire


@pytest.mark.browser
@pytest.mark.slow
def test_a_shared_attribute_set_from_the_page_changes_the_boards_interval(server, device, board, browser):
    wait, card = open_card(browser, server)
    form = css(card, "form.set-attribute")[0]
    assert css(form, 'input[name="key"]')[0].get_attribute("value") == "interval_s"
    css(form, 'input[name="value"]')[0].send_keys("3")
    css(form, "button")[0].click()
    wait.until(lambda d: [row.text for row in css(card, ".attributes tr")] == ["interval_s 3 ×"])
    saved = server.requests_to(f"/api/plugins/telemetry/DEVICE/{device['id']}/SHARED_SCOPE", "POST")
    assert [e.json() for e in saved] == [{"interval_s": 3}]  # a number, as typed

    # The board reads it (every 3 intervals) and sends its records 3 s apart from then on.
    wait_until(lambda: "interval: 3 s" in board.console(), WAIT_S, "the board to take interval_s 3")
    before = len(server.telemetry(device["id"], "uptime_s"))
    wait_until(lambda: len(server.telemetry(device["id"], "uptime_s")) >= before + 4, WAIT_S, "4 more records")
    stamps = [ts for ts, _, _ in server.telemetry(device["id"], "uptime_s")][-3:]  # surely read after the change
    assert min(b - a for a, b in zip(stamps, stamps[1:])) >= 2000  # its config says 1 s

    # Deleted from the page: the board goes back to its config's interval.
    css(card, 'button[aria-label="delete interval_s"]')[0].click()
    wait.until(lambda d: not css(card, ".attributes tr") and css(card, ".no-shared")[0].is_displayed())
    deleted = server.requests_to(f"/api/plugins/telemetry/DEVICE/{device['id']}/SHARED_SCOPE", "DELETE")
    assert [e.query["keys"] for e in deleted] == [["interval_s"]]
    wait_until(lambda: "interval: 1 s" in board.console(), WAIT_S, "the board to go back to 1 s")


@pytest.mark.browser
def test_switches_are_off_with_a_note_while_the_board_does_not_answer(server, device, browser):
    server.set_shared_attributes(device["id"], {"interval_s": 30})  # it reports rarely: online for 90 s
    fetch(server, f"/api/v1/{device['token']}/attributes", {"gpio_pins": ["23"]})
    fetch(server, f"/api/v1/{device['token']}/telemetry", {"uptime_s": 5})
    wait, card = open_card(browser, server)
    wait.until(lambda d: css(card, ".pins-note")[0].text.startswith("The board did not answer"))
    assert css(card, ".pins-note")[0].text.endswith("switches are off until it answers.")
    assert switches(card) == {"23": ("false", False)} and "offline" not in card.get_attribute("class")

    def asked():
        return [e.json()["method"] for e in server.requests_to(f"/api/rpc/twoway/{device['id']}", "POST")]

    assert asked() == ["getGpioStatus"]
    fetch(server, f"/api/v1/{device['token']}/telemetry", {"uptime_s": 35})
    wait_until(lambda: asked() == ["getGpioStatus"] * 2, WAIT_S, "the page to ask again once the board reported")


@pytest.mark.browser
@pytest.mark.slow
def test_a_card_turns_grey_when_its_board_stops_reporting(server, device, board, browser):
    wait, card = open_card(browser, server)
    wait.until(lambda d: css(card, ".seen")[0].text.endswith(" ago") and "offline" not in card.get_attribute("class"))
    wait.until(lambda d: all(enabled for _, enabled in switches(card).values()))
    board.stop()
    last = max(ts for ts, _ in server.latest_telemetry(device["id"]).values())

    wait.until(lambda d: "offline" in card.get_attribute("class"))
    assert css(card, ".seen")[0].text == f"offline since {time.strftime('%H:%M:%S', time.localtime(last / 1000))}"
    assert css(card, ".offline-note")[0].text.startswith("No telemetry for ")
    assert card.value_of_css_property("background-color") == "rgba(236, 238, 241, 1)"  # grey, no longer white
    assert switches(card) == {"23": ("false", False), "led": ("false", False)}
    assert css(card, ".pins-note")[0].text.startswith("The board is offline")


@pytest.mark.browser
@pytest.mark.slow
def test_cards_turn_grey_when_the_server_stops_answering_the_page(server, device, board, browser):
    wait, card = open_card(browser, server)
    wait.until(lambda d: "offline" not in card.get_attribute("class") and all(
        enabled for _, enabled in switches(card).values()) and switches(card))
    server.stop()

    wait.until(lambda d: "offline" in card.get_attribute("class"))
    assert re.fullmatch(r"offline since \d\d:\d\d:\d\d", css(card, ".seen")[0].text)
    assert "server does not answer" in css(card, ".offline-note")[0].text
    assert css(browser, "#status")[0].text.startswith("server not answering since ")
    assert not any(enabled for _, enabled in switches(card).values())


@pytest.mark.browser
def test_values_are_readable_and_server_data_is_only_ever_text(server, device, browser):
    html = "<img src=x onerror=\"document.title='owned'\"><b>bold</b>"
    fetch(server, f"/api/v1/{device['token']}/telemetry",
          {"mem_free": 1997824, "uptime_s": 3 * 3600 + 12 * 60 + 5, "temperature": 21.456, html: html})
    wait, card = open_card(browser, server)
    wait.until(lambda d: len(css(card, ".telemetry tr")) == 4)
    rows = {row.get_attribute("data-key"): css(row, "td.value")[0].text for row in css(card, ".telemetry tr")}
    assert rows == {"mem_free": "1.9 MB", "uptime_s": "3 h 12 min", "temperature": "21.46", html: html}
    assert css(card, ".pins-note")[0].text == "The board has not reported its pins yet."

    # An empty allowlist is said as such; shared attributes too are shown as text.
    fetch(server, f"/api/v1/{device['token']}/attributes", {"gpio_pins": []})
    server.set_shared_attributes(device["id"], {html: html})
    wait.until(lambda d: css(card, ".pins-note")[0].text.startswith("No pins allowed in the board's config"))
    wait.until(lambda d: [row.text for row in css(card, ".attributes tr")] == [f"{html} {html} ×"])
    assert not css(browser, "main img, main b") and browser.title == "iotlink devserver"
