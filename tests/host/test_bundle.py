"""`iotlink bundle`: the app as a tar package, its checksums, and its upload to the devserver."""

import io
import tarfile
import urllib.error

import pytest
from support import LIB, REPO, boot_until_idle, current, states, tree

from iotlink_tools.cli import main
from iotlink_tools.commands.bundle import upload
from iotlink_tools.devserver.checksums import ALGORITHMS, checksum


def members(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()}


def test_bundle_holds_the_app_and_prints_every_checksum(tmp_path, capsys):
    out = tmp_path / "app.tar"
    assert main(["bundle", "--out", str(out), "--algorithm", "MURMUR3_32"]) == 0
    data = out.read_bytes()
    files = {name: body for name, body in members(data).items() if body is not None}
    expected = {f"lib/{p.relative_to(LIB).as_posix()}": p.read_bytes() for p in (LIB / "iotlink").rglob("*.py")}
    if (REPO / "main.py").exists():
        expected["main.py"] = (REPO / "main.py").read_bytes()
    assert files == expected
    assert "boot.py" not in members(data)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"{out}: {len(data)} bytes, title iotlink, version 0.1.0"
    assert printed[1].split() == ["MURMUR3_32", checksum("MURMUR3_32", data)]  # the chosen one first
    assert sorted(line.split()[0] for line in printed[1:]) == sorted(ALGORITHMS)
    for line in printed[1:]:
        name, value = line.split()
        assert value == checksum(name, data)


def test_bundle_is_reproducible(tmp_path):
    main(["bundle", "--out", str(tmp_path / "a.tar")])
    main(["bundle", "--out", str(tmp_path / "b.tar")])
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_bundle_as_bytecode(tmp_path):
    out = tmp_path / "app.tar"
    main(["bundle", "--mpy", "--out", str(out)])
    names = [n for n, body in members(out.read_bytes()).items() if body is not None and n.startswith("lib/")]
    assert names and all(n.endswith(".mpy") for n in names)
    assert "lib/iotlink/ota.mpy" in names


def test_bundle_uploaded_and_installed_by_a_board(tmp_path, server, device, mp, capsys):
    (mp.flash / "main.py").write_bytes(b"print('old app')\n")
    out = tmp_path / "app.tar"
    assert main(["bundle", "--out", str(out), "--server", server.url, "--device", "test-device",
                 "--version", "1.2.0", "--algorithm", "CRC32"]) == 0
    assert "assigned to test-device" in capsys.readouterr().out
    shared = server.shared_attributes("test-device")
    data = out.read_bytes()
    assert shared["fw_title"] == "iotlink" and shared["fw_size"] == len(data)
    assert shared["fw_checksum_algorithm"] == "CRC32" and shared["fw_checksum"] == checksum("CRC32", data)

    boot_until_idle(mp, server)
    assert states(server)[-1] == "UPDATED" and current(server) == ("iotlink", "1.2.0")
    installed = tree(mp.flash)
    assert installed["lib/iotlink/ota.py"] == (LIB / "iotlink" / "ota.py").read_bytes()


def test_upload_errors_are_clear(server, device):
    with pytest.raises(urllib.error.HTTPError) as missing:
        upload(server.url, b"x", "no-such-device", "t", "1")
    assert missing.value.code == 404 and b"no device no-such-device" in missing.value.read()
    upload(server.url, b"x", None, "t", "1")
    with pytest.raises(urllib.error.HTTPError) as twice:
        upload(server.url, b"y", None, "t", "1")
    assert twice.value.code == 400 and b"firmware t 1 already exists" in twice.value.read()
    with pytest.raises(urllib.error.HTTPError) as bad:
        upload(server.url, b"x", None, "t", "2", algorithm="SHA1")
    assert bad.value.code == 400
