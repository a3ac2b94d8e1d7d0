"""iotlink flash: esptool's calls per chip (only the serial/chip layer is faked), UF2 onto a folder
that looks like a BOOTSEL drive, and images refused before anything is written."""

import struct
from contextlib import contextmanager

import pytest
from esptool.targets import CHIP_DEFS

from iotlink_tools import cli
from iotlink_tools.commands import flash
from iotlink_tools.commands.flash import FlashError

# MicroPython's combined firmware.bin goes at the bootloader offset (reference section 6).
OFFSETS = {"esp32": 0x1000, "esp32s2": 0x1000, "esp32s3": 0x0, "esp32c3": 0x0, "esp32c6": 0x0,
           "esp32c2": 0x0, "esp32h2": 0x0, "esp32c5": 0x2000, "esp32p4": 0x2000}
RP2040, RP2350_ARM = 0xE48BFF56, 0xE48BFF59


def uf2(blocks=3, family=RP2040, magic_end=0x0AB16F30):
    """A UF2 file: blocks of 256 payload bytes for consecutive flash addresses."""
    data = b""
    for n in range(blocks):
        head = struct.pack("<8I", 0x0A324655, 0x9E5D5157, 0x2000, 0x10000000 + 256 * n, 256, n, blocks, family)
        data += head + bytes([n]) * 256 + bytes(476 - 256) + struct.pack("<I", magic_end)
    return data


def esp_image():
    return bytes([0xE9, 0x03, 0x02, 0x20]) + bytes(60)


class ChipLayer:
    """Stands in for the serial line and the chip: esptool's connect/stub/attach/erase/write/reset."""

    def __init__(self, monkeypatch, chip):
        self.calls = []
        esp = CHIP_DEFS[chip].__new__(CHIP_DEFS[chip])  # the real chip class, without a port
        esp.change_baud = lambda baud: self.calls.append(("baud", baud))

        @contextmanager
        def detect_chip(port):
            self.calls.append(("detect", port))
            yield esp

        def record(name):
            def call(esp_, *args, **kw):
                self.calls.append((name,) + args)
                return esp_
            return call

        monkeypatch.setattr(flash, "detect_chip", detect_chip)
        for name in ("run_stub", "attach_flash", "erase_flash", "write_flash", "reset_chip"):
            monkeypatch.setattr(flash, name, record(name))


@pytest.mark.parametrize("chip", sorted(OFFSETS))
def test_esp_offset_and_arguments_per_chip(monkeypatch, tmp_path, chip):
    image = tmp_path / "firmware.bin"
    image.write_bytes(esp_image())
    layer = ChipLayer(monkeypatch, chip)
    done = flash.flash_esp("/dev/ttyUSB7", image, log=lambda line: None)
    assert done == {"chip": CHIP_DEFS[chip].CHIP_NAME, "offset": OFFSETS[chip]}
    assert layer.calls == [("detect", "/dev/ttyUSB7"), ("run_stub",), ("baud", 460800), ("attach_flash",),
                           ("write_flash", [(OFFSETS[chip], str(image))]), ("reset_chip", "hard-reset")]


def test_esp_erase_first_and_offset_override(monkeypatch, tmp_path):
    image = tmp_path / "micropython.bin"
    image.write_bytes(esp_image())
    layer = ChipLayer(monkeypatch, "esp32s3")
    assert cli.main(["flash", str(image), "--port", "/dev/ttyACM0", "--erase", "--offset", "0x10000",
                     "--baud", "115200"]) == 0
    names = [c[0] for c in layer.calls]
    assert names == ["detect", "run_stub", "attach_flash", "erase_flash", "write_flash", "reset_chip"]
    assert ("write_flash", [(0x10000, str(image))]) in layer.calls  # 115200 is the ROM's speed: no change


@pytest.mark.parametrize("content, why", [
    (b"\x00" * 64, "first byte 0x00, expected 0xE9"),
    (b"", "first byte nothing"),
])
def test_bad_esp_image_refused_before_connecting(monkeypatch, tmp_path, content, why, capsys):
    image = tmp_path / "firmware.bin"
    image.write_bytes(content)
    layer = ChipLayer(monkeypatch, "esp32")
    assert cli.main(["flash", str(image), "--port", "/dev/ttyUSB0"]) == 1
    assert why in capsys.readouterr().err
    assert layer.calls == []


def test_uf2_where_an_esp_image_belongs(monkeypatch, tmp_path):
    image = tmp_path / "pico.uf2"
    image.write_bytes(uf2())
    layer = ChipLayer(monkeypatch, "esp32")
    with pytest.raises(FlashError, match="ESP32 boards take an ESP image"):
        flash.flash_esp("/dev/ttyUSB0", image)
    assert layer.calls == []


def bootsel_drive(folder, board_id="RPI-RP2"):
    folder.mkdir()
    (folder / "INFO_UF2.TXT").write_text(f"UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\nBoard-ID: {board_id}\n")
    (folder / "INDEX.HTM").write_text("<html></html>")
    return folder


