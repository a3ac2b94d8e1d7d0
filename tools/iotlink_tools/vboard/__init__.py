"""Virtual boards: the real firmware in the MicroPython unix port with faked hardware (fakes/)."""

from .board import (BOOT_SEQUENCE, FAKES, REBOOT_STATUS, Board, board_env, compiled_fakes, micropython_command,
                    prepare_flash, read_pin_log)

__all__ = ["BOOT_SEQUENCE", "FAKES", "REBOOT_STATUS", "Board", "board_env", "compiled_fakes", "micropython_command",
           "prepare_flash", "read_pin_log"]
