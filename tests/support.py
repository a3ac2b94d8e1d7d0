"""What the tests share: device code run in the real MicroPython unix port (only the hardware
faked), the firmware's loop on a virtual board, OTA boots, scripted servers and the `iotlink`
command in a process of its own. Fixtures are in conftest.py."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from iotlink_tools.vboard import FAKES, micropython_command, prepare_flash
from iotlink_tools.vboard.sensors import readings

REPO = Path(__file__).resolve().parents[1]  # the checkout under test
LIB = REPO / "lib"

# ---- device code in micropython ----------------------------------------------------------
MICROPYTHON = micropython_command()[0]
# Fakes first, then the library, then the port's frozen modules (requests).
MICROPYPATH = f"{FAKES}:{LIB}:.frozen"

# Every device script gets `out(x)`: one JSON result line the test reads back.
PRELUDE = """
import json as _json
def out(x):
    print("@@" + _json.dumps(x))
"""


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    results: list = field(default_factory=list)

    @property
    def result(self):
        assert self.results, f"device printed no result\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        return self.results[-1]


def run_mp(code: str, cwd: Path, timeout: float = 60, heapsize: str | None = None,
           check: bool = True, env: dict | None = None, args: list[str] | None = None) -> Run:
    """Run `code` in micropython with cwd as the board's flash; returns what it printed."""
    cmd = [MICROPYTHON]
    if heapsize:
        cmd += ["-X", f"heapsize={heapsize}"]
    if args is None:
        script = Path(cwd) / "_test_script.py"
        script.write_text(PRELUDE + code)
        cmd.append(script.name)
    else:
        cmd += args
    full_env = {"PATH": os.environ.get("PATH", ""), "MICROPYPATH": MICROPYPATH, **(env or {})}
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    results = [json.loads(line[2:]) for line in proc.stdout.splitlines() if line.startswith("@@")]
    run = Run(proc.returncode, proc.stdout, proc.stderr, results)
    if check and proc.returncode != 0:
        raise AssertionError(f"micropython exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return run


def wait_until(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# ---- the loop on a virtual board (vboard.Board) ------------------------------------------
TOKEN = "TEST_TOKEN"


def config(server, **changes):
    cfg = {"server": server.url, "token": TOKEN, "interval_s": 1, "backoff_max_s": 1,
           "pins": {"23": 23, "led": "LED"}, "wifi": {"ssid": "lab", "password": "WIFI-PASSWORD"}}
    cfg.update(changes)
    return {k: v for k, v in cfg.items() if v is not None}


def flash(tmp_path, cfg, sensors=None, name="board"):
    folder = prepare_flash(tmp_path / name, cfg)
    if sensors is not None:
        (folder / "sensors.py").write_text(sensors)
    return folder


def posted(server, path):
    return [e.json() for e in server.requests_to(path, "POST")]


def telemetry(server, token=TOKEN):
    return posted(server, f"/api/v1/{token}/telemetry")


def all_records(bodies):
    """Every record in telemetry bodies, batches flattened, in order of arrival."""
    out = []
    for body in bodies:
        out.extend(body if isinstance(body, list) else [body])
    return out


def is_ota_report(values):
    return any(k.startswith(("current_fw_", "current_sw_", "fw_", "sw_")) for k in values)


def records(bodies):
    """The loop's telemetry records (not the OTA reports), in order of arrival."""
    return [r for r in all_records(bodies) if not is_ota_report(r.get("values", r))]


def queued(board):
    """How many records the board last said were waiting in its flash queue."""
    counts = re.findall(r"(\d+) queued", board.console())
    return int(counts[-1]) if counts else 0


def console_has(board, text):
    return lambda: text in board.console()


# ---- deep sleep on a virtual board --------------------------------------------------------
def wakes(board):
    """(wake number, whether it talked to the server) for every wake so far, in order."""
    return [(int(n), bool(sending)) for n, sending in re.findall(r"^wake (\d+): \d+ queued(, sending)?$",
                                                                   board.console(), re.M)]


def sending_wakes(board):
    return [n for n, sending in wakes(board) if sending]


def wakes_with_an_outage(folder, proxy, before, during, timeout):
    """A deep-sleeping board's wakes: `before` of them with the server, then `during` with the
    proxy refusing every connection, then the server back. The readings taken when it went away
    and when it came back (sensors.readings numbers)."""
    wait_until(lambda: readings(folder) >= before, timeout, f"{before} wakes")
    proxy.rate = 1.0
    down_from = readings(folder)
    wait_until(lambda: readings(folder) >= down_from + during, timeout, f"{during} wakes without the server")
    proxy.rate = 0
    return down_from, readings(folder)


def wake_part(console, n):
    """What wake n printed."""
    return console.split(f"wake {n}: ")[1].split("\nwake ")[0]


# ---- OTA: boots of a board in micropython ------------------------------------------------
# One boot: boot.py's update guard (imported, so its own boot sequence does not run), then the
# app's side as the loop does it: report_boot(), then check() with the shared attributes.
BOOT = """
import os, json
import boot
from iotlink.thingsboard import ThingsBoard
from iotlink import ota, ota_swap
KILL = {kill!r}
def hook(step):
    print("@@" + json.dumps(step))
    if step == KILL:
        os.system("kill -9 $PPID")  # a power cut: no finally, no flush, nothing after
ota_swap.hook = boot.hook = hook
boot.resume()

def walk(folder, found):
    for entry in os.ilistdir(folder or "."):
        path = folder + entry[0]
        if folder or entry[0] not in {board_only!r}:
            if entry[1] == 0x4000:
                walk(path + "/", found)
            else:
                with open(path) as f:
                    found[path] = f.read()
    return found
out({{"after_resume": walk("", {{}})}})

up = ota.Updater(ThingsBoard({url!r}, "TEST_TOKEN", timeout=3), chunk_size=4096)
up.retry_ms = 10
reached = {report}
out({{"reached": reached}})
if reached:
    shared = ThingsBoard({attrs_url!r}, "TEST_TOKEN", timeout=3).request_attributes(shared_keys=up.KEYS)
    up.check(shared["shared"])
out("idle")
"""

REBOOT = 75
BOARD_ONLY = (".ota", ".esp32", "_test_script.py", "boot.py")  # not the app: tree() leaves them out


def make_tar(files, fmt=tarfile.PAX_FORMAT, dirs=()):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def tree(flash):
    """The board's files (relative path -> bytes), without OTA bookkeeping and the test script."""
    return {str(p.relative_to(flash)): p.read_bytes() for p in sorted(flash.rglob("*"))
            if p.is_file() and p.relative_to(flash).parts[0] not in BOARD_ONLY}


def script(server, kill=None, url=None, report_boot=True):
    return BOOT.format(kill=kill, url=url or server.url, attrs_url=server.url, board_only=BOARD_ONLY,
                       report="up.report_boot()" if report_boot else "True")


def boot(mp, server, **kw):
    """One boot of the board whose flash is mp's (the firmware's boot.py put there first)."""
    (mp.flash / "boot.py").write_bytes((REPO / "boot.py").read_bytes())
    return mp(script(server, **kw), check=False, timeout=30)


def boot_until_idle(mp, server, boots=4, **kw):
    """Boot again and again (each reset is a reboot) until a boot ends normally."""
    runs = []
    for _ in range(boots):
        run = boot(mp, server, **kw)
        runs.append(run)
        assert run.returncode in (0, REBOOT), run.stderr
        if run.returncode == 0:
            return runs
    raise AssertionError("the board kept rebooting")


def wire(server, prefix="fw"):
    """(state, error) of every <prefix>_state telemetry that crossed the wire, in order."""
    sent = []
    for exchange in server.requests_to("/api/v1/TEST_TOKEN/telemetry", "POST"):
        body = exchange.json()
        values = body.get("values", body)
        if prefix + "_state" in values:
            sent.append((values[prefix + "_state"], values.get(prefix + "_error")))
    return sent


def states(server, prefix="fw"):
    return [s for s, _ in wire(server, prefix)]


def current(server, prefix="fw"):
    """The last current_<prefix>_title/version the board sent (the server type-casts "2.0")."""
    for exchange in reversed(server.requests_to("/api/v1/TEST_TOKEN/telemetry", "POST")):
        values = exchange.json()
        values = values.get("values", values)
        if f"current_{prefix}_title" in values:
            return values[f"current_{prefix}_title"], values[f"current_{prefix}_version"]
    return None


# ---- thethings.iO ------------------------------------------------------------------------
def unix_s(compact):
    """A thethings.iO datetime as the board writes it (YYYYMMDDHHmmss, UTC) in unix seconds."""
    return datetime.strptime(compact, "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc).timestamp()


def tt(url, token, timeout=5):
    return f"""
from iotlink.thethings import TheThings
from iotlink import errors
tt = TheThings({url!r}, {token!r}, timeout={timeout})
tt.backoff_ms = 10
tt.max_backoff_ms = 40
def attempt(fn, *a, **k):
    try:
        return ["ok", fn(*a, **k)]
    except (errors.IotlinkError, ValueError) as e:
        return [type(e).__name__, getattr(e, "status", None), getattr(e, "message", str(e))]
"""


# ---- the `iotlink` command in a process of its own ---------------------------------------
IOTLINK = str(Path(sys.executable).with_name("iotlink"))


def run_installed(bin_dir: Path, *args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    """`iotlink args` from an installed environment (installed_tool), in folder cwd, with nothing
    of the test environment in its way (no PYTHONPATH, no active virtual environment)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run([str(bin_dir / "iotlink"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def ctrl_c_works() -> None:
    """preexec_fn for a tool a test stops with SIGINT: a shell's background job starts with
    SIGINT ignored, and a child inherits that, so the test would wait for nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(") ", 1)[1][0] != "Z"  # a zombie has exited, its parent not told yet


def children(pid: int) -> list[int]:
    return [int(p) for p in subprocess.run(["ps", "--ppid", str(pid), "-o", "pid="],
                                           capture_output=True, text=True).stdout.split()]


# ---- servers that misbehave --------------------------------------------------------------
class RawServer:
    """Accepts connections on loopback; answers each request with `reply` bytes then closes.

    reply=None: accept and never answer (a server that hangs). With close=False the
    connection stays open after the reply, as a server ignoring `Connection: close` would.
    drip=s: the reply goes a byte at a time, one every s seconds, from byte `drip_from` on.
    """

    def __init__(self, reply: bytes | None, close: bool = True, drip: float | None = None, drip_from: int = 0):
        self.reply = reply
        self.close = close
        self.drip = drip
        self.drip_from = drip_from
        self.requests: list[bytes] = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._open.append(conn)
            conn.settimeout(5)
            try:
                data = self._read_request(conn)
                self.requests.append(data)
                if self.reply is not None:
                    self._send(conn, self.reply)
                    if self.close:
                        conn.close()
            except OSError:
                pass

    def _send(self, conn: socket.socket, reply: bytes) -> None:
        if self.drip is None:
            conn.sendall(reply)
            return
        conn.sendall(reply[:self.drip_from])
        for i in range(self.drip_from, len(reply)):
            if self._stop.wait(self.drip):
                return
            conn.sendall(reply[i:i + 1])

    @staticmethod
    def _read_request(conn: socket.socket) -> bytes:
        # The whole request, headers and Content-Length body: replying earlier would reset it.
        data = b""
        while b"\r\n\r\n" not in data:
            part = conn.recv(4096)
            if not part:
                return data
            data += part
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            part = conn.recv(4096)
            if not part:
                break
            body += part
        return head + b"\r\n\r\n" + body

    def stop(self):
        self._stop.set()
        self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked in the thread
        self._sock.close()
        for conn in self._open:
            conn.close()



class SegmentServer:
    """Answers the requests on a kept-alive connection with `replies`, in turn.

    Each reply is a list of pieces, each sent as a TCP segment of its own, PAUSE apart: a
    reply's head cut where a test wants, the client's reads see the cuts. A client that leaves
    its connection gets the replies left on its next one. `requests`: each request read, whole;
    `connections`: how many connections the client opened.
    """

    PAUSE = 0.05

    def __init__(self, replies: list[list[bytes]]):
        self.replies = replies
        self.requests: list[bytes] = []
        self.connections = 0
        self._conn: socket.socket | None = None
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self):
        while len(self.requests) < len(self.replies):
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            self._conn = conn
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a piece, a segment
            conn.settimeout(5)
            with conn:
                try:
                    self._answer(conn)
                except OSError:
                    pass

    def _answer(self, conn: socket.socket) -> None:
        while len(self.requests) < len(self.replies):
            request = RawServer._read_request(conn)
            if not request:
                return  # the client left this connection
            pieces = self.replies[len(self.requests)]
            self.requests.append(request)
            for i, piece in enumerate(pieces):
                if i:
                    time.sleep(self.PAUSE)
                conn.sendall(piece)

    def stop(self):
        for sock in (self._sock, self._conn):
            if sock:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked on it
                except OSError:
                    pass  # the client closed it first
                sock.close()


# ---- config.json through the firmware's own checks --------------------------------------

LOAD = """
from iotlink import config
from iotlink.errors import ConfigError
try:
    out(["ok", config.load()])
except ConfigError as e:
    out(["error", str(e)])
"""


def load(mp, cfg):
    """What config.load() says about this config.json (a dict, or raw text)."""
    text = cfg if isinstance(cfg, str) else json.dumps(cfg)
    (mp.flash / "config.json").write_text(text)
    return mp(LOAD)


# ---- the devserver's REST API, raw -------------------------------------------------------

TENANT = {"username": "tenant@thingsboard.org", "password": "tenant"}


def call(server, method, path, body=None, token=None, headers=None, raw=False):
    """(status, JSON or bytes) of one request, with no client in between."""
    headers = dict(headers or {})
    if token:
        headers.setdefault("X-Authorization", f"Bearer {token}")
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    if data is not None:
        headers.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(server.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as reply:
            status, content = reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        status, content = exc.code, exc.read()
    if raw:
        return status, content
    try:
        return status, json.loads(content) if content else None
    except ValueError:
        return status, content
