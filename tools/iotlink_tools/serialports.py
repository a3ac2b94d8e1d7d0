"""Boards on USB serial ports: what `-p/--port auto` picks, and what `provision` gives rows without a port."""

from __future__ import annotations

import os
from typing import NamedTuple

from .errors import ToolError

AUTO = "auto"
# (USB vendor id, product id or None for any) of MicroPython boards and of the USB-serial chips
# on ESP32 boards -> the board type. Other serial ports (modems, other devices) are never picked.
KNOWN_USB = {
    (0x10C4, 0xEA60): "esp32",  # Silicon Labs CP210x
    (0x1A86, 0x7523): "esp32",  # WCH CH340
    (0x1A86, 0x55D4): "esp32",  # WCH CH9102 (sold as CH340 on many boards)
    (0x0403, 0x6001): "esp32",  # FTDI FT232R
    (0x303A, None): "esp32",    # Espressif's own USB (ESP32-S2, S3, C3, C6)
    (0x2E8A, None): "picow",    # Raspberry Pi (Pico W, Pico 2 W)
}


class UsbBoard(NamedTuple):
    port: str
    type: str            # esp32 or picow
    serial_number: str   # the USB serial number: the same board after it re-enumerates


def board_type(vid: int | None, pid: int | None) -> str | None:
    return KNOWN_USB.get((vid, pid)) or KNOWN_USB.get((vid, None))


def usb_boards() -> list[UsbBoard]:
    """The boards plugged in, by port name."""
    from serial.tools.list_ports import comports

    found = [UsbBoard(p.device, kind, p.serial_number or "")
             for p in comports() if (kind := board_type(p.vid, p.pid))]
    return sorted(found)


def port_exists(port: str) -> bool:
    """Whether a serial port of that name is there now (a device file, or a COM port on Windows)."""
    if os.path.exists(port):
        return True
    from serial.tools.list_ports import comports

    return any(p.device == port for p in comports())


def resolve(port: str) -> str:
    """The port itself, or for `auto` the port of the only board plugged in."""
    if port != AUTO:
        return port
    found = usb_boards()
    if len(found) == 1:
        return found[0].port
    if not found:
        raise ToolError("-p auto: no board found on USB (ESP32 bridges CP210x, CH340, FTDI, Espressif or "
                        "Raspberry Pi ids): plug one in, or name its port with -p PORT")
    shown = ", ".join(f"{b.port} ({b.type})" for b in found)
    raise ToolError(f"-p auto: {len(found)} boards found ({shown}): choose one with -p PORT")
