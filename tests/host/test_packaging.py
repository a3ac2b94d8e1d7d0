"""Packaging: the mip manifest lists the library, and the wheel carries the firmware, where the
installed `iotlink` finds it without a checkout."""

import json
import os
import subprocess
import sys
import zipfile

from support import LIB, REPO


def test_package_json_lists_every_library_file():
    manifest = json.loads((REPO / "package.json").read_text())
    listed = {dest: src for dest, src in manifest["urls"]}
    on_disk = sorted(str(p.relative_to(LIB)) for p in (LIB / "iotlink").rglob("*.py"))
    assert sorted(listed) == on_disk
    for dest, src in listed.items():
        assert src == f"lib/{dest}"
        assert (REPO / src).is_file()
    assert manifest["deps"] == []


def test_library_version_matches_the_manifest():
    manifest = json.loads((REPO / "package.json").read_text())
    init = (LIB / "iotlink" / "__init__.py").read_text()
    assert f'__version__ = "{manifest["version"]}"' in init


def test_the_wheel_carries_the_firmware_and_the_installed_package_uses_it(tmp_path):
    # As a package index gets it: the sdist, then the wheel built from the sdist alone.
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp_path / "dist"), str(REPO)],
                   check=True, capture_output=True)
    wheel = zipfile.ZipFile(next((tmp_path / "dist").glob("iotlink_tools-*.whl")))
    firmware = sorted(["boot.py", "main.py"] + [p.relative_to(REPO).as_posix() for p in (LIB / "iotlink").rglob("*.py")]
                      + [p.relative_to(REPO).as_posix() for p in (REPO / "firmware").glob("*.py")])
    for name in firmware:
        assert wheel.read(f"iotlink_tools/device/{name}") == (REPO / name).read_bytes(), name
    names = wheel.namelist()
    assert "iotlink_tools/vboard/fakes/machine.py" in names and "iotlink_tools/devserver/static/index.html" in names
    for name in ("dist/uPlot.iife.min.js", "dist/uPlot.min.css", "LICENSE"):  # the page's chart library (npm ci)
        assert f"iotlink_tools/devserver/static/node_modules/uplot/{name}" in names

    # Unpacked, as pip lays it out, and first on the path: the firmware comes from the package.
    site = tmp_path / "site"
    wheel.extractall(site)
    report = subprocess.run(
        [sys.executable, "-c", "import json; from iotlink_tools import firmware; "
         "print(json.dumps({'root': str(firmware.root()), 'files': sorted(firmware.files())}))"],
        env={**os.environ, "PYTHONPATH": str(site)}, cwd=tmp_path, check=True, capture_output=True, text=True)
    found = json.loads(report.stdout)
    assert found["root"] == str(site / "iotlink_tools" / "device")
    assert found["files"] == sorted(name for name in firmware if not name.startswith("firmware/"))
