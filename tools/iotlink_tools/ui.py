"""What the commands print, by the -q/-v the user gave (cli.main sets `level` once per run).

Results (a token made, an address to open, a report) always show; progress and information go
with -q; details such as the devserver's request log come with -v. Live displays (rich progress
bars) are drawn only on a terminal; elsewhere a change is one plain line.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                           TransferSpeedColumn)

QUIET, NORMAL, VERBOSE = -1, 0, 1
level = NORMAL


def info(text: str) -> None:
    """A progress or information line: not with -q."""
    if level >= NORMAL:
        print(text, flush=True)


def detail(text: str) -> None:
    """A line for -v only."""
    if level >= VERBOSE:
        print(text, flush=True)


def console() -> Console:
    """A rich console for stdout whose lines stay whole in files and CI logs."""
    return Console(highlight=False, soft_wrap=True)


def live() -> bool:
    """Whether progress is drawn live: a terminal, and no -q."""
    return level >= NORMAL and sys.stdout.isatty()


@contextmanager
def byte_progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """advance(n) for a copy of `total` bytes: a live bar on a terminal, nothing elsewhere (the
    caller says in a line what it copies)."""
    if not live():
        yield lambda n: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console()) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
