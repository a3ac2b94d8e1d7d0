# Fake `esp32` for the MicroPython unix port: Partition only, backed by files, for OTA tests.
# Signatures follow docs.micropython.org/en/latest/library/esp32.html. Host contracts:
#   * the partition table is MicroPython's partitions-4MiB-ota.csv (ota_0, ota_1: 1.5 MiB each);
#   * each partition is a file <label>.bin in $IOTLINK_ESP32_FLASH (default: .esp32 in the
#     board's flash folder), created on first write; erased or never written flash reads 0xFF;
#   * otadata.json there holds the boot partition and each app's OTA state;
#   * importing this module is the boot: an app that set_boot() chose starts "pending verify";
#     if it is still pending at the next boot (no mark_app_valid_cancel_rollback()), it is
#     marked aborted and the previous app boots, as ESP-IDF's bootloader with rollback enabled.
import json
import os

_TYPE_APP = 0
_TYPE_DATA = 1
# (type, subtype, address, size, label)
_TABLE = (
    (_TYPE_DATA, 0x02, 0x9000, 0x4000, "nvs"),
    (_TYPE_DATA, 0x00, 0xD000, 0x2000, "otadata"),
    (_TYPE_DATA, 0x01, 0xF000, 0x1000, "phy_init"),
    (_TYPE_APP, 0x10, 0x10000, 0x180000, "ota_0"),
    (_TYPE_APP, 0x11, 0x190000, 0x180000, "ota_1"),
    (_TYPE_DATA, 0x81, 0x310000, 0xF0000, "vfs"),
)
_OTA_APPS = ("ota_0", "ota_1")
_ESP_ERR_NOT_FOUND = 0x105
_ESP_ERR_INVALID_SIZE = 0x104
_ESP_ERR_OTA_VALIDATE_FAILED = 0x1503


def _dir():
    return os.getenv("IOTLINK_ESP32_FLASH") or ".esp32"


def _otadata_path():
    return _dir() + "/otadata.json"


def _load():
    try:
        with open(_otadata_path()) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"boot": "ota_0", "previous": None, "states": {}}


def _save(data):
    try:
        os.mkdir(_dir())
    except OSError:
        pass
    with open(_otadata_path(), "w") as f:
        json.dump(data, f)


def _boot():
    # What the bootloader does at power-up: returns the label of the app that runs.
    data = _load()
    boot = data["boot"]
    state = data["states"].get(boot)
    if state == "new":
        data["states"][boot] = "pending_verify"
        _save(data)
    elif state == "pending_verify" and data.get("previous"):
        data["states"][boot] = "aborted"
        boot = data["boot"] = data["previous"]
        _save(data)
    return boot


_running = _boot()


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = _TYPE_APP
    TYPE_DATA = _TYPE_DATA

    def __init__(self, id, block_size=4096):
        if block_size < 128 or block_size % 128:
            raise ValueError("invalid block size")
        if id == Partition.BOOT:
            id = _load()["boot"]
        elif id == Partition.RUNNING:
            id = _running
        for entry in _TABLE:
            if entry[4] == id:
                break
        else:
            raise ValueError("partition not found")
        self._type, self._subtype, self._addr, self._size, self._label = entry
        self._block_size = block_size

    @staticmethod
    def find(type=_TYPE_APP, subtype=0xFF, label=None, block_size=4096):
        return [
            Partition(e[4], block_size)
            for e in _TABLE
            if e[0] == type and subtype in (0xFF, e[1]) and label in (None, e[4])
        ]

    def info(self):
        return (self._type, self._subtype, self._addr, self._size, self._label, False)

    def __repr__(self):
        return "<Partition type=%d, subtype=%d, address=%d, size=%d, label=%s, encrypted=0>" % (
            self._type, self._subtype, self._addr, self._size, self._label)

    # ---- flash contents --------------------------------------------------------------
    def _file(self):
        return _dir() + "/" + self._label + ".bin"

    def _check_range(self, offset, length):
        if offset < 0 or offset + length > self._size:
            raise OSError(-_ESP_ERR_INVALID_SIZE)

    def _read(self, offset, length):
        self._check_range(offset, length)
        try:
            with open(self._file(), "rb") as f:
                f.seek(offset)
                data = f.read(length)
        except OSError:
            data = b""
        return data + b"\xff" * (length - len(data))

    def _write(self, offset, data):
        try:
            os.mkdir(_dir())
        except OSError:
            pass
        try:
            f = open(self._file(), "r+b")
        except OSError:
            f = open(self._file(), "wb")
        with f:
            f.seek(0, 2)
            end = f.tell()
            if end < offset:
                f.write(b"\xff" * (offset - end))  # never written: erased
            f.seek(offset)
            f.write(data)

    def _erase(self, offset, length):
        self._check_range(offset, length)
        self._write(offset, b"\xff" * length)

    def readblocks(self, block_num, buf, offset=0):
        start = block_num * self._block_size + offset
        buf[:] = self._read(start, len(buf))

    def writeblocks(self, block_num, buf, offset=None):
        start = block_num * self._block_size + (offset or 0)
        self._check_range(start, len(buf))
        if offset is None:
            # Without an offset the blocks are erased first, as the real port does.
            bs = self._block_size
            self._erase(block_num * bs, (len(buf) + bs - 1) // bs * bs)
            self._write(start, bytes(buf))
        else:
            # NOR flash: a write can only clear bits.
            old = self._read(start, len(buf))
            self._write(start, bytes(a & b for a, b in zip(old, bytes(buf))))

    def ioctl(self, cmd, arg):
        if cmd in (1, 2, 3):  # init, deinit, sync
            return 0
        if cmd == 4:
            return self._size // self._block_size
        if cmd == 5:
            return self._block_size
        if cmd == 6:
            self._erase(arg * self._block_size, self._block_size)
            return 0
        return None

    # ---- OTA -------------------------------------------------------------------------
    def get_next_update(self):
        if self._label not in _OTA_APPS:
            raise OSError(-_ESP_ERR_NOT_FOUND)
        i = _OTA_APPS.index(self._label)
        return Partition(_OTA_APPS[(i + 1) % len(_OTA_APPS)])

    def set_boot(self):
        # The bootloader checks the image: an app image starts with the magic byte 0xE9.
        if self._type != _TYPE_APP or self._read(0, 1) != b"\xe9":
            raise OSError(-_ESP_ERR_OTA_VALIDATE_FAILED)
        data = _load()
        data["boot"] = self._label
        data["previous"] = _running
        data["states"][self._label] = "new"
        _save(data)

    @staticmethod
    def mark_app_valid_cancel_rollback():
        data = _load()
        if data["states"].get(_running) == "pending_verify":
            data["states"][_running] = "valid"
            _save(data)
