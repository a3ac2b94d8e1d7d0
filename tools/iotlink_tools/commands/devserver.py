"""Run the local ThingsBoard / thethings.iO compatible server."""

from __future__ import annotations

import argparse
import time

from ..devserver import DevServer


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--db", default=":memory:", help="SQLite file to keep data in (default: memory)")
    p.add_argument("--device", action="append", default=[], metavar="NAME[:TOKEN]",
                   help="create a device at start-up (repeatable)")


def run(args: argparse.Namespace) -> int:
    srv = DevServer(args.host, args.port, db=args.db).start()
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
