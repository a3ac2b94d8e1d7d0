# iotlink: ThingsBoard and thethings.iO device client for MicroPython.
__version__ = "0.1.0"


def unload(*names):
    # Unload these iotlink modules (by their short names): loaded from .mpy, a module's bytecode
    # lives in RAM until then. A later import loads it again. Only for modules no live object
    # still uses.
    import sys

    for name in names:
        sys.modules.pop("iotlink." + name, None)
        globals().pop(name, None)
