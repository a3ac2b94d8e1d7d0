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
