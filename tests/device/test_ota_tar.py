"""iotlink.ota_tar.Unpacker in micropython: every tar dialect an app bundle comes in, fed in slices."""

import random
import tarfile

import pytest
from support import make_tar

UNPACK = """
import os
from iotlink.errors import UpdateFailed
from iotlink.ota_tar import Unpacker
os.mkdir("out")
u = Unpacker("out/", reserved=("config.json",))
with open("pkg.tar", "rb") as f:
    data = f.read()
pieces = {pieces}
start = 0
try:
    for size in pieces + [len(data)]:
        u.write(memoryview(data)[start:start + size])
        start += size
    u.close()
    out({{"top": u.top}})
except UpdateFailed as e:
    u.abort()
    out({{"error": str(e)}})
"""

FILES = {
    "main.py": b"print('hi')\n",
    "lib/iotlink/__init__.py": b"",
    "lib/iotlink/app.py": b"A = 1\n" * 200,
    "lib/" + "long_folder_name/" * 7 + "module.py": b"LONG = 1\n",  # 130 bytes: past the name field
    "lib/caf\u00e9.py": "CAF\u00c9 = '\u00e9'\n".encode(),
}


def archive(fmt, files=FILES, dirs=True):
    return make_tar(files, fmt, ("lib", "lib/iotlink") if dirs else ())


def unpack(mp, data, pieces=()):
    (mp.flash / "pkg.tar").write_bytes(data)
    return mp(UNPACK.format(pieces=list(pieces))).result


def extracted(flash):
    out = flash / "out"
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_dialects_with_long_and_non_ascii_names(mp, fmt):
    assert unpack(mp, archive(fmt)) == {"top": ["lib", "main.py"]}
    assert extracted(mp.flash) == FILES


def test_ustar_prefix_field(mp):
    files = {"lib/" + "p" * 90 + "/" + "n" * 90 + ".py": b"X = 1\n"}  # fits only split in two
    assert unpack(mp, archive(tarfile.USTAR_FORMAT, files, dirs=False)) == {"top": ["lib"]}
    assert extracted(mp.flash) == files


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_slicing_gives_the_same_files(mp, seed):
    data = archive(tarfile.PAX_FORMAT)
    rng = random.Random(seed)
    pieces = [rng.choice([1, 7, 100, 511, 512, 513, 2000]) for _ in range(60)]
    assert unpack(mp, data, pieces) == {"top": ["lib", "main.py"]}
    assert extracted(mp.flash) == FILES


def test_parent_folders_are_made_when_the_archive_lists_none(mp):
    assert unpack(mp, archive(tarfile.GNU_FORMAT, dirs=False))["top"] == ["main.py", "lib"]
    assert extracted(mp.flash) == FILES


def test_dot_slash_names_as_tar_c_dot_makes_them(mp):
    files = {"./main.py": b"M\n", "./lib/x.py": b"X\n"}
    assert unpack(mp, archive(tarfile.GNU_FORMAT, files, dirs=False)) == {"top": ["main.py", "lib"]}
    assert extracted(mp.flash) == {"main.py": b"M\n", "lib/x.py": b"X\n"}


@pytest.mark.parametrize("data, error", [
    (archive(tarfile.GNU_FORMAT)[:1500], "no end-of-archive marker"),
    (bytes(1024), "holds no files"),
    (b"\x01" * 512, "bad number in tar header"),
    (b"X" + archive(tarfile.GNU_FORMAT)[1:], "header checksum"),
    (archive(tarfile.GNU_FORMAT, {"config.json": b"{}"}, dirs=False), "may not contain config.json"),
    (archive(tarfile.GNU_FORMAT, {"a/../../x": b""}, dirs=False), "unsafe path in package: a/../../x"),
    (archive(tarfile.GNU_FORMAT, {"C:/x": b""}, dirs=False), "unsafe path"),
])
def test_refusals(mp, data, error):
    result = unpack(mp, data)
    assert error in result["error"]
    assert not (mp.flash / "x").exists()


def test_huge_pax_header_is_refused(mp):
    files = {"x" * 2000 + ".py": b""}  # a pax path record above the 1 KiB bound
    assert "metadata too large" in unpack(mp, archive(tarfile.PAX_FORMAT, files, dirs=False))["error"]
