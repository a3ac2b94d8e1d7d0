# Joining the Wi-Fi network in bounded time: boot.py does it at boot, the app again when the
# connection drops; each loads this module for that call and unloads it after.
# Wi-Fi states are compared only with the port's named constants: the numbers differ per port
# (ESP32 STAT_GOT_IP is 1010, the Pico W's is 3) and unknown values mean "not connected yet".
import time

from iotlink.errors import WifiError
from iotlink.net import POLL_MS, network, pause, station

CONNECT_TIMEOUT_MS = 15000

# The states that end an attempt early, and what to tell the user.
_FAILURES = (
    ("STAT_NO_AP_FOUND", "access point not found"),
    ("STAT_WRONG_PASSWORD", "wrong password"),
    ("STAT_CONNECT_FAIL", "connection refused by the access point"),
)


def _failure(status):
    for name, reason in _FAILURES:
        const = getattr(network, name, None)
        if const is not None and status == const:
            return reason
    return None


def connect(wifi, timeout_ms=CONNECT_TIMEOUT_MS, idle=None):
    # One attempt to join wifi = {"ssid", "password"[, "country", "hostname"]}: the IP address,
    # or WifiError after at most timeout_ms. idle() is called while waiting.
    wlan = station()
    if wlan is None:
        return None
    if wlan.isconnected():
        return wlan.ifconfig()[0]
    # The Pico W needs its country before the radio starts; the hostname goes out with DHCP.
    if wifi.get("country") and hasattr(network, "country"):
        network.country(wifi["country"])
    if wifi.get("hostname") and hasattr(network, "hostname"):
        network.hostname(wifi["hostname"])
    wlan.active(True)
    pm_none = getattr(wlan, "PM_NONE", None)
    if pm_none is not None:
        # Power saving delays replies to a long-poll by hundreds of ms (Pico W).
        try:
            wlan.config(pm=pm_none)
        except (ValueError, OSError):
            pass
    wlan.connect(wifi["ssid"], wifi.get("password") or None)
    deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
    while not wlan.isconnected():
        reason = _failure(wlan.status())
        if reason is None and time.ticks_diff(deadline, time.ticks_ms()) <= 0:
            reason = "no connection after %d ms" % timeout_ms
        if reason:
            wlan.disconnect()
            raise WifiError("Wi-Fi '%s': %s" % (wifi["ssid"], reason))
        pause(POLL_MS, idle)
    return wlan.ifconfig()[0]


def up(wifi, attempts=3, timeout_ms=CONNECT_TIMEOUT_MS, idle=None):
    # A few attempts with a growing pause between them; raises the last WifiError. Bounded:
    # at most attempts * timeout_ms plus 1 + 2 + 4 ... s of pauses.
    delay = 1000
    for attempt in range(attempts):
        try:
            return connect(wifi, timeout_ms, idle)
        except WifiError as e:
            if attempt == attempts - 1:
                raise
            print("wifi: %s; retry in %d s" % (e, delay // 1000))
        pause(delay, idle)
        delay = min(delay * 2, 8000)
