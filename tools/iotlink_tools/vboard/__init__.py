"""Virtual boards: the real firmware in the MicroPython unix port with faked hardware (fakes/)."""

from .board import (BOOT_SEQUENCE, FLASH_FILES, FLASH_PACKAGE, REBOOT_STATUS, Board, board_env,
                    micropython_command, prepare_flash, read_pin_log)

__all__ = ["BOOT_SEQUENCE", "FLASH_FILES", "FLASH_PACKAGE", "REBOOT_STATUS", "Board", "board_env",
           "micropython_command", "prepare_flash", "read_pin_log"]
