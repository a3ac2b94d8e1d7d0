# The rarely used part of the fake `machine` (see machine.py), loaded on the first attribute
# machine.py itself does not have: the device loop never needs it, so it takes no heap there.
import os
import sys
import time

from machine import Pin, _check_wdt, _reboot, _Switch


class Signal(_Switch):
    # Signal(pin_obj, *, invert=False) or Signal(pin_arguments..., *, invert=False)
    def __init__(self, pin, *args, invert=False, **kwargs):
        self._pin = pin if isinstance(pin, Pin) else Pin(pin, *args, **kwargs)
        self._invert = invert

    def value(self, x=None):
        if x is None:
            return self._pin.value() ^ self._invert
        self._pin.value((1 if x else 0) ^ self._invert)


class ADC:
    # A steady reading near mid-scale (0.705 V: 27 degC for the RP2040 sensor on ADC(4)).
    def __init__(self, pin, *, atten=None):
        _check_wdt()
        self._pin = pin

    def read_u16(self):
        _check_wdt()
        return 14000

    def read_uv(self):
        return self.read_u16() * 3300000 // 65535


def soft_reset():
    # The unix process cannot restart its interpreter: the host reboots it like a hard reset.
    _reboot("soft reset")


def bootloader(value=None):
    # The board leaves the application (e.g. to the BOOTSEL drive): the process ends, no reboot.
    print("machine: bootloader")
    sys.exit(0)


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
    _check_wdt()
    if time_ms is not None:
        time.sleep_ms(time_ms)
    _reboot("deepsleep wake-up")


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


def time_pulse_us(pin, pulse_level, timeout_us=1000000):
    return -1  # a fake input never pulses: the documented timeout result
