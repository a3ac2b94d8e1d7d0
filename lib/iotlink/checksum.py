# Streaming package checksums in ThingsBoard's exact format (Guava HashCode.toString(): the
# lowercase hex of the hash bytes). The port's C hashlib/binascii where it has them, iotlink's
# pure-Python MurmurHash3 and SHA-384/512 otherwise. An algorithm the port cannot compute is
# refused with ValueError, never skipped.
import binascii
import struct

ALGORITHMS = ("MD5", "SHA256", "SHA384", "SHA512", "CRC32", "MURMUR3_32", "MURMUR3_128")


class crc32:
    # binascii.crc32 carried across updates; the 32-bit value little-endian, as Guava gives it.
    digest_size = 4

    def __init__(self, data=None):
        self._crc = 0
        if data:
            self.update(data)

    def update(self, data):
        self._crc = binascii.crc32(data, self._crc)

    def value(self):
        return self._crc & 0xFFFFFFFF

    def digest(self):
        return struct.pack("<I", self.value())


def _constructor(name):
    if name in ("MD5", "SHA256", "SHA384", "SHA512"):
        import hashlib

        ctor = getattr(hashlib, name.lower(), None)
        if ctor is None and name in ("SHA384", "SHA512"):
            from iotlink import checksum_sha512

            ctor = getattr(checksum_sha512, name.lower())
        return ctor
    if name == "CRC32":
        return crc32 if hasattr(binascii, "crc32") else None
    from iotlink import checksum_murmur3

    return getattr(checksum_murmur3, name.lower())


def new(algorithm):
    # A hasher for a ThingsBoard algorithm name: update(buf) as often as needed, then hexdigest().
    name = str(algorithm).upper()
    if name not in ALGORITHMS:
        raise ValueError("unknown checksum algorithm %s" % algorithm)
    try:
        ctor = _constructor(name)
    except ImportError:
        ctor = None
    if ctor is None:
        raise ValueError("checksum algorithm %s not available on this port" % name)
    return ctor()


def hexdigest(hasher):
    # The port's hashers have no hexdigest(); digest() may finalise them, so call this once.
    return binascii.hexlify(hasher.digest()).decode()
