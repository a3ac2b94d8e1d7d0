"""Run the local ThingsBoard / thethings.iO compatible server.

  iotlink devserver --device kitchen:TOKEN1
  iotlink devserver --provision KEY:SECRET                    # boards provision themselves
  iotlink devserver --provision KEY:SECRET --pre-provisioned --device pump-1 --device pump-2
  iotlink devserver --thing THING_TOKEN --activation ACT-1:PRODUCT
  iotlink devserver --rpc-reply 'getCurrentTime={"time": 1700000000000}'
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time

from ..devserver import DevServer
from ..errors import ToolError


def _pair(text: str, separator: str, what: str) -> tuple[str, str]:
    first, found, second = text.partition(separator)
    if not found or not first:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return first, second


def _rpc_reply(text: str) -> tuple[str, object]:
    method, reply = _pair(text, "=", "METHOD=JSON")
    try:
        return method, json.loads(reply)
    except ValueError:
        raise argparse.ArgumentTypeError(f"the reply to {method} is not JSON: {reply!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--db", default=":memory:", help="SQLite file to keep data in (default: memory)")
    p.add_argument("--cert", help="serve HTTPS with this certificate (PEM; needs --key)")
    p.add_argument("--key", help="the certificate's private key (PEM)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a host name browsers may reach the page and REST API by, besides IP addresses "
                        "and localhost (repeatable)")
    tb = p.add_argument_group("ThingsBoard")
    tb.add_argument("--user", default="tenant@thingsboard.org", help="the tenant's REST login (default %(default)s)")
    tb.add_argument("--password", default="tenant", help="its password (default %(default)s)")
    tb.add_argument("--device", action="append", default=[], metavar="NAME[:TOKEN]",
                    help="create a device at start-up (repeatable)")
    tb.add_argument("--provision", type=lambda t: _pair(t, ":", "KEY:SECRET"), metavar="KEY:SECRET",
                    help="boards may provision themselves with this key and secret (the default device profile)")
    tb.add_argument("--pre-provisioned", action="store_true",
                    help="with --provision: only devices that already exist (--device) may provision")
    tb.add_argument("--rpc-reply", type=_rpc_reply, action="append", default=[], metavar="METHOD=JSON",
                    help="answer a device's client-side RPC METHOD with this JSON (repeatable); "
                         "other methods get no answer, as with ThingsBoard's default rule chain")
    tt = p.add_argument_group("thethings.iO")
    tt.add_argument("--thing", action="append", default=[], metavar="TOKEN",
                    help="a thing with this token (repeatable)")
    tt.add_argument("--activation", action="append", default=[], metavar="CODE[:PRODUCT]",
                    help="a thing that activates with this code (repeatable)")


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


def _prepare(srv: DevServer, args: argparse.Namespace) -> None:
    srv.rest.username, srv.rest.password = args.user, args.password
    for spec in args.device:
        name, _, token = spec.partition(":")
        try:
            dev = srv.add_device(name, token or None)
        except ValueError:
            dev = srv.device(name)
        print(f"device {dev['name']} ready")
    if args.provision:
        key, secret = args.provision
        policy = "CHECK_PRE_PROVISIONED_DEVICES" if args.pre_provisioned else "ALLOW_CREATE_NEW_DEVICES"
        srv.add_provision_profile(key, secret, policy, srv.default_profile()["name"])
        print(f"provisioning with key {key}" + (" (existing devices only)" if args.pre_provisioned else ""))
    for method, reply in args.rpc_reply:
        srv.client_rpc_handlers[method] = lambda device, params, reply=reply: reply
    for token in args.thing:
        if not srv.sql("SELECT 1 FROM tt_things WHERE token=?", (token,)):
            srv.thethings.add_thing(token=token)
        print(f"thing {token} ready")
    for spec in args.activation:
        code, _, product = spec.partition(":")
        if not srv.sql("SELECT 1 FROM tt_things WHERE activation_code=?", (code,)):
            srv.thethings.add_thing(activation_code=code, product_id=product or None)
        print(f"thing activation code {code} ready")


def run(args: argparse.Namespace) -> int:
    if bool(args.cert) != bool(args.key):
        raise ToolError("--cert and --key go together")
    srv = start_server(args.host, args.port, db=args.db, tls=(args.cert, args.key) if args.cert else None,
                       allowed_hosts=args.allow_host)
    try:
        _prepare(srv, args)
        print(f"iotlink devserver on {srv.url} (REST login {args.user}; Ctrl-C stops)", flush=True)
        while True:
            time.sleep(3600)
    finally:
        srv.stop()
