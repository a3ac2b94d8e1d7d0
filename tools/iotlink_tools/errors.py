"""The one error the `iotlink` commands report: cli.main prints its message as one line."""

from __future__ import annotations

import urllib.error

PREFIX = "iotlink: error: "  # what cli.main puts before the message, on stderr


class ToolError(Exception):
    """A failure the user can act on, said in one line (no traceback without --verbose)."""


def describe(exc: BaseException) -> str:
    """One line for an error: a ToolError's own message; for an OSError, the file and the reason."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"{exc.url}: HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason.strerror if isinstance(exc.reason, OSError) else None
        return f"cannot reach the server: {reason or exc.reason}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__
