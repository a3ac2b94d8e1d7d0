# iotlink: ThingsBoard and thethings.iO device client for MicroPython.
__version__ = "0.1.0"


def forget(*names):
    # Unload iotlink modules that had work only for a moment (the update journal at boot, the
    # start-up report): loaded from .mpy, a module's bytecode lives in RAM. A later import loads
    # it again. Only for modules no live object still uses.
    import sys

    for name in names:
        sys.modules.pop("iotlink." + name, None)
        globals().pop(name, None)


def call_and_forget(name, function, *args):
    # iotlink.<name>.<function>(*args), the module loaded for this call and unloaded after it:
    # for the work a board does rarely (setting the clock, provisioning, a TLS handshake...).
    module = __import__("iotlink." + name, None, None, (function,))
    try:
        return getattr(module, function)(*args)
    finally:
        forget(name)
