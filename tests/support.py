"""Running device code in the real MicroPython unix port, with only the hardware faked."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from iotlink_tools import FAKES, LIB
from iotlink_tools.vboard import micropython_command

MICROPYTHON = micropython_command()[0]
# Fakes first, then the library, then the port's frozen modules (requests).
MICROPYPATH = f"{FAKES}:{LIB}:.frozen"

# Every device script gets `out(x)`: one JSON result line the test reads back.
PRELUDE = """
import json as _json
def out(x):
    print("@@" + _json.dumps(x))
"""


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    results: list = field(default_factory=list)

    @property
    def result(self):
        assert self.results, f"device printed no result\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        return self.results[-1]


def run_mp(code: str, cwd: Path, timeout: float = 60, heapsize: str | None = None,
           check: bool = True, env: dict | None = None, args: list[str] | None = None) -> Run:
    """Run `code` in micropython with cwd as the board's flash; returns what it printed."""
    cmd = [MICROPYTHON]
    if heapsize:
        cmd += ["-X", f"heapsize={heapsize}"]
    if args is None:
        script = Path(cwd) / "_test_script.py"
        script.write_text(PRELUDE + code)
        cmd.append(script.name)
    else:
        cmd += args
    full_env = {"PATH": os.environ.get("PATH", ""), "MICROPYPATH": MICROPYPATH, **(env or {})}
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    results = [json.loads(line[2:]) for line in proc.stdout.splitlines() if line.startswith("@@")]
    run = Run(proc.returncode, proc.stdout, proc.stderr, results)
    if check and proc.returncode != 0:
        raise AssertionError(f"micropython exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return run
