# iotlink: ThingsBoard and thethings.iO device client for MicroPython.
__version__ = "0.1.0"
