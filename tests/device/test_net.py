"""Wi-Fi bring-up (net.py, net_once.py) in micropython against the scripted fake `network`."""

import pytest
from support import LIB

WIFI = {"ssid": "lab", "password": "secret"}

ATTEMPT = f"""
import network
from iotlink import net, net_once
idles = []
def attempt(fn, *a, **k):
    try:
        return ["ok", fn(*a, **k)]
    except net_once.WifiError as e:
        return ["WifiError", str(e)]
wifi = {WIFI!r}
"""


def wifi_run(mp, code, script="ok"):
    return mp(ATTEMPT + code, env={"IOTLINK_WIFI": script})


def test_connect_joins_and_sets_up_the_station(mp):
    run = wifi_run(mp, """
out(attempt(net_once.connect, dict(wifi, country="DE", hostname="pump-17")))
w = net.station()
out([w.active(), w.isconnected(), w.config("ssid"), w.config("pm") == w.PM_NONE,
     network.country(), network.hostname(), network.connects])
out(attempt(net_once.connect, wifi))  # already up: no new association
out(network.connects)
""")
    assert run.results == [["ok", "10.0.0.2"], [True, True, "lab", True, "DE", "pump-17", 1],
                           ["ok", "10.0.0.2"], 1]


@pytest.mark.parametrize("script,says", [
    ("no_ap", "Wi-Fi 'lab': access point not found"),
    ("wrong_password", "Wi-Fi 'lab': wrong password"),
    ("fail", "Wi-Fi 'lab': connection refused by the access point"),
])
def test_a_failure_state_ends_the_attempt_with_its_reason(mp, script, says):
    run = wifi_run(mp, "out(attempt(net_once.connect, wifi, 60000))\nout(net.isconnected())", script)
    assert run.results == [["WifiError", says], False]  # not the 60 s timeout


def test_an_access_point_that_never_answers_ends_at_the_timeout_feeding_idle(mp):
    run = wifi_run(mp, """
out(attempt(net_once.connect, wifi, 400, lambda: idles.append(1)))
out(len(idles) > 0)
out(net.station().status() == network.STAT_IDLE)  # disconnected, ready for the next try
""", "never")
    assert run.results == [["WifiError", "Wi-Fi 'lab': no connection after 400 ms"], True, True]


def test_a_slow_association_is_waited_for(mp):
    run = wifi_run(mp, "out(attempt(net_once.connect, wifi, 5000))", "slow:300")
    assert run.result == ["ok", "10.0.0.2"]


@pytest.mark.slow
def test_up_retries_a_bounded_number_of_times(mp):
    run = wifi_run(mp, "out(attempt(net_once.up, wifi, 3, 500))\nout(network.connects)", "fail_first:1")
    assert run.results == [["ok", "10.0.0.2"], 2]
    assert run.stdout.count("wifi: Wi-Fi 'lab': access point not found; retry in 1 s") == 1
    run = wifi_run(mp, "out(attempt(net_once.up, wifi, 2, 200))\nout(network.connects)", "never")
    assert run.results == [["WifiError", "Wi-Fi 'lab': no connection after 200 ms"], 2]


def test_a_dropped_link_is_seen_and_rejoined(mp):
    run = wifi_run(mp, """
import time
out(attempt(net_once.connect, wifi))
time.sleep_ms(300)
out(net.isconnected())
out(attempt(net_once.connect, wifi))
out([net.isconnected(), network.connects])
""", "drop_after:200")
    assert run.results == [["ok", "10.0.0.2"], False, ["ok", "10.0.0.2"], [True, 2]]


def test_states_are_compared_by_name_not_number(mp):
    # The Pico W's numbers: a module that hard-coded the ESP32's would wait for the timeout.
    run = wifi_run(mp, """
network.STAT_IDLE, network.STAT_CONNECTING, network.STAT_GOT_IP = 0, 1, 3
network.STAT_NO_AP_FOUND, network.STAT_WRONG_PASSWORD, network.STAT_CONNECT_FAIL = -2, -3, -1
out(attempt(net_once.connect, wifi, 60000))
out(net.station().status())
""", "wrong_password")
    assert run.results == [["WifiError", "Wi-Fi 'lab': wrong password"], 0]


def test_without_a_network_module_the_host_network_is_used(mp):
    run = mp(ATTEMPT.replace("import network\n", "") + """
out([net.network, net.station(), net.isconnected(), net_once.connect(wifi)])
""", env={"MICROPYPATH": f"{LIB}:.frozen"})
    assert run.result == [None, None, True, None]
