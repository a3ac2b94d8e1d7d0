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
#
# $IOTLINK_RADIO_LOG: each change of the radio is appended there as a JSON line
# {"t": host clock in ms, "event": "up" | "down" | "connect" | "disconnect"} (active(True) turns it
# up, active(False) down), so that the host can add up how long the radio was on.
import os

# Only what the device loop uses is here: a board's built-in network takes no heap, this module
# does. The rest (ipconfig(), AUTH_*, the STAT_* codes net.py never meets, WLAN.scan(), status
# and config parameters besides pm, the script's states) is in _network_more, loaded on first use.

STA_IF = 0
AP_IF = 1

STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_CONNECT_FAIL = 203

_country = "XX"
_hostname = "iotlink"
connects = 0  # connect() calls in this process, for tests


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


def _log(event):
    path = os.getenv("IOTLINK_RADIO_LOG")
    if path:
        import time

        with open(path, "a") as f:
            f.write('{"t": %d, "event": "%s"}\n' % (time.time_ns() // 1000000, event))


def __getattr__(name):
    # The rest of the module is loaded on first use: the device loop never needs it.
    import _network_more

    return getattr(_network_more, name)


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
        self._active = False
        self._status = STAT_IDLE
        self._ssid = None
        self._config = {"pm": WLAN.PM_PERFORMANCE}  # _network_more adds the other parameters

    def active(self, is_active=None):
        if is_active is None:
            return self._active
        if bool(is_active) != self._active:
            _log("up" if is_active else "down")
        self._active = bool(is_active)
        if not self._active:
            self._status = STAT_IDLE

    def connect(self, ssid=None, key=None, *, bssid=None):
        global connects
        if not self._active:
            raise OSError("Wifi Not Started")  # what the ESP32 port raises
        connects += 1
        _log("connect")
        self._ssid = ssid
        self._status = STAT_CONNECTING
        if os.getenv("IOTLINK_WIFI"):
            import _network_more  # the script's failures and delays

            _network_more._wlan_connect(self)

    def disconnect(self):
        _log("disconnect")
        self._status = STAT_IDLE

    def isconnected(self):
        return self.status() == STAT_GOT_IP and self._active

    def status(self, param=None):
        if param is not None:
            import _network_more

            return _network_more._wlan_status(self, param)
        if os.getenv("IOTLINK_WIFI"):
            import _network_more

            _network_more._wlan_advance(self)
        elif self._status == STAT_CONNECTING:
            self._status = STAT_GOT_IP  # no script: the link comes up at once
        return self._status

    def ifconfig(self, config=None):
        if config is not None:
            return None
        if self.isconnected():
            return ("10.0.0.2", "255.255.255.0", "10.0.0.1", "10.0.0.1")
        return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")

    def config(self, *args, **kwargs):
        # The loop only sets pm: any other use is _network_more's.
        if args or len(kwargs) != 1 or "pm" not in kwargs:
            import _network_more

            return _network_more._wlan_config(self, *args, **kwargs)
        self._config["pm"] = kwargs["pm"]

    def __getattr__(self, name):
        # Called only for what the class lacks: a method of _network_more._WLANMethods joins it.
        import _network_more

        return _network_more._method(self, _network_more._WLANMethods, name)
