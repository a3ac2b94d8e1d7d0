"""Import heap of each iotlink module on a 32-bit MicroPython, beside the unix port's (64-bit).

The unix port from PyPI is a 64-bit build: its objects take more heap than an ESP32's or an
RP2040's. MicroPython's official WebAssembly port is a 32-bit build of the same version (4-byte
words, 16-byte GC blocks, as on those boards), and runs under node: each module is imported
into a fresh interpreter there and in the unix port, as .py and as .mpy, and the heap it takes
(after a collection, beyond the firmware's built-in modules) is compared.

`make bench` installs the port with npm into build/wasm (WASM_PACKAGE in the Makefile).
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from iotlink_tools.firmware import compile_library, lib_dir
from iotlink_tools.vboard import FAKES, micropython_command

PORT_DIR = Path("build") / "wasm" / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"

MEASURE = """
import gc
gc.collect()
before = gc.mem_alloc()
__import__({name!r})
gc.collect()
print(gc.mem_alloc() - before)
"""

# Node: for each module, a fresh interpreter with the files in its filesystem, the import measured.
NODE_PROGRAM = """
import { loadMicroPython } from %(mjs)s;
import fs from "fs";
const job = JSON.parse(fs.readFileSync(0, "utf8"));
const results = {};
for (const name of job.modules) {
  let out = "";
  const mp = await loadMicroPython({ heapsize: 1024 * 1024, linebuffer: true,
                                     stdout: (line) => { out += line + "\\n"; }, stderr: () => {} });
  for (const [path, file] of Object.entries(job.files)) {
    mp.FS.mkdirTree(path.slice(0, path.lastIndexOf("/")) || "/");
    mp.FS.writeFile(path, fs.readFileSync(file));
  }
  try {
    mp.runPython(job.prelude + job.measure.replace("@NAME@", name));
    results[name] = parseInt(out.trim().split("\\n").pop());
  } catch (e) {
    results[name] = null;
  }
}
console.log(JSON.stringify(results));
"""


def firmware_modules() -> list[str]:
    """What the library imports from the firmware (at module level): a board has these built in
    (C, or frozen like `requests`), so they are imported before the measurement. Where a port
    lacks one (the WebAssembly port has no socket, no requests), an empty stand-in is imported;
    where a port has one as a frozen .py (its hashlib, binascii), that heap is not the library's."""
    names = {"machine", "network"}
    for source in (lib_dir() / "iotlink").glob("*.py"):
        for node in ast.parse(source.read_text()).body:
            for stmt in node.body if isinstance(node, ast.Try) else [node]:
                if isinstance(stmt, ast.Import):
                    names.update(alias.name for alias in stmt.names)
                elif isinstance(stmt, ast.ImportFrom) and stmt.module and not stmt.level:
                    names.add(stmt.module)
    return sorted(n for n in names if n.split(".")[0] != "iotlink")


def stand_ins(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}.py").write_text("")
    return folder


# The firmware's modules imported; an empty stand-in from `stubs` for any the port lacks. The
# stand-ins are on the path only for that moment: a built-in module a file can extend (time,
# os, json...) would be found as the empty file instead.
PRELUDE = """
import sys
_missing = []
for _name in {names!r}:
    try:
        __import__(_name)
    except ImportError:
        _missing.append(_name)
sys.path.append({stubs!r})
for _name in _missing:
    __import__(_name)
sys.path.pop()
del _name, _missing
"""


def module_names() -> list[str]:
    """iotlink and every module of it, the loop's (app) and the client's (thingsboard) first."""
    names = sorted(f"iotlink.{f.stem}" for f in (lib_dir() / "iotlink").glob("*.py") if f.stem != "__init__")
    first = [n for n in ("iotlink.app", "iotlink.thingsboard") if n in names]
    return first + ["iotlink"] + [n for n in names if n not in first]


def unix_import_bytes(name: str, lib: Path, stubs: Path, firmware: list[str], work: Path) -> int | None:
    code = PRELUDE.format(names=firmware, stubs=str(stubs)) + MEASURE.format(name=name)
    proc = subprocess.run(micropython_command() + ["-c", code], cwd=work, capture_output=True, text=True,
                          env={"MICROPYPATH": f"{FAKES}:{lib}:.frozen"}, timeout=60)
    return int(proc.stdout.split()[-1]) if proc.returncode == 0 else None


def wasm_import_bytes(names: list[str], lib: Path, stubs: Path, firmware: list[str],
                      work: Path) -> dict[str, int | None]:
    node = shutil.which("node")
    mjs = PORT_DIR / "micropython.mjs"
    if node is None or not mjs.exists():
        raise FileNotFoundError(f"no node or no {mjs}: `make bench` installs the WebAssembly port with npm")
    files = {f"/fakes/{f.name}": str(f) for f in FAKES.glob("*.py")}
    files.update({f"/stubs/{f.name}": str(f) for f in stubs.glob("*.py")})
    files.update({f"/lib/{f.relative_to(lib)}": str(f) for f in lib.rglob("*.*") if f.suffix in (".py", ".mpy")})
    path = "import sys\nsys.path.insert(0, '/lib')\nsys.path.insert(0, '/fakes')\n"
    job = {"modules": names, "files": files, "prelude": path + PRELUDE.format(names=firmware, stubs="/stubs"),
           "measure": MEASURE.format(name="@NAME@")}
    script = work / "measure.mjs"
    script.write_text(NODE_PROGRAM % {"mjs": json.dumps(mjs.resolve().as_uri())})
    proc = subprocess.run([node, str(script)], input=json.dumps(job), capture_output=True, text=True,
                          timeout=600, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run() -> dict:
    names = module_names()
    version = json.loads((PORT_DIR / "package.json").read_text())["version"] if PORT_DIR.exists() else None
    modules: dict[str, dict] = {name: {} for name in names}
    firmware = firmware_modules()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mpy = work / "mpy"
        compile_library(mpy)
        stubs = stand_ins(work / "stubs", [n for n in firmware if n not in ("machine", "network")])
        for form, lib in (("py", lib_dir()), ("mpy", mpy)):
            wasm = wasm_import_bytes(names, lib, stubs, firmware, work)
            for name in names:
                unix = unix_import_bytes(name, lib, stubs, firmware, work)
                modules[name][f"unix64_{form}"] = unix
                modules[name][f"wasm32_{form}"] = wasm[name]
                modules[name][f"ratio_{form}"] = round(wasm[name] / unix, 2) if unix and wasm[name] else None
    return {"webassembly_port": version, "firmware_modules": firmware, "modules": modules}


def describe(figures: dict) -> str:
    lines = [f"Import heap per module (bytes): unix port (64-bit) beside the WebAssembly port "
             f"{figures['webassembly_port']} (32-bit, as ESP32 / RP2040)",
             f"  {'module':24s} {'.mpy 64':>8s} {'.mpy 32':>8s} {'32/64':>6s} {'.py 64':>8s} {'.py 32':>8s} {'32/64':>6s}"]
    for name, f in figures["modules"].items():
        cells = [f.get(k) for k in ("unix64_mpy", "wasm32_mpy", "ratio_mpy", "unix64_py", "wasm32_py", "ratio_py")]
        lines.append(f"  {name:24s} " + " ".join(f"{'-' if c is None else c:>{6 if i % 3 == 2 else 8}}"
                                                   for i, c in enumerate(cells)))
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe(run()))
