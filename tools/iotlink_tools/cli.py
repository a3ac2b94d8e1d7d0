"""The `iotlink` command line: one sub-command per module in commands/, in the style of mpremote/esptool.

A command that fails raises errors.ToolError (or lets an OSError through): main reports it once,
as one line `iotlink: error: ...` on stderr, exit status 1 (-v adds the traceback); a command
line it cannot use is reported the same way. Ctrl-C: 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from importlib.metadata import version as package_version

from . import firmware, ui
from .errors import PREFIX, ToolError, describe
from .options import HelpFormatter, resolve_secrets

DESCRIPTION = """\
iotlink turns an ESP32 or a Raspberry Pi Pico W running MicroPython into a ThingsBoard (or
thethings.iO) device: it flashes boards, copies the firmware and their config onto them, sets up
whole fleets, and runs a local server and virtual boards so you can try it all without hardware."""
EPILOG = """\
examples:
  iotlink demo                                  # then open http://127.0.0.1:8080/
  iotlink flash -p auto ESP32_GENERIC-v1.28.0.bin --erase
  iotlink deploy -p auto --config config.json --reset
  iotlink provision fleet.csv --url https://tb.example.com --user me@example.com

Serial ports are -p/--port PORT in every command that talks to a board (auto: the only board
plugged in). Passwords and tokens can come from environment variables or files instead of the
command line (see each command's --help). `iotlink COMMAND --help` shows a command's options.
"""
# In the order a user meets them: try it, run boards without hardware, then real boards, fleets, updates.
COMMANDS = ("demo", "devserver", "sim", "flash", "deploy", "provision", "bundle", "ota", "mpy")


def version_line() -> str:
    """The tool's version and the version (and place) of the firmware it installs."""
    return f"iotlink {package_version('iotlink-tools')}, firmware {firmware.version()} in {firmware.root()}"


class _PrintVersion(argparse.Action):
    """--version, worked out only when asked for (it reads the firmware)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_line())
        parser.exit()


class Parser(argparse.ArgumentParser):
    """A command line it cannot use is one error line like any other (status 1), naming the help."""

    def error(self, message: str):
        raise ToolError(f"{message} (see {self.prog} --help)")


def _add_output_options(p: argparse.ArgumentParser, default) -> None:
    """-v/-q, before the command name or after it: the sub-command's own default is SUPPRESS so
    that it keeps what was given before the name."""
    either = p.add_mutually_exclusive_group()
    either.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="more detail (the devserver's request log) and the traceback of an error")
    either.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="no progress or information lines: results and errors only")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="iotlink", description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter,
                    usage="iotlink [-h] [--version] [-v | -q] COMMAND ...")
    parser.add_argument("--version", action=_PrintVersion, help="show the tool's and the firmware's version")
    _add_output_options(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands, in the order you meet them",
                                prog="iotlink")
    for name in COMMANDS:
        module = importlib.import_module(f"{__package__}.commands.{name}")
        p = sub.add_parser(name, help=module.__doc__.strip().splitlines()[0], description=module.__doc__,
                           formatter_class=HelpFormatter)
        module.add_arguments(p)
        _add_output_options(p, argparse.SUPPRESS)
        p.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    verbose = False
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        if args.verbose and args.quiet:
            raise ToolError("-v and -q contradict each other: give one")
        verbose = args.verbose
        ui.level = ui.VERBOSE if args.verbose else ui.QUIET if args.quiet else ui.NORMAL
        resolve_secrets(args)
        return args.run(args) or 0
    except KeyboardInterrupt:
        return 130
    except (ToolError, OSError) as exc:
        if verbose:
            traceback.print_exc()
        print(PREFIX + describe(exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
