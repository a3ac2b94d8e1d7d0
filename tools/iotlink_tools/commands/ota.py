"""Update devices over the air through ThingsBoard's OTA REST API, and follow each to the end.

  iotlink ota --server https://tb.example.com --device pump-1 pump-2
  iotlink ota myapp/ --server https://tb.example.com --profile pumps --version 1.3.0
  (the password from $IOTLINK_PASSWORD or --password-file; the server and user also from
  $IOTLINK_SERVER and $IOTLINK_USER, as provision reads them)

The package is an app bundle (the tar `iotlink bundle` writes): by default the firmware's own
app, main.py and the library (as .mpy, or source with --py); with FOLDER, every file in it as it
is, at the same place on the board (main.py, lib/..., sensors.py), except hidden files and
__pycache__. It goes up as an OTA package of the devices' profile with its checksum (the server
refuses a file damaged on the way), and is assigned to the devices named, or to a device profile
(whose devices without a package of their own follow it). Then each device's fw_state (sw_state
with --software) is followed in a live table until it is UPDATED or FAILED, or --timeout passes;
the exit status is 1 if any device did not update. The same command run again (same title,
version and contents) reuses the package and follows the devices again.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from .. import firmware, ui
from ..certs import read_ca
from ..devserver.checksums import ALGORITHMS, checksum
from ..errors import ToolError
from ..options import add_secret
from ..rest import RestError, ThingsBoardREST
from .bundle import DEFAULT_TITLE, app_files, build, upload

FINAL = ("UPDATED", "FAILED")
# Each board's own (boot.py, its update guard, included): the firmware refuses a bundle that
# holds one of these at its top, names compared as FAT compares them (case aside, trailing dots
# and spaces dropped).
ON_EACH_BOARD = ("config.json", "boot.py", "queue", "token.chosen")


@dataclass
class Target:
    """A device being updated, as the table shows it."""

    name: str
    id: str
    state: str = "waiting"  # its latest <prefix>_state since the assignment
    error: str = ""
    took_s: float | None = None  # from the assignment to UPDATED or FAILED

    @property
    def done(self) -> bool:
        return self.state in FINAL

    def __str__(self) -> str:
        return f"{self.name}: {self.state}" + (f" ({self.error})" if self.error else "")


# ---- the package -------------------------------------------------------------------------
def folder_files(folder: Path) -> dict[str, Path]:
    """Path on the board -> file, for every file under folder but hidden ones and __pycache__."""
    if not folder.is_dir():
        raise ToolError(f"{folder} is not a folder")
    files = {}
    for path in sorted(folder.rglob("*")):
        parts = path.relative_to(folder).parts
        if path.is_file() and not any(p.startswith(".") or p == "__pycache__" for p in parts):
            files["/".join(parts)] = path
    for name in files:
        top = name.split("/")[0]
        own = top.rstrip(". ").lower()
        if own in ON_EACH_BOARD:
            raise ToolError(f"{folder / top}: each board keeps its own {own} and refuses an update that carries "
                            "one: move it out of the folder")
    if not files:
        raise ToolError(f"{folder} holds no files to send")
    return files


def package_version(data: bytes) -> str:
    """The library's version and the start of the package's SHA-256: new contents, new version."""
    return f"{firmware.version()}-{hashlib.sha256(data).hexdigest()[:8]}"


def published(rest: ThingsBoardREST, data: bytes, title: str, version: str, kind: str, algorithm: str,
              profile_id: str) -> tuple[dict, bool]:
    """(the package's info, whether it was there already): the one of that title and version
    when it holds the same file, else a new one uploaded."""
    existing = rest.find_ota_package(title, version)
    if existing is None:
        return upload(rest, data, title, version, kind, algorithm, profile_id), False
    same = (existing["type"] == kind and existing["deviceProfileId"]["id"] == profile_id and existing["hasData"]
            and existing["checksum"] == checksum(existing["checksumAlgorithm"], data))
    if not same:
        raise ToolError(f"the server has a package {title} {version} already, with other contents, type or "
                        "profile: give this one another --version")
    return existing, True


# ---- the devices -------------------------------------------------------------------------
def named_devices(rest: ThingsBoardREST, names: list[str]) -> tuple[list[dict], str]:
    """The devices of those names and their one profile's id; a ToolError before anything is sent."""
    found = {name: rest.find_device(name) for name in dict.fromkeys(names)}
    missing = [name for name, device in found.items() if device is None]
    if missing:
        raise ToolError(f"no device named {', '.join(missing)} on the server")
    profiles = {device["deviceProfileId"]["id"] for device in found.values()}
    if len(profiles) > 1:
        raise ToolError("the devices are in different device profiles, and a package belongs to one: "
                        "update the devices of each profile in a run of their own")
    return list(found.values()), profiles.pop()


def profile_devices(rest: ThingsBoardREST, name: str) -> tuple[list[dict], str]:
    """The devices of the profile of that name, and its id."""
    profile = rest.find_device_profile(name)
    if profile is None:
        raise ToolError(f"no device profile named {name} on the server")
    return list(rest.devices(profile=name)), profile["id"]["id"]


def follow(rest: ThingsBoardREST, targets: list[Target], prefix: str, since_ms: int, title: str, version: str,
           timeout: float, poll: float, console: Console) -> None:
    """Poll every device's latest state until each is UPDATED or FAILED, or timeout passes: a live
    table on a terminal; elsewhere (a log) a line for each change (none with -q), then the table."""
    keys = [f"{prefix}_state", f"{prefix}_error", f"current_{prefix}_title", f"current_{prefix}_version"]
    started = time.monotonic()
    live = Live(table(targets, started), console=console, refresh_per_second=4) if ui.live() else None
    with live or nullcontext():
        while True:
            for target in (t for t in targets if not t.done):
                before = target.state
                latest = rest.latest_telemetry(target.id, keys)
                state = latest.get(keys[0], (0, None))
                runs = tuple(str(latest.get(key, (0, None))[1]) for key in keys[2:])
                if runs == (title, version):  # it runs the package: updated now or before this run
                    target.state = "UPDATED"
                elif state[0] >= since_ms:
                    target.state = state[1]
                    error = latest.get(keys[1], (0, None))
                    target.error = error[1] if target.state == "FAILED" and error[0] >= since_ms else ""
                if target.done:
                    target.took_s = time.monotonic() - started
                if live is None and target.state != before and ui.level >= ui.NORMAL:
                    console.print(escape(str(target)))
            if all(t.done for t in targets) or time.monotonic() - started >= timeout:
                break
            if live is not None:
                live.update(table(targets, started))
            time.sleep(poll)
        for target in (t for t in targets if not t.done):
            target.error = f"not UPDATED within {timeout:g} s"
        if live is not None:
            live.update(table(targets, started))
    if live is None:
        console.print(table(targets, started))


def table(targets: list[Target], started: float) -> Table:
    view = Table()
    for column in ("device", "state", "error", "elapsed"):
        view.add_column(column)
    colours = {"UPDATED": "green", "FAILED": "red"}
    for t in targets:
        elapsed = t.took_s if t.took_s is not None else time.monotonic() - started
        view.add_row(escape(t.name), f"[{colours.get(t.state, 'yellow')}]{escape(t.state)}", escape(t.error),
                     f"{elapsed:.0f} s")
    return view


# ---- the command -------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p.add_argument("folder", nargs="?", type=Path,
                   help="the files to send, laid out as on the board (default: the firmware's app)")
    server = p.add_argument_group("server")
    server.add_argument("--server", "--url", dest="url", default=env("IOTLINK_SERVER"),
                        help="ThingsBoard URL ($IOTLINK_SERVER)")
    server.add_argument("--user", default=env("IOTLINK_USER", "tenant@thingsboard.org"),
                        help="tenant user ($IOTLINK_USER)")
    add_secret(server, "--password", "IOTLINK_PASSWORD", "the tenant's password (default: the devserver's; "
               "never printed)", metavar="PASSWORD", fallback="tenant")
    server.add_argument("--ca", type=Path, metavar="FILE",
                        help="the https server's CA certificate, trusted besides the system's")
    which = p.add_argument_group("devices").add_mutually_exclusive_group(required=True)
    which.add_argument("--device", nargs="+", action="extend", metavar="NAME", help="the devices to update")
    which.add_argument("--profile", metavar="NAME",
                       help="assign the package to this device profile: its devices without their own follow it")
    package = p.add_argument_group("package")
    package.add_argument("--title", default=DEFAULT_TITLE, help="package title")
    package.add_argument("--version", help="package version (default: the library's version and the start of "
                                           "the package's SHA-256, e.g. 0.1.0-3fa2b1c9)")
    package.add_argument("--software", action="store_true", help="a software package (sw_*), not firmware (fw_*)")
    package.add_argument("--algorithm", choices=ALGORITHMS, default="SHA256", help="checksum algorithm")
    package.add_argument("--py", action="store_true", help="the firmware's library as .py source (default: .mpy)")
    run_group = p.add_argument_group("run")
    run_group.add_argument("--timeout", type=float, default=600.0,
                           help="seconds to wait for every device to finish")
    run_group.add_argument("--poll", type=float, default=2.0, help="seconds between state checks")


