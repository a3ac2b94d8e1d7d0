"""Flash MicroPython onto a board: the ESP32 family through esptool, the Pico W through its BOOTSEL drive.

  iotlink flash -p /dev/ttyUSB0 ESP32_GENERIC-v1.28.0.bin [--erase]
  iotlink flash ESP32_GENERIC-v1.28.0.bin                      (-p auto: the one board on USB)
  iotlink flash -p /dev/ttyACM0 RPI_PICO_W-v1.28.0.uf2         (a Pico W running MicroPython)
  iotlink flash RPI_PICO_W-v1.28.0.uf2 [--drive /media/me/RPI-RP2]   (a Pico W in BOOTSEL mode)

The image is checked before anything is written: an ESP image starts with byte 0xE9 (esptool then
refuses an image built for another chip), a UF2 file is whole 512-byte blocks with the UF2 magic
numbers and an RP2040/RP2350 family id. MicroPython's combined firmware.bin goes at the chip's
bootloader offset, taken from esptool's own chip definitions (0x1000 on ESP32/S2, 0x0 on S3/C3/C6,
0x2000 on C5/P4).
"""

from __future__ import annotations

import argparse
import os
import string
import struct
import sys
import time
from pathlib import Path
from typing import Callable

from esptool.cmds import attach_flash, detect_chip, erase_flash, reset_chip, run_stub, write_flash
from esptool.logger import log as esptool_log
from esptool.util import FatalError, NotImplementedInROMError

from .. import ui
from ..errors import ToolError
from ..options import add_serial_port
from ..serialports import AUTO, resolve

ESP_IMAGE_MAGIC = 0xE9
UF2_BLOCK = 512
UF2_MAGIC_START0, UF2_MAGIC_START1, UF2_MAGIC_END = 0x0A324655, 0x9E5D5157, 0x0AB16F30
UF2_FLAG_FAMILY_ID = 0x00002000
# UF2 family id -> the Board-ID its BOOTSEL drive announces in INFO_UF2.TXT.
RP2_FAMILIES = {
    0xE48BFF56: "RPI-RP2",   # RP2040 (Pico W)
    0xE48BFF57: None,        # "absolute" blocks, accepted by both chips
    0xE48BFF59: "RP2350",    # RP2350 Arm secure (Pico 2 W)
    0xE48BFF5A: "RP2350",    # RP2350 RISC-V
    0xE48BFF5B: "RP2350",    # RP2350 Arm non-secure
}
INFO_FILE = "INFO_UF2.TXT"
Log = Callable[[str], None]


class FlashError(ToolError):
    """The image is unusable, or the board could not be flashed."""


