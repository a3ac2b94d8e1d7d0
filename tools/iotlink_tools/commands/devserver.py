"""Run the local ThingsBoard / thethings.iO compatible server.

  iotlink devserver --device kitchen                          # prints the token it made
  iotlink devserver --devices fleet.txt                       # NAME,TOKEN lines (as `sim --tokens`)
  iotlink devserver --provision KEY:SECRET                    # boards provision themselves
  iotlink devserver --provision KEY:SECRET --pre-provisioned --device pump-1 --device pump-2
  iotlink devserver --thing THING_TOKEN --activation ACT-1:PRODUCT
  iotlink devserver --rpc-reply 'getCurrentTime={"time": 1700000000000}'
  iotlink -v devserver                                        # and a line per request

The REST login is tenant@thingsboard.org / tenant unless --user and --password (or
$IOTLINK_PASSWORD, or --password-file) say otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import time
from pathlib import Path

from .. import ui
from ..devserver import DevServer
from ..devserver.web import Exchange
from ..errors import ToolError
from ..options import add_http_port, add_secret
from .sim import read_tokens

# Paths that carry a device's credentials: /api/v1/TOKEN/... (ThingsBoard), /v2/things/TOKEN (thethings.iO).
TOKEN_IN_PATH = re.compile(r"^(/api/v1/|/v2/things/)(?!provision$)[^/]+")


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
    add_http_port(p)
    p.add_argument("--db", default=":memory:", help="SQLite file to keep data in (:memory: keeps nothing)")
    p.add_argument("--cert", help="serve HTTPS with this certificate (PEM; needs --key)")
    p.add_argument("--key", help="the certificate's private key (PEM)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a host name browsers may reach the page and REST API by, besides IP addresses "
                        "and localhost (repeatable)")
    tb = p.add_argument_group("ThingsBoard")
    tb.add_argument("--user", default="tenant@thingsboard.org", help="the tenant's REST login")
    add_secret(tb, "--password", "IOTLINK_PASSWORD", "the tenant's password (default: tenant)",
               metavar="PASSWORD", fallback="tenant")
    tb.add_argument("--device", action="append", default=[], metavar="NAME[:TOKEN]",
                    help="create a device at start-up (repeatable); without a token one is made and printed")
    tb.add_argument("--devices", type=Path, metavar="FILE",
                    help="create a device per line of FILE: `NAME,TOKEN` (the file `iotlink sim --tokens` reads)")
    add_secret(tb, "--provision", "IOTLINK_PROVISION",
               "boards may provision themselves with this key and secret (the default device profile)",
               metavar="KEY:SECRET")
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
        raise ToolError(f"cannot serve on {host}:{port} ({exc.strerror or exc}): try another --http-port, "
                        "or --http-port 0 for any free one") from exc


def shown_path(path: str) -> str:
    """The path of a request without the device credentials it may carry."""
    return TOKEN_IN_PATH.sub(r"\1***", path)


def log_request(exchange: Exchange) -> None:
    took_ms = (time.time() - exchange.at) * 1000
    print(f"{time.strftime('%H:%M:%S')} {exchange.method} {shown_path(exchange.path)} {exchange.status} "
          f"{took_ms:.0f} ms", flush=True)


def _add_device(srv: DevServer, name: str, token: str) -> None:
    """The device, created or (a --db kept from before) found; its token printed unless it was given."""
    try:
        dev = srv.add_device(name, token or None)
    except ValueError as exc:
        try:
            dev = srv.device(name)
        except KeyError:
            raise ToolError(f"--device {name}: {exc}") from None
    print(f"device {dev['name']} ready" + ("" if token else f", token {dev['token']}"), flush=True)


def _prepare(srv: DevServer, args: argparse.Namespace) -> None:
    srv.rest.username, srv.rest.password = args.user, args.password
    for spec in args.device:
        name, _, token = spec.partition(":")
        _add_device(srv, name, token)
    for name, token in read_tokens(args.devices, "device") if args.devices else []:
        _add_device(srv, name, token)
    if args.provision:
        key, found, secret = args.provision.partition(":")
        if not found or not key:
            raise ToolError("--provision: expected KEY:SECRET")  # the value itself is a secret
        policy = "CHECK_PRE_PROVISIONED_DEVICES" if args.pre_provisioned else "ALLOW_CREATE_NEW_DEVICES"
        srv.add_provision_profile(key, secret, policy, srv.default_profile()["name"])
        ui.info(f"provisioning with key {key}" + (" (existing devices only)" if args.pre_provisioned else ""))
    for method, reply in args.rpc_reply:
        srv.client_rpc_handlers[method] = lambda device, params, reply=reply: reply
    for token in args.thing:
        if not srv.sql("SELECT 1 FROM tt_things WHERE token=?", (token,)):
            srv.thethings.add_thing(token=token)
        ui.info(f"thing {token} ready")
    for spec in args.activation:
        code, _, product = spec.partition(":")
        if not srv.sql("SELECT 1 FROM tt_things WHERE activation_code=?", (code,)):
            srv.thethings.add_thing(activation_code=code, product_id=product or None)
        ui.info(f"thing activation code {code} ready")


def run(args: argparse.Namespace) -> int:
    if bool(args.cert) != bool(args.key):
        raise ToolError("--cert and --key go together")
    srv = start_server(args.host, args.http_port, db=args.db, tls=(args.cert, args.key) if args.cert else None,
                       allowed_hosts=args.allow_host)
    try:
        if ui.level >= ui.VERBOSE:
            srv.listeners.append(log_request)
        _prepare(srv, args)
        print(f"iotlink devserver on {srv.url} (REST login {args.user}; Ctrl-C stops)", flush=True)
        while True:
            time.sleep(3600)
    finally:
        srv.stop()
