"""The loop's heap with the library in ROMFS: its bytecode runs in place, as from a board's flash.

A .mpy imported from a file is copied into the heap. On MicroPython 1.25+ a board can keep the
library in a ROMFS partition (`mpremote romfs deploy`) instead, whose .mpy bytecode runs where it
lies; only the objects made at import (functions, classes, module globals) take heap. The unix
port has no flash, so the image is read into a bytearray allocated before anything else (one
block at the bottom of the heap, as the partition would be one block of flash) and mounted at
/rom. `-X heapsize` is then the image (rounded up to whole KiB) plus the heap bisected for: the
figure is the heap the loop needs besides its code. The image holds lib/iotlink and, in
/rom/firmware first on the path, the compiled fakes of machine and network: on a board those are
built into the firmware, so their code is in flash there too (their objects still take heap
here, which a board's C modules do not).
"""

from __future__ import annotations

import contextlib
import functools
import io
import shutil
import subprocess
import tempfile
from pathlib import Path

from mpremote.romfs import make_romfs

from iotlink_tools.firmware import PACKAGE, compile_library
from iotlink_tools.vboard import BOOT_SEQUENCE, Board, compiled_fakes, micropython_command

from . import bench_loop

MOUNT_POINT = "/rom"


def build_image(path: Path) -> Path:
    """Write a ROMFS image holding lib/iotlink/*.mpy and firmware/ (the compiled hardware fakes)
    to path, as `mpremote romfs build` does."""
    with tempfile.TemporaryDirectory() as tmp:
        compile_library(Path(tmp) / "lib")
        compiled_fakes(Path(tmp) / "firmware")
        with contextlib.redirect_stdout(io.StringIO()):  # make_romfs prints the tree it builds
            image = make_romfs(tmp, mpy_cross=False)
    path.write_bytes(image)
    return path


def image_kib(image: Path) -> int:
    return -(-image.stat().st_size // 1024)


def mount_program(image: Path) -> str:
    """Device code that puts the image in the heap first, mounts it and makes /rom/lib importable."""
    return (f"_rom = bytearray({image.stat().st_size})\n"
            f"with open({str(image.resolve())!r}, 'rb') as _f:\n"
            f"    _f.readinto(_rom)\n"
            f"import sys, vfs\n"
            f"vfs.mount(vfs.VfsRom(_rom), {MOUNT_POINT!r})\n"
            f"sys.path.insert(0, {MOUNT_POINT + '/firmware'!r})\n"
            f"sys.path.append({MOUNT_POINT + '/lib'!r})\n"
            f"del _f, _rom\n")


def romfs_board(image: Path, flash: Path, heap_kb: int, work: Path) -> Board:
    """The firmware with the library only in ROMFS; heap_kb is the heap besides the image."""
    shutil.rmtree(flash / PACKAGE)  # nothing to import iotlink from but /rom/lib
    board = Board(flash, "loop-romfs", env={"MICROPYPATH": "lib:.frozen"})
    # A board mounts its ROMFS before boot.py runs: the same boot, with the mount in front.
    heapsize = f"{heap_kb + image_kib(image)}K"
    board.command = micropython_command(heapsize) + ["-c", mount_program(image) + BOOT_SEQUENCE]
    return board


def fakes_heap_bytes(image: Path) -> int:
    """The heap the fakes take with their code in the image (their objects only)."""
    program = mount_program(image) + bench_loop.FAKES_PROGRAM.format(modules="machine, network")
    proc = subprocess.run(micropython_command() + ["-c", program], env={"MICROPYPATH": ".frozen"},
                          capture_output=True, text=True, timeout=60, check=True)
    return int(proc.stdout.split()[-1])


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        image = build_image(work / "iotlink.romfs")
        besides = bench_loop.smallest_heap_kb(work, make_board=functools.partial(romfs_board, image))
        return {"image_bytes": image.stat().st_size, "image_kib": image_kib(image),
                "heap_besides_code_kib": besides,
                "smallest_heap_kib": None if besides is None else besides + image_kib(image),
                "fakes_heap_bytes": fakes_heap_bytes(image)}


def describe(figures: dict) -> str:
    return (f"with the library in ROMFS (a {figures['image_bytes']}-byte image, {figures['image_kib']} KiB of "
            f"the heap here, flash on a board) the loop runs {bench_loop.ITERATIONS} iterations in "
            f"{figures['heap_besides_code_kib']} KiB of heap besides it ({figures['smallest_heap_kib']} KiB "
            f"`-X heapsize` in all)")


if __name__ == "__main__":
    print(describe(run()))
