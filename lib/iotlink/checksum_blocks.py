# Cuts a stream written in pieces of any size into whole blocks: the pure-Python hashes and the
# ESP32 image writer subclass Blocks and implement _block(buf, offset), called once per `size`
# bytes.


class Blocks:
    def __init__(self, size):
        self._size = size
        self._tail = bytearray(size)  # the start of a block still waiting for its end
        self._fill = 0
        self._length = 0  # bytes written in all

    def update(self, data):
        mv = memoryview(data)
        n = len(mv)
        size = self._size
        self._length += n
        i = 0
        if self._fill:
            i = min(size - self._fill, n)
            self._tail[self._fill : self._fill + i] = mv[:i]
            self._fill += i
            if self._fill < size:
                return
            self._block(self._tail, 0)
            self._fill = 0
        end = n - (n - i) % size
        block = self._block
        while i < end:
            block(mv, i)
            i += size
        if i < n:
            self._tail[: n - i] = mv[i:]
            self._fill = n - i