# ---- images ------------------------------------------------------------------------------
def image_kind(path: Path) -> str:
    """"esp" or "uf2", from the file's first bytes; FlashError for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise FlashError(f"cannot read {path}: {exc.strerror}") from None
    if len(head) == 4 and struct.unpack("<I", head)[0] == UF2_MAGIC_START0:
        return "uf2"
    if head[:1] == bytes([ESP_IMAGE_MAGIC]):
        return "esp"
    shown = f"0x{head[0]:02X}" if head else "nothing"
    raise FlashError(f"{path.name} is neither an ESP image (first byte {shown}, expected 0xE9) nor a UF2 file")


def uf2_families(path: Path) -> set[int]:
    """The family ids of a UF2 file, checking every block; FlashError for a damaged file."""
    families = set()
    size = path.stat().st_size
    if size == 0 or size % UF2_BLOCK:
        raise FlashError(f"{path.name}: {size} bytes is not a whole number of 512-byte UF2 blocks")
    with open(path, "rb") as f:
        for index in range(size // UF2_BLOCK):
            block = f.read(UF2_BLOCK)
            start0, start1, flags, _, _, number, total, family = struct.unpack_from("<8I", block)
            end = struct.unpack_from("<I", block, UF2_BLOCK - 4)[0]
            if (start0, start1, end) != (UF2_MAGIC_START0, UF2_MAGIC_START1, UF2_MAGIC_END):
                raise FlashError(f"{path.name}: block {index} has wrong UF2 magic numbers")
            if number >= total:
                raise FlashError(f"{path.name}: block {index} says it is block {number} of {total}")
            if flags & UF2_FLAG_FAMILY_ID:
                families.add(family)
    unknown = families - set(RP2_FAMILIES)
    if not families or unknown:
        shown = ", ".join(f"0x{f:08X}" for f in sorted(unknown)) or "none"
        raise FlashError(f"{path.name} is not an RP2040/RP2350 image (UF2 family ids: {shown})")
    return families


# ---- ESP32 family ------------------------------------------------------------------------
def flash_esp(port: str, firmware: Path, erase: bool = False, baud: int = 460800,
              offset: int | None = None, log: Log = print) -> dict:
    """Write an ESP image through esptool; returns {"chip", "offset"}."""
    if image_kind(firmware) != "esp":
        raise FlashError(f"{firmware.name} is a UF2 file: ESP32 boards take an ESP image (.bin)")
    # esptool shows its own progress: as much as the user asked for.
    esptool_log.set_verbosity({ui.QUIET: "silent", ui.VERBOSE: "verbose"}.get(ui.level, "auto"))
    try:
        with detect_chip(port) as esp:
            address = esp.BOOTLOADER_FLASH_OFFSET if offset is None else offset
            log(f"{esp.CHIP_NAME} on {port}: writing {firmware.name} at 0x{address:X}")
            esp = run_stub(esp)
            if baud > esp.ESP_ROM_BAUD:
                try:
                    esp.change_baud(baud)
                except NotImplementedInROMError:
                    pass  # this ROM keeps its own speed
            attach_flash(esp)
            if erase:
                erase_flash(esp)
            write_flash(esp, [(address, str(firmware))])
            reset_chip(esp, "hard-reset")
            return {"chip": esp.CHIP_NAME, "offset": address}
    except FatalError as exc:
        raise FlashError(f"esptool on {port}: {exc}") from None
    except OSError as exc:  # the serial port itself
        raise FlashError(f"cannot use {port}: {exc.strerror or exc}") from None


# ---- Pico W ------------------------------------------------------------------------------
def mount_points() -> list[Path]:
    """Where removable drives may be mounted on this machine."""
    if sys.platform.startswith("win"):
        return [Path(f"{letter}:\\") for letter in string.ascii_uppercase]
    if sys.platform == "darwin":
        return sorted(Path("/Volumes").glob("*"))
    points = []
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                # Spaces in mount points are written as \040.
                points.append(Path(line.split()[1].replace("\\040", " ")))
    except OSError:
        pass
    return points


def bootsel_board_id(drive: Path) -> str | None:
    """The Board-ID of a UF2 bootloader drive (RPI-RP2, RP2350, ...), None if it is not one."""
    try:
        info = (drive / INFO_FILE).read_text(errors="replace")
    except OSError:
        return None
    for line in info.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Board-ID":
            return value.strip()
    return ""


def bootsel_drives() -> list[Path]:
    """The mounted drives of Raspberry Pi boards waiting in BOOTSEL mode."""
    ids = set(filter(None, RP2_FAMILIES.values()))
    return [d for d in mount_points() if bootsel_board_id(d) in ids]


def enter_bootsel(port: str) -> None:
    """Ask a board running MicroPython to reboot into its UF2 bootloader (mpremote's `bootloader`)."""
    from .deploy import BoardError, run_detached

    try:
        run_detached(port, "machine.bootloader()")
    except BoardError as exc:
        raise FlashError(str(exc)) from None


def copy_uf2(firmware: Path, drive: Path) -> Path:
    """Copy the UF2 file onto the drive; the board flashes it and reboots by itself."""
    target = drive / firmware.name
    size = firmware.stat().st_size
    written = 0
    try:
        with open(firmware, "rb") as src, open(target, "wb") as dst, \
                ui.byte_progress(f"copying to {drive}", size) as advance:
            while chunk := src.read(64 * 1024):
                dst.write(chunk)
                written += len(chunk)
                advance(len(chunk))
            dst.flush()
            os.fsync(dst.fileno())
    except OSError as exc:
        # After the last block the board reboots and its drive vanishes: a late error is success.
        if written < size:
            raise FlashError(f"copying to {drive} failed after {written} of {size} bytes: {exc}") from None
    return target


def flash_uf2(firmware: Path, drive: Path | None = None, port: str | None = None,
              timeout: float = 30.0, log: Log = print) -> Path:
    """Flash a Pico W: onto `drive`, or the one BOOTSEL drive present, or `port` put into BOOTSEL."""
    if image_kind(firmware) != "uf2":
        raise FlashError(f"{firmware.name} is an ESP image: a Pico W takes a .uf2 file")
    families = uf2_families(firmware)
    if drive is None:
        before = bootsel_drives()
        if port is not None:
            port = resolve(port)
            log(f"{port}: rebooting into BOOTSEL")
            enter_bootsel(port)
            deadline = time.monotonic() + timeout
            while not (new := [d for d in bootsel_drives() if d not in before]):
                if time.monotonic() > deadline:
                    raise FlashError(f"no BOOTSEL drive appeared within {timeout:.0f} s after rebooting {port}")
                time.sleep(0.5)
            candidates = new
        else:
            candidates = before
        if not candidates:
            raise FlashError("no BOOTSEL drive found: hold BOOTSEL while plugging the board in, "
                             "or give -p PORT of a board running MicroPython, or --drive")
        if len(candidates) > 1:
            raise FlashError("several BOOTSEL drives: choose one with --drive ("
                             + ", ".join(map(str, candidates)) + ")")
        drive = candidates[0]
    board_id = bootsel_board_id(drive)
    if board_id is None:
        raise FlashError(f"{drive} is not a BOOTSEL drive (no {INFO_FILE})")
    wanted = {RP2_FAMILIES[f] for f in families} - {None}
    if wanted and board_id not in wanted:
        raise FlashError(f"{firmware.name} is built for {'/'.join(sorted(wanted))}, but {drive} is {board_id or 'unknown'}")
    log(f"copying {firmware.name} to {drive}")
    return copy_uf2(firmware, drive)


def flash(firmware: Path, port: str | None = None, drive: Path | None = None, erase: bool = False,
          baud: int = 460800, offset: int | None = None, timeout: float = 30.0, log: Log = print) -> None:
    """Flash whichever kind of image `firmware` is."""
    if image_kind(firmware) == "uf2":
        if erase or offset is not None:
            raise FlashError("--erase and --offset are for ESP images; a UF2 file says where it goes")
        flash_uf2(firmware, drive, port, timeout, log)
    else:
        flash_esp(resolve(port or AUTO), firmware, erase, baud, offset, log)


# ---- command line ------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("firmware", type=Path, help="MicroPython image: .bin (ESP32 family) or .uf2 (Pico W)")
    add_serial_port(p, default=None, help="the board's serial port (an ESP32, or a Pico W running MicroPython "
                                          "to reboot into BOOTSEL; default: auto for an ESP image)")
    p.add_argument("--drive", type=Path, help="the Pico W's BOOTSEL drive (default: found by its INFO_UF2.TXT)")
    p.add_argument("--erase", action="store_true", help="erase the whole flash first (ESP32)")
    p.add_argument("--baud", "-b", type=int, default=460800, help="flashing speed (ESP32)")
    p.add_argument("--offset", type=lambda s: int(s, 0), help="write address (default: the chip's bootloader offset)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a BOOTSEL drive to appear")


def run(args: argparse.Namespace) -> int:
    flash(args.firmware, args.port, args.drive, args.erase, args.baud, args.offset, args.timeout, ui.info)
    print(f"{args.firmware.name}: done")
    return 0
