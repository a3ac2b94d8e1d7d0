"""iotlink.checksum in micropython against CPython's hashlib, zlib and mmh3 (via the devserver's
checksums.py, which computes ThingsBoard's exact format)."""

import json
import random

import pytest

from iotlink_tools.devserver.checksums import ALGORITHMS, checksum

# Reads cases.bin: for each case a JSON header line {"size", "cuts"}, then the data; hashes each
# case in the pieces given by the cuts, with every algorithm, and prints the hex results.
HASH_CASES = """
import json
from iotlink import checksum
results = []
with open("cases.bin", "rb") as f:
    while True:
        line = f.readline()
        if not line:
            break
        case = json.loads(line)
        data = f.read(case["size"])
        row = {}
        for name in checksum.ALGORITHMS:
            h = checksum.new(name)
            start = 0
            for cut in case["cuts"] + [len(data)]:
                h.update(memoryview(data)[start:cut])
                start = cut
            row[name] = checksum.hexdigest(h)
        results.append(row)
out(results)
"""


def write_cases(path, cases):
    with open(path, "wb") as f:
        for data, cuts in cases:
            f.write(json.dumps({"size": len(data), "cuts": cuts}).encode() + b"\n" + data)


def random_cases(seed, count, max_size):
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        data = rng.randbytes(rng.randrange(max_size))
        cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randrange(6)))
        cases.append((data, cuts))
    return cases


def assert_matches(mp, cases):
    write_cases(mp.flash / "cases.bin", cases)
    results = mp(HASH_CASES, timeout=120).result
    for (data, cuts), row in zip(cases, results, strict=True):
        for name in ALGORITHMS:
            assert row[name] == checksum(name, data), (name, len(data), cuts)


def test_reference_vectors(mp):
    # The vectors of the ThingsBoard reference: CRC32/MURMUR3 little-endian, fixed width.
    write_cases(mp.flash / "cases.bin", [(b"123456789", []), (b"hello world", [3, 3, 7])])
    first, second = mp(HASH_CASES).result
    assert first["CRC32"] == "2639f4cb" and second["CRC32"] == "85114a0d"
    assert first["MURMUR3_32"] == "82f3feb4" and second["MURMUR3_32"] == "0f8f925e"
    assert first["MURMUR3_128"] == "a4cc66db5e64843c05a11e3ac7faf899"
    assert second["MURMUR3_128"] == "0e617feb46603f53b163eb607d4697ab"
    assert first["MD5"] == "25f9e794323b453885f5181f1b624d0b"
    assert first["SHA256"] == "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225"


def test_block_boundaries(mp):
    # Lengths around every block size (4, 16, 64, 128) and the padding limits of SHA-384/512.
    sizes = [0, 1, 3, 4, 5, 15, 16, 17, 55, 56, 63, 64, 65, 111, 112, 113, 127, 128, 129, 255, 256, 257]
    rng = random.Random(1)
    cases = [(rng.randbytes(n), []) for n in sizes] + [(rng.randbytes(n), [1, n // 2]) for n in sizes if n > 1]
    assert_matches(mp, cases)


@pytest.mark.parametrize("seed", [2, 3])
def test_random_inputs_and_chunkings(mp, seed):
    assert_matches(mp, random_cases(seed, count=40, max_size=1500))


def test_large_input_in_many_pieces(mp):
    rng = random.Random(4)
    data = rng.randbytes(20000)
    cuts = sorted(rng.sample(range(1, len(data)), 300))
    assert_matches(mp, [(data, cuts)])


def test_digest_can_be_taken_midway_by_the_pure_python_hashers(mp):
    # SHA-384/512 and MurmurHash3 pad a copy: update() may go on after a digest.
    run = mp("""
from iotlink import checksum
got = {}
for name in ("SHA384", "SHA512", "MURMUR3_32", "MURMUR3_128"):
    h = checksum.new(name)
    h.update(b"hello ")
    checksum.hexdigest(h)
    h.update(b"world")
    got[name] = checksum.hexdigest(h)
out(got)
""")
    assert run.result == {n: checksum(n, b"hello world") for n in run.result}


def test_unknown_and_unavailable_algorithms_are_refused(mp):
    run = mp("""
import sys
from iotlink import checksum
def refusal(name):
    try:
        checksum.new(name)
    except ValueError as e:
        return str(e)
class NoHashlib:
    pass
class NoCrc:
    hexlify = None
got = [refusal("SHA1"), refusal("sha256")]
sys.modules["hashlib"] = NoHashlib  # a port built without MD5 and SHA-256
got += [refusal("MD5"), refusal("SHA256"), refusal("SHA512")]
checksum.binascii = NoCrc
got.append(refusal("CRC32"))
out(got)
""")
    assert run.result == [
        "unknown checksum algorithm SHA1",
        None,  # names are matched case-insensitively
        "checksum algorithm MD5 not available on this port",
        "checksum algorithm SHA256 not available on this port",
        None,  # SHA-512 falls back to iotlink's own
        "checksum algorithm CRC32 not available on this port",
    ]
