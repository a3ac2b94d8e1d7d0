# Fake `network` for the MicroPython unix port (the port has none). Signatures follow
# docs.micropython.org/en/latest/library/network.WLAN.html; status numbers are the ESP32 port's.
# The host's own network carries the sockets: this only plays the Wi-Fi link's states.
#
# $IOTLINK_WIFI scripts the link, comma-separated (default "ok"):
#   ok              connect() reaches STAT_GOT_IP at once
#   slow:<ms>       STAT_CONNECTING for <ms>, then STAT_GOT_IP
#   never           STAT_CONNECTING forever (the access point never answers)
#   no_ap           STAT_NO_AP_FOUND        wrong_password  STAT_WRONG_PASSWORD
#   fail            STAT_CONNECT_FAIL
#   fail_first:<n>  the first <n> connect() calls end in STAT_NO_AP_FOUND, later ones connect
#   drop_after:<ms> the link drops once, <ms> after it came up (later connect() calls hold)
import os
import time

STA_IF = 0
AP_IF = 1

STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_BEACON_TIMEOUT = 200
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_ASSOC_FAIL = 203
STAT_CONNECT_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204

AUTH_OPEN = 0
AUTH_WPA2_PSK = 3

_country = "XX"
_hostname = "iotlink"
connects = 0  # connect() calls in this process, for tests


def _script():
    steps = {}
    for part in (os.getenv("IOTLINK_WIFI") or "ok").split(","):
        name, _, arg = part.strip().partition(":")
        steps[name] = int(arg) if arg else None
    return steps


def country(code=None):
    global _country
    if code is None:
        return _country
    _country = code


def hostname(name=None):
    global _hostname
    if name is None:
        return _hostname
    _hostname = name


def ipconfig(*args, **kwargs):
    if args:
        return {"prefer": 4}.get(args[0])
    return None


class WLAN:
    IF_STA = STA_IF
    IF_AP = AP_IF
    SEC_OPEN = 0
    SEC_WPA2 = 3
    PM_NONE = 0
    PM_PERFORMANCE = 1
    PM_POWERSAVE = 2

    def __init__(self, interface_id=STA_IF):
        if interface_id not in (STA_IF, AP_IF):
            raise ValueError("invalid WLAN interface identifier")
        self._if = interface_id
        self._active = False
        self._status = STAT_IDLE
        self._since = 0  # ticks of the last state change
        self._ssid = None
        self._config = {"pm": self.PM_PERFORMANCE, "txpower": 20, "channel": 1, "reconnects": -1,
                        "mac": b"\x02\x00\x00\x00\x00\x01"}

    def active(self, is_active=None):
        if is_active is None:
            return self._active
        self._active = bool(is_active)
        if not self._active:
            self._status = STAT_IDLE

    def connect(self, ssid=None, key=None, *, bssid=None):
        global connects
        if not self._active:
            raise OSError("Wifi Not Started")  # what the ESP32 port raises
        connects += 1
        self._ssid = ssid
        self._since = time.ticks_ms()
        steps = _script()
        if "fail_first" in steps and connects <= steps["fail_first"]:
            self._status = STAT_NO_AP_FOUND
        elif "no_ap" in steps:
            self._status = STAT_NO_AP_FOUND
        elif "wrong_password" in steps:
            self._status = STAT_WRONG_PASSWORD
        elif "fail" in steps:
            self._status = STAT_CONNECT_FAIL
        else:
            self._status = STAT_CONNECTING

    def _advance(self):
        steps = _script()
        age = time.ticks_diff(time.ticks_ms(), self._since)
        if self._status == STAT_CONNECTING and "never" not in steps:
            if age >= (steps.get("slow") or 0):
                self._status = STAT_GOT_IP
                self._since = time.ticks_ms()
        elif self._status == STAT_GOT_IP and "drop_after" in steps and connects == 1:
            if age >= steps["drop_after"]:
                self._status = STAT_IDLE

    def disconnect(self):
        self._status = STAT_IDLE

    def isconnected(self):
        self._advance()
        return self._active and self._status == STAT_GOT_IP

    def status(self, param=None):
        self._advance()
        if param is None:
            return self._status
        if param == "rssi":
            if self._status != STAT_GOT_IP:
                raise OSError("STA is not connected")
            return -55
        if param == "stations":
            return []
        raise ValueError("unknown status param")

    def scan(self):
        if not self._active:
            raise OSError("Wifi Not Started")
        if "no_ap" in _script():
            return []
        # (ssid, bssid, channel, RSSI, security, hidden)
        return [(b"lab", b"\x02\x00\x00\x00\x00\x02", 1, -55, AUTH_WPA2_PSK, False)]

    def ifconfig(self, config=None):
        if config is not None:
            return None
        if self.isconnected():
            return ("10.0.0.2", "255.255.255.0", "10.0.0.1", "10.0.0.1")
        return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")

    def ipconfig(self, *args, **kwargs):
        if not args:
            return None
        if args[0] == "addr4":
            return (self.ifconfig()[0], self.ifconfig()[1])
        if args[0] == "dhcp4":
            return True
        raise ValueError("unknown config param")

    def config(self, *args, **kwargs):
        if args:
            key = args[0]
            if key in ("ssid", "essid"):
                return self._ssid or ""
            if key == "hostname":
                return _hostname
            if key not in self._config:
                raise ValueError("unknown config param")
            return self._config[key]
        for key in kwargs:
            if key in ("ssid", "essid", "key", "password", "security", "hidden", "max_clients"):
                continue
            if key == "hostname":
                hostname(kwargs[key])
                continue
            if key not in self._config:
                raise ValueError("unknown config param")
            self._config[key] = kwargs[key]
