"""iotlink.ota_tar.Unpacker in micropython: every tar dialect an app bundle comes in, fed in slices."""

import io
import platform
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

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


# ---- bytes not yet verified: every length checked, every loop moving forward -----------------

def pax_archive(records: bytes, then=b"main.py"):
    """A GNU-format tar whose first member is a pax header holding `records` as they are."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("././@PaxHeader")
        info.type, info.size = tarfile.XHDTYPE, len(records)
        tar.addfile(info, io.BytesIO(records))
        info = tarfile.TarInfo(then.decode())
        info.size = 2
        tar.addfile(info, io.BytesIO(b"X\n"))
    return buf.getvalue()


@pytest.mark.parametrize("records", [
    b"9 path=a\nZZ",  # a record, then bytes that are none
    b"0 path=a\n",  # a length that does not move
    b"2 path=a\n",  # shorter than its own key
    b"99 path=a\n",  # longer than the header
    b"-5 path=a\n",
    b"abc path=a\n",
    b"10 path=ab\n",  # not ended by a newline where its length says
    b"path=a\n",
])
def test_bad_pax_records_are_refused_and_never_loop(mp, records):
    (mp.flash / "pkg.tar").write_bytes(pax_archive(records))
    result = mp(UNPACK.format(pieces=[]), timeout=10).result
    assert result == {"error": "corrupt pax header"}


def test_good_pax_records_still_name_the_member(mp):
    records = b"21 path=lib/named.py\n" + b"30 mtime=1700000000.123456789\n"
    assert unpack(mp, pax_archive(records, then=b"placeholder")) == {"top": ["lib"]}
    assert extracted(mp.flash) == {"lib/named.py": b"X\n"}


def test_paths_deeper_than_16_levels_are_refused(mp):
    deep = "/".join(["d"] * 16) + "/x.py"  # 17 levels with its file
    result = unpack(mp, archive(tarfile.PAX_FORMAT, {deep: b"X = 1\n"}, dirs=False))
    assert result["error"].startswith("path deeper than 16 levels in package: d/d/d/")
    assert not (mp.flash / "out" / "d").exists()  # refused before any folder was made
    shutil.rmtree(mp.flash / "out")
    ok = "/".join(["d"] * 15) + "/x.py"
    assert unpack(mp, archive(tarfile.PAX_FORMAT, {ok: b"X = 1\n"}, dirs=False)) == {"top": ["d"]}


@pytest.mark.parametrize("name", ["CONFIG.JSON", "Config.json", "config.json.", "config.json ", "config.json. .",
                                  ".OTA/state.json", ".ota./x", "BOOT.PY", "Boot.py.", "Queue/00000001"])
def test_reserved_names_are_compared_as_fat_compares_them(mp, name):
    data = archive(tarfile.GNU_FORMAT, {"main.py": b"M\n", name: b"{}"}, dirs=False)
    (mp.flash / "pkg.tar").write_bytes(data)
    code = UNPACK.replace('reserved=("config.json",)', 'reserved=("config.json", ".ota", "boot.py", "queue")')
    result = mp(code.format(pieces=[])).result
    assert result["error"] == "package may not contain %s" % name.split("/")[0]


def test_names_fat_would_merge_are_refused(mp):
    result = unpack(mp, archive(tarfile.GNU_FORMAT, {"lib/a.py": b"", "LIB/b.py": b""}, dirs=False))
    assert result == {"error": "package holds both lib and LIB"}


def mpy(source: str, *flags: str) -> bytes:
    """source compiled by mpy-cross (the .mpy this MicroPython loads, unless flags say otherwise)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "m.py"
        src.write_text(source)
        subprocess.run([sys.executable, "-m", "mpy_cross", *flags, "-o", str(src.with_suffix(".mpy")), str(src)],
                       check=True)
        return src.with_suffix(".mpy").read_bytes()


NATIVE = "@micropython.native\ndef f():\n    return 1\n"


@pytest.mark.parametrize("data, error", [
    (b"M\x05\x00\x1f" + mpy("X = 1\n")[4:], "lib/m.mpy is .mpy version 5, this MicroPython loads version 6"),
    (mpy(NATIVE, "-march=armv7m"), "lib/m.mpy holds native code for another MicroPython (architecture 5)"),
    (b"", "lib/m.mpy is not a .mpy file"),
    (b"print(1)\n", "lib/m.mpy is not a .mpy file"),
], ids=["version", "architecture", "empty", "source"])
def test_mpy_files_this_micropython_cannot_load_are_refused(mp, data, error):
    assert unpack(mp, archive(tarfile.GNU_FORMAT, {"lib/m.mpy": data}, dirs=False)) == {"error": error}


@pytest.mark.parametrize("source, flags", [
    ("X = 1\n", ()),
    pytest.param(NATIVE, ("-march=x64",), marks=pytest.mark.skipif(platform.machine() != "x86_64",
                                                                     reason="native code for an x64 unix port")),
])
def test_mpy_files_this_micropython_loads_are_unpacked(mp, source, flags):
    data = mpy(source, *flags)  # bytecode, or native code for this unix port
    assert unpack(mp, archive(tarfile.GNU_FORMAT, {"lib/m.mpy": data}, dirs=False), pieces=[1, 1, 1, 600]) == {
        "top": ["lib"]}
    assert extracted(mp.flash) == {"lib/m.mpy": data}


def member(name, kind=tarfile.REGTYPE, data=b"", fmt=tarfile.GNU_FORMAT, link=""):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.size = kind, link, len(data)
        tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


LONG_ESCAPE = "lib/" + "x" * 120 + "/../../../escape.py"  # past the 100-byte field: a long name


@pytest.mark.parametrize("data, error", [
    (member("lib\\..\\..\\escape.py"), "unsafe path in package: lib\\..\\..\\escape.py"),
    (member(LONG_ESCAPE, fmt=tarfile.GNU_FORMAT), "unsafe path in package: lib/xxx"),  # GNU long name
    (member(LONG_ESCAPE, fmt=tarfile.PAX_FORMAT), "unsafe path in package: lib/xxx"),  # pax path
    (member("/" + "a" * 120 + "/escape.py", fmt=tarfile.PAX_FORMAT), "unsafe path in package: /aaa"),
    (member("./" * 60 + "config.json", fmt=tarfile.GNU_FORMAT), "package may not contain config.json"),
    (member("lib/link", tarfile.LNKTYPE, link="/etc/passwd"), "unsupported member lib/link"),
    (member("lib/tty", tarfile.CHRTYPE), "unsupported member lib/tty"),
    (member("lib/disk", tarfile.BLKTYPE), "unsupported member lib/disk"),
    (member("lib/fifo", tarfile.FIFOTYPE), "unsupported member lib/fifo"),
    (member("lib/sparse", tarfile.GNUTYPE_SPARSE), "unsupported member lib/sparse"),
], ids=["backslash", "gnu-long-name", "pax-path", "pax-absolute", "reserved-long-name", "hard-link", "char-device",
        "block-device", "fifo", "sparse"])
def test_members_that_could_leave_the_folder_are_refused(mp, data, error):
    result = unpack(mp, data)
    assert result["error"].startswith(error), result
    assert not (mp.flash / "escape.py").exists() and not (mp.flash / "out" / "lib").exists()
