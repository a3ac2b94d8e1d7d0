"""Virtual boards: the real firmware in the MicroPython unix port with faked hardware (fakes/)."""

from .board import (BOOT_SEQUENCE, DEEPSLEEP_STATUS, FAKES, REBOOT_STATUS, Board, board_env, compiled_fakes,
                    micropython_command, prepare_flash, radio_on_ms, read_pin_log, read_radio_log)

__all__ = ["BOOT_SEQUENCE", "DEEPSLEEP_STATUS", "FAKES", "REBOOT_STATUS", "Board", "board_env", "compiled_fakes",
           "micropython_command", "prepare_flash", "radio_on_ms", "read_pin_log", "read_radio_log"]
