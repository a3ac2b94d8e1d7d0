"""The freeze manifests name the board manifests that keep networking and the real library path."""

from pathlib import Path

import pytest
from support import LIB, REPO


@pytest.mark.parametrize("name,board_manifest", [
    ("manifest.py", "$(PORT_DIR)/boards/manifest.py"),
    ("manifest_pico_w.py", "$(PORT_DIR)/boards/RPI_PICO_W/manifest.py"),
])
def test_manifest_freezes_the_library_after_the_board_manifest(name, board_manifest):
    path = REPO / "firmware" / name
    calls = []
    env = {"include": lambda p: calls.append(("include", p)),
           "package": lambda pkg, base_path=".": calls.append(("package", pkg, base_path))}
    exec(compile(path.read_text(), str(path), "exec"), env)
    assert calls[0] == ("include", board_manifest)
    kind, pkg, base = calls[1]
    # makemanifest resolves base_path relative to the manifest's own folder.
    assert (kind, pkg) == ("package", "iotlink")
    assert (path.parent / base).resolve() == LIB
    assert (Path(path.parent / base) / "iotlink" / "__init__.py").is_file()
