# Fake `machine` for the MicroPython unix port: first on MICROPYPATH, it replaces the built-in.
# Signatures follow docs.micropython.org/en/latest/library/machine*.html. Host contracts:
#   * reset(), soft_reset() and an expired WDT end the process with status 75: the virtual board
#     (tools/iotlink_tools/vboard/board.py) starts it again, as a reboot;
#   * deepsleep(time_ms) writes time_ms to .deepsleep in the flash folder and ends the process
#     with status 76: the virtual board sleeps that long, then boots it with DEEPSLEEP_RESET;
#   * RTC().memory() is kept in .rtc_memory, the time RTC().datetime() set in .rtc_time (the
#     offset from the host clock): both survive resets and deep sleep, and the virtual board
#     removes them at power-on, as a board's RTC domain keeps them only while it has power;
#   * every level a pin drives is appended to $IOTLINK_PIN_LOG as {"pin": id, "value": 0|1};
#   * an input reads the level last written to that pin id (0 if never, 1 with PULL_UP);
#   * reset_cause() returns $IOTLINK_RESET_CAUSE (default PWRON_RESET).
# The WDT is checked on every call into this module (feed() included): a thread cannot end the
# unix port's process with a chosen status, so a loop that stops calling machine at all is not
# reset; one that comes back late is, at its next call, as the real watchdog would have done.
import os
import time

# What a board's firmware has built in and common device code uses (Pin, WDT, RTC, unique_id,
# reset_cause and its constants, freq, the sleeps) is here: a board's built-in machine takes no
# heap, this module does, and `make bench` measures and subtracts it. The rarely used rest is in
# _machine_more, loaded on first use (__getattr__ below), so it costs no heap where unused.

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

_levels = {}  # pin id -> last level written to it
_wdt_timeout = None  # ms, once a WDT was created
_wdt_deadline = 0


def _reboot(why):
    import sys

    print("machine: %s" % why)
    sys.exit(75)  # the host's REBOOT_STATUS (tools/iotlink_tools/vboard/board.py)


def _check_wdt():
    if _wdt_timeout is not None and time.ticks_diff(time.ticks_ms(), _wdt_deadline) > 0:
        _reboot("WDT not fed for %d ms: reset" % _wdt_timeout)


class Pin:
    # The class constants stay here (Pin.X is read from the class, where no __getattr__ helps);
    # the rarely used methods (high, low, toggle, mode, pull, drive, irq) are _machine_more's.
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

    def __init__(self, id, *args, **kwargs):
        # Pin(id, mode=-1, pull=-1, *, value=None, drive=0, alt=-1): the rest as init() takes it
        _check_wdt()
        if isinstance(id, Pin):
            id = id._id
        # An ESP32-S3 has GPIO 0..48; a Pico W names its pins "GPn" (0..29), "LED", "WL_GPIOn".
        if isinstance(id, str) and id.startswith("GP") and id[2:].isdigit():
            valid = int(id[2:]) <= 29
        elif isinstance(id, int) and not isinstance(id, bool):
            valid = 0 <= id <= 48
        else:
            valid = id in ("LED", "WL_GPIO0", "WL_GPIO1", "WL_GPIO2")
        if not valid:
            raise ValueError("invalid pin")
        self._id = id
        self._mode = Pin.IN
        self._pull = None
        self._out = _levels.get(id, 0)
        self.init(*args, **kwargs)

    def init(self, mode=-1, pull=-1, *, value=None, drive=0, alt=-1):
        _check_wdt()
        if value is not None:
            self._out = 1 if value else 0
        if pull != -1:
            self._pull = pull
        if mode != -1:
            if mode not in (Pin.IN, Pin.OUT, Pin.OPEN_DRAIN, Pin.ALT, Pin.ALT_OPEN_DRAIN, Pin.ANALOG):
                raise ValueError("invalid pin mode")
            self._mode = mode
        self.value(self._out)  # an output drives its register's level at once

    def value(self, x=None):
        _check_wdt()
        driving = self._mode in (Pin.OUT, Pin.OPEN_DRAIN)
        if x is None:
            if driving:
                return self._out
            return _levels.get(self._id, 1 if self._pull == Pin.PULL_UP else 0)
        self._out = 1 if x else 0  # an input keeps it in the output register until it drives
        if driving:
            _levels[self._id] = self._out
            log = os.getenv("IOTLINK_PIN_LOG")
            if log:
                import json

                with open(log, "a") as f:
                    f.write(json.dumps({"pin": self._id, "value": self._out}) + "\n")
        return None

    __call__ = value  # pin() is pin.value(), as the docs define it

    # machine.Signal shares on() and off(): they go through value().
    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def __getattr__(self, name):
        # Called only for what the class lacks: a method of _machine_more._PinMethods joins it.
        import _machine_more

        return _machine_more._method(self, _machine_more._PinMethods, name)

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
    # The host clock, shifted by what datetime() last set (kept in .rtc_time: it keeps running
    # across resets and deep sleep). RTC(id=0): with no __init__, MicroPython accepts and
    # ignores the id. memory() is _machine_more's.
    _offset = None  # seconds, once read from .rtc_time or set

    def init(self, datetime):
        self.datetime(datetime)

    def datetime(self, datetimetuple=None):
        if datetimetuple is None:
            if RTC._offset is None:
                try:
                    with open(".rtc_time") as f:
                        RTC._offset = float(f.read())
                except (OSError, ValueError):
                    RTC._offset = 0
            t = time.localtime(time.time() + RTC._offset)
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)
        y, mo, d, _, h, mi, s = datetimetuple[:7]
        RTC._offset = time.mktime((y, mo, d, h, mi, s, 0, 0)) - time.time()
        with open(".rtc_time", "w") as f:
            f.write(repr(RTC._offset))

    def __getattr__(self, name):
        import _machine_more

        return _machine_more._method(self, _machine_more._RTCMethods, name)


def reset():
    _check_wdt()  # a watchdog that expired meanwhile reset the board first
    _reboot("reset")


def reset_cause():
    return int(os.getenv("IOTLINK_RESET_CAUSE") or PWRON_RESET)


def unique_id():
    # Stable per flash folder, different between virtual boards.
    import hashlib

    return hashlib.sha256(os.getcwd().encode()).digest()[:6]


_freq = 160000000


def freq(hz=None):
    global _freq
    _check_wdt()
    if hz is None:
        return _freq
    _freq = hz


def idle():
    _check_wdt()
    time.sleep_ms(1)


def lightsleep(time_ms=None):
    _check_wdt()
    if time_ms is not None:
        time.sleep_ms(time_ms)


def deepsleep(time_ms=None):
    # Everything but the RTC stops: the process ends, and the virtual board sleeps time_ms
    # (forever without one: a virtual board has no wake-up pin), then boots it again.
    import sys

    _check_wdt()
    with open(".deepsleep", "w") as f:
        f.write("" if time_ms is None else str(int(time_ms)))
    print("machine: deep sleep" + ("" if time_ms is None else " for %d ms" % time_ms))
    sys.exit(76)  # the host's DEEPSLEEP_STATUS (tools/iotlink_tools/vboard/board.py)


def __getattr__(name):
    # The rest of the API (Signal, ADC, soft_reset, bootloader, the IRQ and sleep-mode names...)
    # is loaded on first use: common device code never needs it.
    import _machine_more

    return getattr(_machine_more, name)
