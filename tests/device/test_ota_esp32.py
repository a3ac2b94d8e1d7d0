"""The fake esp32.Partition (iotlink_tools/vboard/fakes/esp32.py): the official API, file-backed,
with the bootloader's rollback. Each micropython run is one boot of the board."""

import json


def test_partition_table_and_info(mp):
    run = mp("""
from esp32 import Partition
out({
    "apps": [p.info() for p in Partition.find(Partition.TYPE_APP)],
    "data": [p.info()[4] for p in Partition.find(type=Partition.TYPE_DATA)],
    "ota_1": [p.info()[4] for p in Partition.find(Partition.TYPE_APP, 0x11)],
    "vfs": [p.info()[4] for p in Partition.find(Partition.TYPE_DATA, label="vfs")],
    "running": Partition(Partition.RUNNING).info()[4],
    "boot": Partition(Partition.BOOT).info()[4],
    "next": Partition(Partition.RUNNING).get_next_update().info()[4],
    "blocks": Partition("ota_0").ioctl(4, 0), "block_size": Partition("ota_0", 8192).ioctl(5, 0),
})
""")
    assert run.result == {
        "apps": [[0, 0x10, 0x10000, 0x180000, "ota_0", False], [0, 0x11, 0x190000, 0x180000, "ota_1", False]],
        "data": ["nvs", "otadata", "phy_init", "vfs"], "ota_1": ["ota_1"], "vfs": ["vfs"],
        "running": "ota_0", "boot": "ota_0", "next": "ota_1", "blocks": 384, "block_size": 8192,
    }


def test_blocks_erase_and_nor_writes(mp):
    run = mp("""
from esp32 import Partition
p = Partition("ota_1")
buf = bytearray(8)
p.readblocks(3, buf)
fresh = bytes(buf)
p.writeblocks(0, b"\\x0f" * 4096)
p.writeblocks(0, b"\\xf3\\xf3", 10)       # with an offset: no erase, bits only cleared
p.readblocks(0, buf, 8)
nor = bytes(buf)
p.writeblocks(0, b"\\xaa")               # without: the whole block is erased first
p.readblocks(0, buf)
erased = bytes(buf)
p.ioctl(6, 0)
p.readblocks(0, buf)
out([fresh.hex(), nor.hex(), erased.hex(), bytes(buf).hex()])
try:
    p.writeblocks(384, b"x")
except OSError as e:
    out(e.args[0])
""")
    assert run.results == [["ff" * 8, "0f0f03030f0f0f0f", "aa" + "ff" * 7, "ff" * 8], -0x104]


def test_set_boot_checks_the_image(mp):
    run = mp("""
from esp32 import Partition
p = Partition(Partition.RUNNING).get_next_update()
try:
    p.set_boot()
except OSError as e:
    out(e.args[0])
""")
    assert run.result == -0x1503
    assert not (mp.flash / ".esp32/otadata.json").exists()


SET_BOOT = """
from esp32 import Partition
p = Partition(Partition.RUNNING).get_next_update()
p.writeblocks(0, b"\\xe9" + bytes(100))
p.set_boot()
out(Partition(Partition.RUNNING).info()[4])
"""
RUNNING = "from esp32 import Partition\nout(Partition(Partition.RUNNING).info()[4])\n"
CONFIRM = RUNNING + "Partition.mark_app_valid_cancel_rollback()\n"


def test_confirmed_image_stays(mp):
    assert mp(SET_BOOT).result == "ota_0"  # runs on until the reset
    assert mp(CONFIRM).result == "ota_1"
    assert mp(RUNNING).result == "ota_1"
    assert mp(RUNNING).result == "ota_1"


def test_unconfirmed_image_is_rolled_back_at_the_next_boot(mp):
    mp(SET_BOOT)
    assert mp(RUNNING).result == "ota_1"  # pending verify
    assert mp(RUNNING).result == "ota_0"  # not marked valid: back to the previous app
    state = json.loads((mp.flash / ".esp32/otadata.json").read_text())
    assert state["states"]["ota_1"] == "aborted" and state["boot"] == "ota_0"


def test_flash_folder_from_the_environment(mp, tmp_path_factory):
    folder = tmp_path_factory.mktemp("esp32flash")
    mp(SET_BOOT, env={"IOTLINK_ESP32_FLASH": str(folder)})
    assert (folder / "ota_1.bin").read_bytes()[:1] == b"\xe9"
    assert not (mp.flash / ".esp32").exists()
