# Fake `machine` for the MicroPython unix port: first on MICROPYPATH, it replaces the built-in.
# Signatures follow docs.micropython.org/en/latest/library/machine*.html. Host contracts:
#   * reset(), soft_reset(), deepsleep() and an expired WDT end the process with status 75:
#     the virtual board (tools/iotlink_tools/vboard.py) starts it again, as a reboot;
#   * every level a pin drives is appended to $IOTLINK_PIN_LOG as {"pin": id, "value": 0|1};
#   * an input reads the level last written to that pin id (0 if never, 1 with PULL_UP);
#   * reset_cause() returns $IOTLINK_RESET_CAUSE (default PWRON_RESET).
# The WDT is checked on every call into this module (feed() included): a thread cannot end the
# unix port's process with a chosen status, so a loop that stops calling machine at all is not
# reset; one that comes back late is, at its next call, as the real watchdog would have done.
import json
import os
import sys
import time

REBOOT_STATUS = 75

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

IDLE = 0
SLEEP = 2
DEEPSLEEP = 4

_levels = {}  # pin id -> last level written to it
_wdt_timeout = None  # ms, once a WDT was created
_wdt_deadline = 0


def _reboot(why):
    print("machine: %s" % why)
    sys.exit(REBOOT_STATUS)


def _check_wdt():
    if _wdt_timeout is not None and time.ticks_diff(time.ticks_ms(), _wdt_deadline) > 0:
        _reboot("WDT not fed for %d ms: reset" % _wdt_timeout)


def _valid_id(pin_id):
    # An ESP32-S3 has GPIO 0..48; a Pico W names its pins "GPn", "LED", "WL_GPIOn".
    if isinstance(pin_id, int) and not isinstance(pin_id, bool):
        return 0 <= pin_id <= 48
    if isinstance(pin_id, str):
        if pin_id in ("LED", "WL_GPIO0", "WL_GPIO1", "WL_GPIO2"):
            return True
        if pin_id.startswith("GP") and pin_id[2:].isdigit():
            return 0 <= int(pin_id[2:]) <= 29
    return False


def _log(pin_id, level):
    path = os.getenv("IOTLINK_PIN_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"pin": pin_id, "value": level}) + "\n")


class _Switch:
    # What Pin and Signal share: calling them and on()/off() go through value().
    def __call__(self, x=None):
        return self.value(x)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class Pin(_Switch):
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    ALT = 4
    ALT_OPEN_DRAIN = 5
    ANALOG = 6
    PULL_UP = 1
    PULL_DOWN = 2
    PULL_HOLD = 4
    DRIVE_0 = 0
    DRIVE_1 = 1
    DRIVE_2 = 2
    DRIVE_3 = 3
    IRQ_FALLING = 2
    IRQ_RISING = 1
    IRQ_LOW_LEVEL = 4
    IRQ_HIGH_LEVEL = 8

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=0, alt=-1):
        _check_wdt()
        if isinstance(id, Pin):
            id = id._id
        if not _valid_id(id):
            raise ValueError("invalid pin")
        self._id = id
        self._mode = self.IN
        self._pull = None
        self._out = _levels.get(id, 0)
        self.init(mode, pull, value=value, drive=drive, alt=alt)

    def init(self, mode=-1, pull=-1, *, value=None, drive=0, alt=-1):
        _check_wdt()
        if value is not None:
            self._out = 1 if value else 0
        if pull != -1:
            self._pull = pull
        if mode != -1:
            if mode not in (self.IN, self.OUT, self.OPEN_DRAIN, self.ALT, self.ALT_OPEN_DRAIN, self.ANALOG):
                raise ValueError("invalid pin mode")
            self._mode = mode
        if self._driving():
            self._drive(self._out)

    def _driving(self):
        return self._mode in (self.OUT, self.OPEN_DRAIN)

    def _drive(self, level):
        self._out = level
        _levels[self._id] = level
        _log(self._id, level)

    def value(self, x=None):
        _check_wdt()
        if x is None:
            if self._driving():
                return self._out
            return _levels.get(self._id, 1 if self._pull == self.PULL_UP else 0)
        level = 1 if x else 0
        if self._driving():
            self._drive(level)
        else:
            self._out = level  # kept in the output register until the pin is an output
        return None

    def high(self):
        self.value(1)

    def low(self):
        self.value(0)

    def toggle(self):
        self.value(0 if self._out else 1)

    def mode(self, mode=None):
        if mode is None:
            return self._mode
        self.init(mode)

    def pull(self, pull=None):
        if pull is None:
            return self._pull
        self.init(pull=pull)

    def drive(self, drive=None):
        return self.DRIVE_0 if drive is None else None

    def irq(self, handler=None, trigger=IRQ_FALLING | IRQ_RISING, *, priority=1, wake=None, hard=False):
        _check_wdt()
        self._irq = (handler, trigger)  # accepted; a fake input never changes by itself
        return self

    def __repr__(self):
        return "Pin(%r, mode=%d)" % (self._id, self._mode)


class WDT:
    # One hardware watchdog: a second WDT() only changes the timeout. It cannot be stopped.
    def __init__(self, id=0, timeout=5000):
        global _wdt_timeout, _wdt_deadline
        _check_wdt()
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        _wdt_timeout = timeout
        _wdt_deadline = time.ticks_add(time.ticks_ms(), timeout)

    def feed(self):
        global _wdt_deadline
        _check_wdt()
        _wdt_deadline = time.ticks_add(time.ticks_ms(), _wdt_timeout)


class RTC:
    # The host clock, shifted by what datetime() last set.
    _offset = 0

    def __init__(self, id=0):
        pass

    def init(self, datetime):
        self.datetime(datetime)

    def datetime(self, datetimetuple=None):
        if datetimetuple is None:
            t = time.localtime(time.time() + RTC._offset)
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)
        y, mo, d, _, h, mi, s = datetimetuple[:7]
        RTC._offset = time.mktime((y, mo, d, h, mi, s, 0, 0)) - time.time()


def reset():
    _reboot("reset")


def reset_cause():
    return int(os.getenv("IOTLINK_RESET_CAUSE") or PWRON_RESET)


def __getattr__(name):
    # The rest of the API (Signal, ADC, sleep, freq, unique_id...) is loaded on first use: the
    # fakes take heap a real board's built-in machine does not, and the device loop never calls it.
    import _machine_more

    return getattr(_machine_more, name)
