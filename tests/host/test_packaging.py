"""The mip manifest installs exactly the library's files, so `mpremote mip install` gets them all."""

import json

from iotlink_tools import LIB, REPO


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
