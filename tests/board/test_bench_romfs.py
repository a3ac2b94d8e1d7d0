"""The ROMFS bench's parts: the image mpremote builds mounts in micropython, the library imports
from it without copying its bytecode into the heap, and a board boots the firmware from it."""

import functools

import pytest
from iotlink_lab import bench_loop, bench_romfs
from iotlink_tools.firmware import PACKAGE, compile_library
from iotlink_tools.vboard import FAKES
from support import run_mp

IMPORT_APP = """
import gc, os
import machine, network, requests  # not the library: outside the figure
gc.collect()
before = gc.mem_alloc()
import iotlink.app
gc.collect()
out({"file": iotlink.app.__file__, "heap": gc.mem_alloc() - before,
     "rom": sorted(os.listdir("/rom/lib/iotlink")) if "/rom/lib" in sys.path else None})
"""


def test_the_library_imports_from_romfs_without_its_bytecode_in_the_heap(tmp_path):
    image = bench_romfs.build_image(tmp_path / "iotlink.romfs")
    mpy = compile_library(tmp_path / "mpy")
    app_mpy = (tmp_path / "mpy" / "iotlink" / "app.mpy").stat().st_size
    from_rom = run_mp(bench_romfs.mount_program(image) + IMPORT_APP, tmp_path,
                      env={"MICROPYPATH": f"{FAKES}:.frozen"}).result
    from_files = run_mp("import sys\n" + IMPORT_APP, tmp_path,
                        env={"MICROPYPATH": f"{FAKES}:{tmp_path / 'mpy'}:.frozen"}).result
    assert from_rom["file"] == "/rom/lib/iotlink/app.mpy"
    assert from_rom["rom"] == sorted(f.name for f in mpy)  # every module, nothing else
    assert from_files["file"].endswith("mpy/iotlink/app.mpy")
    # app.py's own bytecode alone is more than the difference could be if it were copied.
    assert from_rom["heap"] < from_files["heap"] - app_mpy


@pytest.mark.slow
def test_the_firmware_boots_from_romfs_and_delivers(tmp_path):
    image = bench_romfs.build_image(tmp_path / "iotlink.romfs")
    board = functools.partial(bench_romfs.romfs_board, image)
    assert bench_loop.loop_runs(256, tmp_path, iterations=3, timeout_s=20, make_board=board)
    assert not (tmp_path / "flash-256" / PACKAGE).exists()  # iotlink came from /rom only
