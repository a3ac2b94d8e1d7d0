"""The `iotlink` command line: one sub-command per module, in the style of mpremote/esptool."""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command -> module under iotlink_tools that defines add_arguments(parser) and run(args).
COMMANDS = {name: f"commands.{name}" for name in
            ("devserver", "sim", "demo", "flash", "deploy", "provision", "bundle", "mpy")}


def _available():
    for name, module in COMMANDS.items():
        try:
            yield name, importlib.import_module(f"iotlink_tools.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"iotlink_tools.{module}":
                raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iotlink", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in _available():
        p = sub.add_parser(name, help=module.__doc__.strip().splitlines()[0] if module.__doc__ else None,
                           description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
