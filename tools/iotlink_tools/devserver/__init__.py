"""The local ThingsBoard / thethings.iO compatible server (`iotlink devserver`)."""

from .core import DevServer, DeviceNotFound

__all__ = ["DevServer", "DeviceNotFound"]
