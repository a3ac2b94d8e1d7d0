# The rarely used part of the fake `network` (see network.py), loaded on the first attribute
# network.py or a WLAN does not have, and to play $IOTLINK_WIFI's script: the device loop
# without a script never needs it, so it takes no heap there.
import os
import time

import network
from _machine_more import _method
from network import (STAT_CONNECT_FAIL, STAT_CONNECTING, STAT_GOT_IP, STAT_IDLE, STAT_NO_AP_FOUND,
                     STAT_WRONG_PASSWORD)

STAT_BEACON_TIMEOUT = 200
STAT_ASSOC_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204

AUTH_OPEN = 0
AUTH_WPA2_PSK = 3

# WLAN.config() parameters besides pm (network.py holds it), as an ESP32 starts them.
_CONFIG_DEFAULTS = {"txpower": 20, "channel": 1, "reconnects": -1, "mac": b"\x02\x00\x00\x00\x00\x01"}
# Parameters an ESP32 accepts but the fake does not keep.
_CONFIG_IGNORED = ("ssid", "essid", "key", "password", "security", "hidden", "max_clients")


def ipconfig(*args, **kwargs):
    if args:
        return {"prefer": 4}.get(args[0])
    return None


def _steps():
    steps = {}
    for part in (os.getenv("IOTLINK_WIFI") or "ok").split(","):
        name, _, arg = part.strip().partition(":")
        steps[name] = int(arg) if arg else None
    return steps


def _wlan_connect(wlan):
    # WLAN.connect() under a script, after the common part: how the attempt starts.
    wlan._since = time.ticks_ms()  # ticks of the last state change
    steps = _steps()
    if "fail_first" in steps and network.connects <= steps["fail_first"]:
        wlan._status = STAT_NO_AP_FOUND
    elif "no_ap" in steps:
        wlan._status = STAT_NO_AP_FOUND
    elif "wrong_password" in steps:
        wlan._status = STAT_WRONG_PASSWORD
    elif "fail" in steps:
        wlan._status = STAT_CONNECT_FAIL


def _wlan_advance(wlan):
    # WLAN.status() under a script: the link's state after the time since the last change.
    if wlan._status not in (STAT_CONNECTING, STAT_GOT_IP):
        return  # no attempt under way
    steps = _steps()
    age = time.ticks_diff(time.ticks_ms(), wlan._since)
    if wlan._status == STAT_CONNECTING and "never" not in steps:
        if age >= (steps.get("slow") or 0):
            wlan._status = STAT_GOT_IP
            wlan._since = time.ticks_ms()
    elif wlan._status == STAT_GOT_IP and "drop_after" in steps and network.connects == 1:
        if age >= steps["drop_after"]:
            wlan._status = STAT_IDLE


def _wlan_status(wlan, param):
    # WLAN.status(param)
    connected = wlan.status() == STAT_GOT_IP
    if param == "rssi":
        if not connected:
            raise OSError("STA is not connected")
        return -55
    if param == "stations":
        return []
    raise ValueError("unknown status param")


def _wlan_config(wlan, *args, **kwargs):
    # WLAN.config() but for setting pm alone
    for key, value in _CONFIG_DEFAULTS.items():
        wlan._config.setdefault(key, value)
    if args:
        key = args[0]
        if key in ("ssid", "essid"):
            return wlan._ssid or ""
        if key == "hostname":
            return network.hostname()
        if key not in wlan._config:
            raise ValueError("unknown config param")
        return wlan._config[key]
    for key in kwargs:
        if key in _CONFIG_IGNORED:
            continue
        if key == "hostname":
            network.hostname(kwargs[key])
            continue
        if key not in wlan._config:
            raise ValueError("unknown config param")
        wlan._config[key] = kwargs[key]


class _WLANMethods:
    # WLAN's rarely used methods, moved into WLAN on first use (WLAN.__getattr__).
    def scan(self):
        if not self._active:
            raise OSError("Wifi Not Started")
        if "no_ap" in _steps():
            return []
        # (ssid, bssid, channel, RSSI, security, hidden)
        return [(b"lab", b"\x02\x00\x00\x00\x00\x02", 1, -55, AUTH_WPA2_PSK, False)]

    def ipconfig(self, *args, **kwargs):
        if not args:
            return None
        if args[0] == "addr4":
            return (self.ifconfig()[0], self.ifconfig()[1])
        if args[0] == "dhcp4":
            return True
        raise ValueError("unknown config param")
