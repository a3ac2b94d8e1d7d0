"""Compile the device library to .mpy bytecode (portable across ESP32, RP2040 and unix)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import ui
from ..firmware import compile_library

DEFAULT_OUT = Path("build") / "mpy"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")


def run(args: argparse.Namespace) -> int:
    files = compile_library(args.out)
    total = 0
    for f in files:
        size = f.stat().st_size
        total += size
        ui.info(f"{size:7d}  {f.relative_to(args.out)}")
    print(f"{total:7d}  total ({len(files)} files) in {args.out}")
    return 0
