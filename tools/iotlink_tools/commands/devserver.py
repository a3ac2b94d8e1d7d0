"""Run the local ThingsBoard / thethings.iO compatible server."""

from __future__ import annotations

import argparse
import sqlite3
import time

from ..devserver import DevServer
from ..errors import ToolError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--db", default=":memory:", help="SQLite file to keep data in (default: memory)")
    p.add_argument("--device", action="append", default=[], metavar="NAME[:TOKEN]",
                   help="create a device at start-up (repeatable)")


def start_server(host: str, port: int, **options) -> DevServer:
    """A started DevServer; a ToolError when it cannot listen there (the port is taken...) or
    cannot open its database."""
    try:
        return DevServer(host, port, **options).start()
    except sqlite3.Error as exc:
        raise ToolError(f"cannot use the database {options.get('db')}: {exc}") from exc
    except OSError as exc:
        raise ToolError(f"cannot serve on {host}:{port} ({exc.strerror or exc}): try another --port, "
                        "or --port 0 for any free one") from exc


def run(args: argparse.Namespace) -> int:
    srv = start_server(args.host, args.port, db=args.db)
    for spec in args.device:
        name, _, token = spec.partition(":")
        try:
            dev = srv.add_device(name, token or None)
        except ValueError:
            dev = srv.device(name)
        print(f"device {dev['name']} ready")
    print(f"iotlink devserver on {srv.url} (Ctrl-C stops)")
    try:
        while True:
            time.sleep(3600)
    finally:
        srv.stop()
