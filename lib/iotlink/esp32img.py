# An ESP32 app image (micropython.bin, first byte 0xE9) written to the next OTA partition while
# it downloads, block by block, then read back: the flash must hold exactly what was hashed.
from iotlink.checksum import crc32

_BLOCK_SIZE = 5  # Partition.ioctl operation


class ImageWriter:
    def __init__(self, size):
        try:
            from esp32 import Partition
        except ImportError:
            raise ValueError("ESP32 app image, but this board has no esp32.Partition")
        self.part = Partition(Partition.RUNNING).get_next_update()
        capacity = self.part.info()[3]
        if size > capacity:
            raise ValueError("image of %d bytes does not fit the %d byte partition" % (size, capacity))
        self.label = self.part.info()[4]
        self.size = size
        self._block = self.part.ioctl(_BLOCK_SIZE, 0)
        self._buf = bytearray(self._block)  # a partial block; the read-back buffer at the end
        self._fill = 0
        self._next = 0  # next block number
        self._crc = crc32()

    def _put(self, buf):
        self.part.writeblocks(self._next, buf)  # the 2-argument form erases the block first
        self._next += 1

    def write(self, data):
        mv = memoryview(data)
        n = len(mv)
        self._crc.update(mv)
        block = self._block
        i = 0
        if self._fill:
            take = min(block - self._fill, n)
            self._buf[self._fill : self._fill + take] = mv[:take]
            self._fill += take
            i = take
            if self._fill < block:
                return
            self._put(self._buf)
            self._fill = 0
        while n - i >= block:
            self._put(mv[i : i + block])
            i += block
        if i < n:
            self._buf[: n - i] = mv[i:]
            self._fill = n - i

    def close(self):
        if self._fill:
            for i in range(self._fill, self._block):
                self._buf[i] = 0xFF
            self._put(self._buf)
            self._fill = 0
        readback = crc32()
        view = memoryview(self._buf)
        for num in range(self._next):
            self.part.readblocks(num, self._buf)
            readback.update(view[: min(self._block, self.size - num * self._block)])
        if readback.value() != self._crc.value():
            raise ValueError("image read back from %s differs from the download" % self.label)

    def abort(self):
        pass  # an unbooted partition needs no cleanup: the next update erases it

    def boot(self):
        # Boot the new image at the next reset; the bootloader validates it (OSError if invalid).
        self.part.set_boot()
