# MurmurHash3 x86_32 and x64_128 (seed 0 by default), streaming, as Guava's Hashing.murmur3_32()
# and murmur3_128() compute them for ThingsBoard's package checksums. digest() gives the hash
# bytes in Guava's order: the 32-bit value little-endian; h1 then h2, each little-endian.
import struct

from iotlink.checksum_blocks import Blocks

_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF


class murmur3_32(Blocks):
    digest_size = 4

    def __init__(self, data=None, seed=0):
        super().__init__(4)
        self._h = seed & _M32
        if data:
            self.update(data)

    def _block(self, buf, i):
        k = (struct.unpack_from("<I", buf, i)[0] * 0xCC9E2D51) & _M32
        k = ((k << 15) | (k >> 17)) & _M32
        h = self._h ^ ((k * 0x1B873593) & _M32)
        h = ((h << 13) | (h >> 19)) & _M32
        self._h = (h * 5 + 0xE6546B64) & _M32

    def digest(self):
        h = self._h
        if self._fill:
            k = int.from_bytes(bytes(self._tail[: self._fill]), "little")
            k = (k * 0xCC9E2D51) & _M32
            k = ((k << 15) | (k >> 17)) & _M32
            h ^= (k * 0x1B873593) & _M32
        h ^= self._length & _M32
        h ^= h >> 16
        h = (h * 0x85EBCA6B) & _M32
        h ^= h >> 13
        h = (h * 0xC2B2AE35) & _M32
        h ^= h >> 16
        return struct.pack("<I", h)


_C1 = 0x87C37B91114253D5
_C2 = 0x4CF5AD432745937F


def _fmix64(k):
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _M64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _M64
    return k ^ (k >> 33)


def _mix_k1(k1):
    k1 = (k1 * _C1) & _M64
    k1 = ((k1 << 31) | (k1 >> 33)) & _M64
    return (k1 * _C2) & _M64


def _mix_k2(k2):
    k2 = (k2 * _C2) & _M64
    k2 = ((k2 << 33) | (k2 >> 31)) & _M64
    return (k2 * _C1) & _M64


class murmur3_128(Blocks):
    digest_size = 16

    def __init__(self, data=None, seed=0):
        super().__init__(16)
        self._h1 = self._h2 = seed & _M64
        if data:
            self.update(data)

    def _block(self, buf, i):
        k1, k2 = struct.unpack_from("<QQ", buf, i)
        h1 = self._h1 ^ _mix_k1(k1)
        h1 = ((h1 << 27) | (h1 >> 37)) & _M64
        h1 = ((h1 + self._h2) * 5 + 0x52DCE729) & _M64
        h2 = self._h2 ^ _mix_k2(k2)
        h2 = ((h2 << 31) | (h2 >> 33)) & _M64
        self._h2 = ((h2 + h1) * 5 + 0x38495AB5) & _M64
        self._h1 = h1

    def digest(self):
        h1, h2 = self._h1, self._h2
        n = self._fill
        if n:
            tail = bytes(self._tail[:n])
            if n > 8:
                h2 ^= _mix_k2(int.from_bytes(tail[8:], "little"))
            h1 ^= _mix_k1(int.from_bytes(tail[:8], "little"))
        h1 ^= self._length
        h2 ^= self._length
        h1 = (h1 + h2) & _M64
        h2 = (h2 + h1) & _M64
        h1 = _fmix64(h1)
        h2 = _fmix64(h2)
        h1 = (h1 + h2) & _M64
        h2 = (h2 + h1) & _M64
        return struct.pack("<QQ", h1, h2)
