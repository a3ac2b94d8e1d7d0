# The Wi-Fi station, and waiting without blocking the watchdog. Joining a network is
# net_once.py's work: at boot, and again when the connection drops.
import time

try:
    import network
except ImportError:
    network = None  # a port without Wi-Fi (unix): the host's network is always up

POLL_MS = 100

_wlan = None


def station():
    # The station interface, or None on a port without Wi-Fi.
    global _wlan
    if _wlan is None and network is not None:
        _wlan = network.WLAN(network.STA_IF)
    return _wlan


def isconnected():
    wlan = station()
    return wlan is None or wlan.isconnected()


def pause(ms, idle=None):
    # Sleep in short slices, calling idle() (e.g. a watchdog feed) between them.
    deadline = time.ticks_add(time.ticks_ms(), ms)
    while True:
        left = time.ticks_diff(deadline, time.ticks_ms())
        if left <= 0:
            return
        if idle:
            idle()
        time.sleep_ms(min(left, POLL_MS))
