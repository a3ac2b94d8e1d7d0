"""Options that several commands share, spelt the same way everywhere: serial ports, TCP ports,
secrets; and the help layout (examples keep their line breaks, every option shows its default)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .errors import ToolError
from .secret import read_first_line
from .serialports import AUTO


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their line breaks (the examples); an option's default, when it has one,
    ends its help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("%(default)" in text or not action.option_strings
                or action.default in (None, False, [], argparse.SUPPRESS)):
            return text
        return text + " (default: %(default)s)"


def tcp_port(text: str) -> int:
    """A TCP port number, 0 (any free one) to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535; 0 picks a free one)")
    return port


def add_http_port(p: argparse.ArgumentParser, default: int = 8080) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every network)")
    p.add_argument("--http-port", type=tcp_port, default=default, metavar="N",
                   help="TCP port of the server and its web page (0 picks a free one)")


def add_serial_port(p: argparse.ArgumentParser, default: str | None = AUTO, help: str = "") -> None:
    p.add_argument("-p", "--port", default=default, metavar="PORT",
                   help=(help or "the board's serial port (/dev/ttyUSB0, COM3, a virtual board's /dev/pts/N)")
                   + f"; {AUTO}: the only board plugged in")


def add_secret(p, flag: str, env: str, help: str, metavar: str = "SECRET", fallback: str | None = None,
               either=None) -> None:
    """--NAME VALUE, --NAME-file FILE (its first line) or $ENV, in that order; fallback if none.
    cli.main resolves them (resolve_secrets) before the command runs. either: a mutually
    exclusive group of p to put both options in (default: one of their own)."""
    dest = flag.lstrip("-").replace("-", "_")
    either = either or p.add_mutually_exclusive_group()
    either.add_argument(flag, dest=dest, metavar=metavar,
                        help=f"{help}; better ${env} or {flag}-file: a command line is visible to every user")
    either.add_argument(f"{flag}-file", dest=f"{dest}_file", type=Path, metavar="FILE",
                        help=f"read {flag} from the first line of FILE")
    p.set_defaults(secret_options=[*(p.get_default("secret_options") or []), (dest, flag, env, fallback)])


def resolve_secrets(args: argparse.Namespace) -> None:
    """Give every secret option its value: given, from its file, from its variable, or the fallback."""
    for dest, flag, env, fallback in getattr(args, "secret_options", None) or []:
        path = getattr(args, f"{dest}_file")
        if getattr(args, dest) is not None:
            continue
        if path is not None:
            value = read_first_line(path)
            if not value:
                raise ToolError(f"{path}: the first line is empty (expected {flag})")
        else:
            value = os.environ.get(env, fallback)
        setattr(args, dest, value)