def run(args: argparse.Namespace) -> int:
    console = ui.console()
    if not args.url:
        raise ToolError("give the server with --server or $IOTLINK_SERVER")
    files = folder_files(args.folder) if args.folder else app_files(not args.py)
    data = build(files)
    version = args.version or package_version(data)
    kind, prefix = ("SOFTWARE", "sw") if args.software else ("FIRMWARE", "fw")
    rest = ThingsBoardREST(args.url, args.user, args.password, ca=read_ca(args.ca) if args.ca else None)
    try:
        rest.login()
    except RestError as exc:
        raise ToolError(f"cannot log in to {args.url} as {args.user}: {exc}") from exc
    if args.device:
        devices, profile_id = named_devices(rest, args.device)
    else:
        devices, profile_id = profile_devices(rest, args.profile)
    info, reused = published(rest, data, args.title, version, kind, args.algorithm, profile_id)
    package_id = info["id"]["id"]
    ui.info(f"{kind.lower()} package {args.title} {version}: {len(data)} bytes, "
            f"{info['checksumAlgorithm']} {info['checksum']}" + (" (on the server already)" if reused else " uploaded"))
    since_ms = rest.server_time_ms() - 1000  # the server's clock, known to the second
    if args.device:
        for device in devices:
            rest.assign_ota_package(device["id"]["id"], package_id, kind)
    else:
        rest.assign_profile_ota_package(profile_id, package_id, kind)
        field = "firmwareId" if kind == "FIRMWARE" else "softwareId"
        own = [d["name"] for d in devices if d.get(field) and d[field]["id"] != package_id]
        if own:
            ui.info(f"keeping their own package: {', '.join(own)}")
        devices = [d for d in devices if d["name"] not in own]
    where = f"profile {args.profile}" if args.profile else f"{len(devices)} device" + "s" * (len(devices) != 1)
    ui.info(f"assigned to {where}; following {prefix}_state")
    targets = [Target(d["name"], d["id"]["id"]) for d in devices]
    follow(rest, targets, prefix, since_ms, args.title, version, args.timeout, args.poll, console)
    failed = [t for t in targets if t.state != "UPDATED"]
    if failed:
        raise ToolError(f"{len(failed)} of {len(targets)} devices not updated: {'; '.join(map(str, failed))}")
    print(f"{len(targets)} of {len(targets)} devices run {args.title} {version}")
    return 0
