"""The `iotlink` command line: one sub-command per module in commands/, in the style of mpremote/esptool.

A command that fails raises errors.ToolError (or lets an OSError through): main reports it once,
as one line `iotlink: error: ...` on stderr, exit status 1 (-v adds the traceback). Ctrl-C: 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from importlib.metadata import version as package_version

from . import firmware
from .errors import PREFIX, ToolError, describe

DESCRIPTION = ("Flash, deploy and provision iotlink boards; run the local server (devserver) and "
               "virtual boards (sim, demo) that run the real firmware.")
COMMANDS = ("devserver", "sim", "demo", "flash", "deploy", "provision", "ota", "bundle", "mpy")


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iotlink", description=DESCRIPTION)
    parser.add_argument("--version", action=_PrintVersion, help="show the tool's and the firmware's version")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"{__package__}.commands.{name}")
        p = sub.add_parser(name, help=module.__doc__.strip().splitlines()[0], description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    verbose = False
    try:
        args = parser.parse_args(argv)
        verbose = args.verbose
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
