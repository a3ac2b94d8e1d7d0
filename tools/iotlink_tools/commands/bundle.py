"""Build an update package of the app: main.py and lib/iotlink/ as a tar, with its checksums.

Upload the tar to ThingsBoard as an OTA package (firmware or software) with any checksum
algorithm: the board verifies it before swapping the app in. The archive is reproducible (fixed
times and owners, sorted names), so the same sources always give the same checksums.
boot.py is left out on purpose: it is the update guard (it swaps a new app in, runs it on trial
and rolls it back), and a board refuses a package that holds one.

  iotlink bundle                                   # build/app.tar
  iotlink bundle --mpy --algorithm MURMUR3_32
  iotlink bundle --server http://127.0.0.1:8080 --device pump-17 --version 1.2.0

With --server the package goes up through ThingsBoard's own OTA REST API (log in, create the
package in the device's profile, upload the file, set the device's firmwareId or softwareId),
so the same command works against ThingsBoard and against `iotlink devserver`.
"""

from __future__ import annotations

import argparse
import io
import os
import tarfile
from pathlib import Path

from .. import firmware, ui
from ..devserver.checksums import ALGORITHMS, checksum
from ..options import add_secret
from ..rest import RestError, ThingsBoardREST

DEFAULT_OUT = Path("build") / "app.tar"
DEFAULT_TITLE = "iotlink"


def app_files(mpy: bool = False) -> dict[str, bytes]:
    """Archive name -> contents of the app: main.py and the library (.py, or .mpy with mpy)."""
    return {name: data for name, data in firmware.contents(mpy).items() if name != "boot.py"}


def build(files: dict[str, Path | bytes]) -> bytes:
    """A tar (GNU format, as `tar -cf` writes it) of name -> file or contents, folders included."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        folders = sorted({str(Path(name).parents[i]) for name in files
                          for i in range(len(Path(name).parents) - 1)})
        for name in folders:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name in sorted(files):
            src = files[name]
            data = src if isinstance(src, bytes) else src.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def checksums(data: bytes) -> dict[str, str]:
    return {name: checksum(name, data) for name in ALGORITHMS}


def publish(rest: ThingsBoardREST, data: bytes, title: str, version: str, kind: str = "FIRMWARE",
            algorithm: str = "SHA256", device: str | None = None) -> dict:
    """Create the OTA package (in the device's profile, or the default one), upload the file and
    assign it to the device (by name) if one is given; returns the package's info."""
    target = None
    if device:
        target = rest.find_device(device)
        if target is None:
            raise RestError(404, f"no device named {device}")
    info = upload(rest, data, title, version, kind, algorithm, target["deviceProfileId"]["id"] if target else None)
    if target:
        rest.assign_ota_package(target["id"]["id"], info["id"]["id"], kind)
    return info


def upload(rest: ThingsBoardREST, data: bytes, title: str, version: str, kind: str, algorithm: str,
           profile_id: str | None) -> dict:
    """Create the OTA package in the device profile (None: the default one) and upload the tar
    with its checksum, which the server compares with its own (an algorithm unknown here is left
    to the server to refuse); returns the package's info."""
    package = rest.create_ota_package(title, version, kind, profile_id)
    expected = checksum(algorithm, data) if algorithm in ALGORITHMS else None
    return rest.upload_ota_package(package["id"]["id"], data, algorithm, f"{title}-{version}.tar",
                                   "application/x-tar", expected)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the tar to write")
    p.add_argument("--mpy", action="store_true", help="ship the library as .mpy bytecode (smaller, loads faster)")
    p.add_argument("--algorithm", choices=ALGORITHMS, default="SHA256",
                   help="the checksum to select in ThingsBoard (all are printed)")
    p.add_argument("--server", help="a ThingsBoard (or iotlink devserver) URL: upload the package there")
    p.add_argument("--user", default=os.environ.get("IOTLINK_USER", "tenant@thingsboard.org"),
                   help="tenant user ($IOTLINK_USER)")
    add_secret(p, "--password", "IOTLINK_PASSWORD", "the tenant's password (default: the devserver's)",
               metavar="PASSWORD", fallback="tenant")
    p.add_argument("--device", help="with --server: assign the package to this device (by name)")
    p.add_argument("--title", default=DEFAULT_TITLE, help="package title")
    p.add_argument("--version", default=None, help="package version (default: the library's __version__)")
    p.add_argument("--software", action="store_true", help="a software package (sw_*), not firmware (fw_*)")


def run(args: argparse.Namespace) -> int:
    data = build(app_files(args.mpy))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    version = args.version or firmware.version()
    print(f"{args.out}: {len(data)} bytes, title {args.title}, version {version}")
    sums = checksums(data)
    for name in [args.algorithm] + [a for a in ALGORITHMS if a != args.algorithm]:
        (print if name == args.algorithm else ui.info)(f"  {name:<12} {sums[name]}")
    if args.server:
        kind = "SOFTWARE" if args.software else "FIRMWARE"
        info = publish(ThingsBoardREST(args.server, args.user, args.password), data, args.title, version,
                       kind, args.algorithm, args.device)
        where = f", assigned to {args.device}" if args.device else ""
        print(f"uploaded to {args.server} as {kind.lower()} package {info['id']['id']}{where}")
    return 0
