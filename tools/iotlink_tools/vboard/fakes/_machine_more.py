# The rarely used part of the fake `machine` (see machine.py), loaded on the first attribute
# machine.py or a Pin does not have: common device code never needs it, so it takes no heap there.
import sys

from machine import Pin, _check_wdt, _reboot

IDLE = 0
SLEEP = 2
DEEPSLEEP = 4

RTC_MEMORY_MAX = 2048  # bytes of RTC user memory: an ESP32's, as MicroPython builds it


def _method(obj, methods, name):
    # obj.__getattr__(name) for the methods a lazily loaded class holds: the method joins obj's
    # class, so it is found there from then on; any other name is missing as usual.
    found = methods.__dict__.get(name)
    if found is None or name.startswith("__"):
        raise AttributeError(name)
    setattr(type(obj), name, found)
    return getattr(obj, name)


class _PinMethods:
    # Pin's rarely used methods, moved into Pin on first use (Pin.__getattr__).
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
        return Pin.DRIVE_0 if drive is None else None

    def irq(self, handler=None, trigger=Pin.IRQ_FALLING | Pin.IRQ_RISING, *, priority=1, wake=None,
            hard=False):
        _check_wdt()
        self._irq = (handler, trigger)  # accepted; a fake input never changes by itself
        return self


class Signal:
    # Signal(pin_obj, *, invert=False) or Signal(pin_arguments..., *, invert=False)
    on = Pin.on  # as for a Pin, they go through value()
    off = Pin.off

    def __init__(self, pin, *args, invert=False, **kwargs):
        self._pin = pin if isinstance(pin, Pin) else Pin(pin, *args, **kwargs)
        self._invert = invert

    def value(self, x=None):
        if x is None:
            return self._pin.value() ^ self._invert
        self._pin.value((1 if x else 0) ^ self._invert)

    __call__ = value


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


class _RTCMethods:
    # RTC's rarely used methods, moved into RTC on first use (RTC.__getattr__).
    def memory(self, data=None):
        # RTC.memory([data]): up to RTC_MEMORY_MAX bytes that survive deep sleep and resets.
        if data is None:
            try:
                with open(".rtc_memory", "rb") as f:
                    return f.read()
            except OSError:
                return b""
        data = bytes(data)
        if len(data) > RTC_MEMORY_MAX:
            raise ValueError("buffer too long")
        with open(".rtc_memory", "wb") as f:
            f.write(data)


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


def time_pulse_us(pin, pulse_level, timeout_us=1000000):
    return -1  # a fake input never pulses: the documented timeout result
