# An ESP32 app image (micropython.bin, first byte 0xE9) written to the next OTA partition while
# it downloads, block by block, then read back: the flash must hold exactly what was hashed.
from iotlink.checksum_blocks import Blocks
from iotlink.checksum import crc32

_BLOCK_SIZE = 5  # Partition.ioctl operation


class ImageWriter(Blocks):
    def __init__(self, size):
        try:
            from esp32 import Partition
        except ImportError:
            raise ValueError("ESP32 app image, but this board has no esp32.Partition")
        self.part = Partition(Partition.RUNNING).get_next_update()
        capacity = self.part.info()[3]
        if size > capacity:
            raise ValueError("image of %d bytes does not fit the %d byte partition" % (size, capacity))
        super().__init__(self.part.ioctl(_BLOCK_SIZE, 0))
        self.label = self.part.info()[4]
        self.size = size
        self._next = 0  # next block number
        self._crc = crc32()

    def _block(self, buf, offset):
        # The 2-argument writeblocks erases the block first.
        self.part.writeblocks(self._next, memoryview(buf)[offset : offset + self._size])
        self._next += 1

    def write(self, data):
        self._crc.update(data)
        self.update(data)

    def close(self):
        if self._fill:
            for i in range(self._fill, self._size):
                self._tail[i] = 0xFF
            self._block(self._tail, 0)
            self._fill = 0
        readback = crc32()
        view = memoryview(self._tail)
        for num in range(self._next):
            self.part.readblocks(num, self._tail)
            readback.update(view[: min(self._size, self.size - num * self._size)])
        if readback.value() != self._crc.value():
            raise ValueError("image read back from %s differs from the download" % self.label)

    def abort(self):
        pass  # an unbooted partition needs no cleanup: the next update erases it

    def boot(self):
        # Boot the new image at the next reset; the bootloader validates it (OSError if invalid).
        self.part.set_boot()
