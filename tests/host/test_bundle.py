"""`iotlink bundle`: the app as a tar package, its checksums, and its upload through ThingsBoard's
OTA REST API (here the devserver's)."""

import io
import tarfile
import tempfile

import pytest
from support import LIB, REPO, boot_until_idle, current, states, tree

from iotlink_tools.cli import main
from iotlink_tools.commands.bundle import publish
from iotlink_tools.devserver.checksums import ALGORITHMS, checksum
from iotlink_tools.rest import RestError, ThingsBoardREST


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


def test_bundle_as_bytecode_leaves_no_temporary_folder(tmp_path, monkeypatch):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    out = tmp_path / "app.tar"
    assert main(["bundle", "--mpy", "--out", str(out)]) == 0
    names = [n for n, body in members(out.read_bytes()).items() if body is not None and n.startswith("lib/")]
    assert names and all(n.endswith(".mpy") for n in names)
    assert "lib/iotlink/ota.mpy" in names
    assert list(temporary.iterdir()) == []  # the compiled library went with its folder


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


def test_upload_goes_through_the_ota_rest_api(server, device):
    server.add_device_profile("pumps")
    server.add_device("pump-1", type="pumps")
    rest = ThingsBoardREST(server.url, "tenant@thingsboard.org", "tenant")
    info = publish(rest, b"tar", "t", "1.0.0", "SOFTWARE", "MD5", device="pump-1")
    routes = [(e.method, e.path) for e in server.exchanges if e.path.startswith("/api/")]
    package_id = info["id"]["id"]
    assert routes == [("POST", "/api/auth/login"), ("GET", "/api/tenant/devices"), ("POST", "/api/otaPackage"),
                      (("POST", f"/api/otaPackage/{package_id}")), ("GET", f"/api/device/{server.device('pump-1')['id']}"),
                      ("POST", "/api/device")]
    assert info["checksumAlgorithm"] == "MD5" and info["checksum"] == checksum("MD5", b"tar")
    assert info["deviceProfileId"]["id"] == server.device_profile("pumps")["id"]  # the device's profile
    assert server.device("pump-1")["software_id"] == package_id
    assert server.shared_attributes("pump-1")["sw_version"] == "1.0.0"


def test_upload_errors_are_clear(server, device, capsys):
    rest = ThingsBoardREST(server.url, "tenant@thingsboard.org", "tenant", retries=0)
    with pytest.raises(RestError) as missing:
        publish(rest, b"x", "t", "1", device="no-such-device")
    assert missing.value.status == 404 and "no device named no-such-device" in str(missing.value)
    publish(rest, b"x", "t", "1")
    with pytest.raises(RestError) as twice:
        publish(rest, b"y", "t", "1")
    assert twice.value.status == 400 and "already exists" in twice.value.message
    with pytest.raises(RestError) as bad:
        publish(rest, b"x", "t", "2", algorithm="SHA1")
    assert bad.value.status == 400
    assert main(["bundle", "--out", "/dev/null", "--server", server.url, "--password", "wrong"]) == 1
    assert capsys.readouterr().err.strip() == "iotlink: error: HTTP 401: Invalid username or password"
