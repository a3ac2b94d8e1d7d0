# RPC dispatcher: the GPIO methods of the contract, limited to the config's `pins` allowlist,
# plus methods the application registers. Every request gets a JSON reply; bad input gets
# {"error": "<why>"} and touches no pin.
#
# Pins are created on first use and kept: a write makes the pin an output (Pin.OUT, with its
# level in the same call, so it never glitches); a read of a pin never driven makes it an input
# (Pin.IN); a read of a pin this board drives returns its output level and leaves it an output
# (making it an input would let it float and lose the level). So getGpio after setGpio reports
# what was set, and a pin only read stays a high-impedance input, safe for whatever is wired.
import machine

from iotlink.errors import RpcError

GPIO_METHODS = ("setGpio", "getGpio", "setGpioStatus", "getGpioStatus")


def _level(params, key):
    if key not in params:
        raise RpcError("missing '%s'" % key)
    value = params[key]
    if value is True or value is False:
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    raise RpcError("'%s' must be 0, 1, true or false" % key)


class Dispatcher:
    def __init__(self, pins):
        # pins: {"name": machine.Pin id}, the allowlist from config.json
        self._allowed = pins
        self._pins = {}  # name -> (machine.Pin, is_output)
        self._methods = {
            "setGpio": self._set_gpio,
            "getGpio": self._get_gpio,
            "setGpioStatus": self._set_gpio_status,
            "getGpioStatus": self._get_gpio_status,
        }

    def register(self, name, fn):
        # fn(params) -> JSON-able result; raise ValueError for bad params (becomes an error reply).
        self._methods[name] = fn

    def names(self):
        return sorted(self._allowed)

    def handle(self, method, params):
        # The reply to one request; never raises for anything the request carried.
        fn = self._methods.get(method) if isinstance(method, str) else None
        if fn is None:
            return {"error": "unknown method %s" % _show(method)}
        try:
            result = fn(params)
        except RpcError as e:
            return {"error": str(e)}
        except ValueError as e:
            return {"error": "%s: %s" % (method, e)}
        except Exception as e:  # an application method failed: report it, keep the board going
            return {"error": "%s failed: %s %s" % (method, type(e).__name__, e)}
        return {} if result is None else result

    # ---- pins --------------------------------------------------------------------------
    def _name(self, params):
        if not isinstance(params, dict):
            raise RpcError("params must be an object")
        if "pin" not in params:
            raise RpcError("missing 'pin'")
        pin = params["pin"]
        if isinstance(pin, bool) or not isinstance(pin, (int, str)):
            raise RpcError("'pin' must be a string or an integer")
        name = str(pin)
        if name not in self._allowed:
            raise RpcError("pin %s is not allowed" % _show(name))
        return name

    def _pin(self, name, output, level=None):
        entry = self._pins.get(name)
        pin_id = self._allowed[name]
        try:
            if entry is None:
                if output:
                    pin = machine.Pin(pin_id, machine.Pin.OUT, value=level)
                else:
                    pin = machine.Pin(pin_id, machine.Pin.IN)
                entry = self._pins[name] = (pin, output)
            elif output and not entry[1]:
                entry[0].init(machine.Pin.OUT, value=level)
                entry = self._pins[name] = (entry[0], True)
            elif output:
                entry[0].value(level)
        except ValueError as e:  # the port refuses this id (e.g. an ESP32 input-only pin)
            raise RpcError("pin %s: %s" % (_show(name), e))
        return entry[0]

    def _read(self, name):
        entry = self._pins.get(name)
        pin = entry[0] if entry else self._pin(name, False)
        return pin.value()

    def _status(self):
        status = {}
        for name in self._allowed:
            status[name] = self._read(name) == 1
        return status

    def _set_gpio(self, params):
        name = self._name(params)
        level = _level(params, "value")
        self._pin(name, True, level)
        return {"pin": name, "value": level}

    def _get_gpio(self, params):
        name = self._name(params)
        return {"pin": name, "value": self._read(name)}

    def _set_gpio_status(self, params):
        name = self._name(params)
        self._pin(name, True, _level(params, "enabled"))
        return self._status()

    def _get_gpio_status(self, params):
        return self._status()


def _show(value):
    # A request value quoted for an error message, cut short.
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
