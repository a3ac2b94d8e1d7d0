"""Package checksums exactly as ThingsBoard computes them (Guava HashCode.toString())."""

from __future__ import annotations

import hashlib
import zlib

import mmh3

ALGORITHMS = ("MD5", "SHA256", "SHA384", "SHA512", "CRC32", "MURMUR3_32", "MURMUR3_128")


def checksum(algorithm: str, data: bytes) -> str:
    """Lowercase hex of the hash bytes; CRC32/MURMUR3 in little-endian byte order."""
    if algorithm in ("MD5", "SHA256", "SHA384", "SHA512"):
        return hashlib.new(algorithm.lower(), data).hexdigest()
    if algorithm == "CRC32":
        return zlib.crc32(data).to_bytes(4, "little").hex()
    if algorithm == "MURMUR3_32":
        return mmh3.hash(data, 0, signed=False).to_bytes(4, "little").hex()
    if algorithm == "MURMUR3_128":
        return mmh3.hash_bytes(data, 0, x64arch=True).hex()
    raise ValueError(f"unknown checksum algorithm {algorithm}")