def test_uf2_copied_onto_given_drive(tmp_path):
    image = tmp_path / "RPI_PICO_W.uf2"
    image.write_bytes(uf2(blocks=5))
    drive = bootsel_drive(tmp_path / "RPI-RP2")
    flash.flash(image, drive=drive, log=lambda line: None)
    assert (drive / "RPI_PICO_W.uf2").read_bytes() == image.read_bytes()


def test_uf2_finds_the_one_bootsel_drive(monkeypatch, tmp_path):
    image = tmp_path / "fw.uf2"
    image.write_bytes(uf2())
    stick = tmp_path / "usb-stick"
    stick.mkdir()
    other_uf2 = bootsel_drive(tmp_path / "FTHR840BOOT", board_id="Feather-nRF52840")
    drive = bootsel_drive(tmp_path / "RPI-RP2 disk")
    monkeypatch.setattr(flash, "mount_points", lambda: [stick, other_uf2, drive])
    assert cli.main(["flash", str(image)]) == 0
    assert (drive / "fw.uf2").read_bytes() == image.read_bytes()
    assert not (stick / "fw.uf2").exists() and not (other_uf2 / "fw.uf2").exists()


def test_uf2_several_or_no_drives(monkeypatch, tmp_path, capsys):
    image = tmp_path / "fw.uf2"
    image.write_bytes(uf2())
    drives = [bootsel_drive(tmp_path / "a"), bootsel_drive(tmp_path / "b")]
    monkeypatch.setattr(flash, "mount_points", lambda: drives)
    assert cli.main(["flash", str(image)]) == 1
    assert "several BOOTSEL drives: choose one with --drive" in capsys.readouterr().err
    monkeypatch.setattr(flash, "mount_points", lambda: [])
    assert cli.main(["flash", str(image)]) == 1
    assert "no BOOTSEL drive found" in capsys.readouterr().err
    assert not any((d / "fw.uf2").exists() for d in drives)


@pytest.mark.parametrize("content, why", [
    (uf2()[:-100], "not a whole number of 512-byte UF2 blocks"),
    (uf2(magic_end=0x12345678), "block 0 has wrong UF2 magic numbers"),
    (uf2(family=0xBFDD4EEE), r"not an RP2040/RP2350 image \(UF2 family ids: 0xBFDD4EEE\)"),  # ESP32-S2
])
def test_bad_uf2_refused_nothing_copied(tmp_path, content, why):
    image = tmp_path / "bad.uf2"
    image.write_bytes(content)
    drive = bootsel_drive(tmp_path / "RPI-RP2")
    with pytest.raises(FlashError, match=why):
        flash.flash(image, drive=drive)
    assert sorted(p.name for p in drive.iterdir()) == ["INDEX.HTM", "INFO_UF2.TXT"]


def test_block_numbering_checked(tmp_path):
    image = tmp_path / "bad.uf2"
    blocks = bytearray(uf2(blocks=2))
    struct.pack_into("<I", blocks, 512 + 20, 7)  # block 1 claims to be block 7 of 2
    image.write_bytes(bytes(blocks))
    with pytest.raises(FlashError, match="block 1 says it is block 7 of 2"):
        flash.uf2_families(image)


def test_rp2350_image_refused_on_rp2040_drive(tmp_path):
    image = tmp_path / "pico2.uf2"
    image.write_bytes(uf2(family=RP2350_ARM))
    drive = bootsel_drive(tmp_path / "RPI-RP2")
    with pytest.raises(FlashError, match="built for RP2350, but .* is RPI-RP2"):
        flash.flash(image, drive=drive)
    rp2350 = bootsel_drive(tmp_path / "RP2350", board_id="RP2350")
    flash.flash(image, drive=rp2350, log=lambda line: None)
    assert (rp2350 / "pico2.uf2").exists()


def test_running_pico_rebooted_into_bootsel_then_flashed(monkeypatch, tmp_path, pty_board):
    """A Pico W running MicroPython (a virtual board): machine.bootloader() through its serial port,
    then its drive appears (here: made by the test when the board has left the application)."""
    board = pty_board("pico")
    image = tmp_path / "fw.uf2"
    image.write_bytes(uf2())
    drive = tmp_path / "RPI-RP2"

    def mounted():
        if board.returncode is not None and not drive.exists():  # the board left for its bootloader
            bootsel_drive(drive)
        return [drive] if drive.exists() else []

    monkeypatch.setattr(flash, "mount_points", mounted)
    flash.flash(image, port=board.port, timeout=10, log=lambda line: None)
    assert "machine: bootloader" in board.console() and board.returncode == 0
    assert (drive / "fw.uf2").read_bytes() == image.read_bytes()


def test_bootsel_drive_that_never_appears(monkeypatch, tmp_path, pty_board):
    board = pty_board("pico")
    image = tmp_path / "fw.uf2"
    image.write_bytes(uf2())
    monkeypatch.setattr(flash, "mount_points", lambda: [])
    with pytest.raises(FlashError, match="no BOOTSEL drive appeared within 1 s"):
        flash.flash(image, port=board.port, timeout=1)
