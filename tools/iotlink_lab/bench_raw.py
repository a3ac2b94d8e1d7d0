"""The batched limit: how close iotlink's batched, kept-alive send comes to raw bytes on a socket.

Both rows send N points in requests of 50 points, on one kept-alive connection, to a host-side
sink that only reads each request (Content-Length framing) and answers an empty 200, so the
server's own cost is not in the figures:

* raw: one request (head and a 50-point JSON body) built before the clock starts, written
  N/50 times, its reply read up to the blank line;
* iotlink: `ThingsBoard(URL, TOKEN, keepalive=True).send_telemetry(batch)`, the batch (a list
  of 50 {"ts", "values"} records) built in the loop, as an application builds it;
* iotlink, pre-encoded: the same call given the raw row's body (JSON bytes, which
  send_telemetry accepts), so the library's own HTTP work shows apart from the encoding.

A third run times iotlink's phases (building the batch, JSON encoding, writing the request and
reading the reply head, reading the body) by wrapping the library's functions, to show where the
time goes.
"""

from __future__ import annotations

import json
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

from iotlink_tools import firmware
from iotlink_tools.vboard import micropython_command

TOKEN = "RAW_BENCH_TOKEN"
BATCH = 50
POINTS = 1_000_000
REPEATS = 5  # the best of five: on a shared machine the slower runs measure other work too
REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


class SinkServer:
    """An HTTP/1.1 server that reads each request whole and answers REPLY, nothing else.

    Kept-alive connections stay open; an HTTP/1.0 request or `Connection: close` is answered
    and closed. `requests` counts the requests answered.
    """

    def __init__(self):
        self.requests = 0
        self._count = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while True:
                end = buf.find(b"\r\n\r\n")
                while end < 0:
                    part = conn.recv(65536)
                    if not part:
                        return
                    buf += part
                    end = buf.find(b"\r\n\r\n")
                head = buf[:end].lower()
                length = 0
                at = head.find(b"\r\ncontent-length:")
                if at >= 0:
                    line_end = head.find(b"\r\n", at + 2)
                    length = int(head[at + 17 : line_end if line_end >= 0 else len(head)])
                while len(buf) < end + 4 + length:
                    part = conn.recv(65536)
                    if not part:
                        return
                    buf += part
                buf = buf[end + 4 + length :]
                conn.sendall(REPLY)
                with self._count:
                    self.requests += 1
                if head.split(b"\r\n", 1)[0].endswith(b"http/1.0") or b"\r\nconnection: close" in head:
                    conn.close()
                    return
        except OSError:
            return

    def stop(self) -> None:
        # shutdown() wakes the thread blocked in accept(): close() alone would leave it there,
        # still listening, for the rest of the process.
        for sock in (self._sock, *self._conns):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # a connection the client already closed
            sock.close()

    def __enter__(self) -> "SinkServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# Device programs: each prints one JSON line. HOST, PORT, URL, TOKEN, N, BATCH come first.
PROGRAMS = {
    "raw": """
import json, socket
records = [{"ts": 1700000000000 + i, "values": {"temperature": i}} for i in range(BATCH)]
body = json.dumps(records).encode()
request = (b"POST /api/v1/" + TOKEN.encode() + b"/telemetry HTTP/1.1\\r\\nHost: x\\r\\n"
           b"Content-Type: application/json\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body)) + body
s = socket.socket()
s.connect(socket.getaddrinfo(HOST, PORT)[0][-1])
t = time.ticks_us()
for start in range(0, N, BATCH):
    s.write(request)
    while s.readline() != b"\\r\\n":
        pass
print(json.dumps({"points": N, "us": time.ticks_diff(time.ticks_us(), t)}))
""",
    "iotlink": """
from iotlink.thingsboard import ThingsBoard
tb = ThingsBoard(URL, TOKEN, keepalive=True)
t = time.ticks_us()
for start in range(0, N, BATCH):
    tb.send_telemetry([{"ts": 1700000000000 + i, "values": {"temperature": i}} for i in range(start, start + BATCH)])
print(json.dumps({"points": N, "us": time.ticks_diff(time.ticks_us(), t)}))
""",
    "iotlink, pre-encoded": """
from iotlink import http
from iotlink.thingsboard import ThingsBoard
tb = ThingsBoard(URL, TOKEN, keepalive=True)
body = http.dumps([{"ts": 1700000000000 + i, "values": {"temperature": i}} for i in range(BATCH)])
t = time.ticks_us()
for start in range(0, N, BATCH):
    tb.send_telemetry(body)
print(json.dumps({"points": N, "us": time.ticks_diff(time.ticks_us(), t)}))
""",
}

# iotlink's send, its phases timed: each wrapped function adds its time to its phase. Open
# (head, write, reply head) includes the reply's wait, so the sink's answer is in it too.
PROFILE = """
from iotlink import http
from iotlink.http_conn import Connection
from iotlink.thingsboard import ThingsBoard
spent = {"build the batch": 0, "JSON encoding": 0, "write request, read reply head": 0, "read reply body": 0}
def timed(phase, f):
    def wrapper(*args):
        t = time.ticks_us()
        try:
            return f(*args)
        finally:
            spent[phase] += time.ticks_diff(time.ticks_us(), t)
    return wrapper
http.dumps = timed("JSON encoding", http.dumps)
http.read_body = timed("read reply body", http.read_body)
Connection.open = timed("write request, read reply head", Connection.open)
tb = ThingsBoard(URL, TOKEN, keepalive=True)
t = time.ticks_us()
for start in range(0, N, BATCH):
    s = time.ticks_us()
    batch = [{"ts": 1700000000000 + i, "values": {"temperature": i}} for i in range(start, start + BATCH)]
    spent["build the batch"] += time.ticks_diff(time.ticks_us(), s)
    tb.send_telemetry(batch)
total = time.ticks_diff(time.ticks_us(), t)
spent["the rest (send_telemetry, _call, request)"] = total - sum(spent.values())
print(json.dumps({"us_per_request": {k: v * BATCH / N for k, v in spent.items()}, "us": total}))
"""

HEADER = "import json, time\nHOST = {host!r}\nPORT = {port}\nURL = {url!r}\nTOKEN = {token!r}\nN = {n}\nBATCH = {batch}\n"


def run_program(body: str, server: SinkServer, work: Path, points: int) -> dict:
    port = int(server.url.rsplit(":", 1)[1])
    code = HEADER.format(host="127.0.0.1", port=port, url=server.url, token=TOKEN, n=points, batch=BATCH) + body
    proc = subprocess.run(micropython_command() + ["-c", code], cwd=work, capture_output=True, text=True,
                          env={"MICROPYPATH": f"{firmware.lib_dir()}:.frozen"}, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"raw bench program failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(points: int = POINTS, repeats: int = REPEATS) -> dict:
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, SinkServer() as server:
        for _ in range(repeats):
            for name, body in PROGRAMS.items():
                before = server.requests
                out = run_program(body, server, Path(tmp), points)
                if server.requests - before != points // BATCH:
                    raise RuntimeError(f"{name}: the sink answered {server.requests - before} requests, "
                                       f"not {points // BATCH}")
                rates[name] = max(rates.get(name, 0.0), out["points"] * 1e6 / max(out["us"], 1))
        profile = run_program(PROFILE, server, Path(tmp), points)
    return {"points": points, "batch": BATCH, "raw_points_per_s": round(rates["raw"]),
            "iotlink_points_per_s": round(rates["iotlink"]),
            "ratio": round(rates["iotlink"] / rates["raw"], 3),
            "iotlink_pre_encoded_points_per_s": round(rates["iotlink, pre-encoded"]),
            "ratio_pre_encoded": round(rates["iotlink, pre-encoded"] / rates["raw"], 3),
            "iotlink_us_per_request": {k: round(v, 1) for k, v in profile["us_per_request"].items()}}


def describe(figures: dict) -> str:
    lines = [f"Batched limit ({figures['batch']} points a request, one kept-alive socket, a sink that only "
             f"reads and answers 200)",
             f"  {'raw socket, pre-built requests':40s} {figures['raw_points_per_s']:10,d} points/s",
             f"  {'iotlink send_telemetry(batch)':40s} {figures['iotlink_points_per_s']:10,d} points/s"
             f" {figures['ratio']:6.2f} x raw",
             f"  {'iotlink send_telemetry(JSON bytes)':40s} {figures['iotlink_pre_encoded_points_per_s']:10,d}"
             f" points/s {figures['ratio_pre_encoded']:6.2f} x raw",
             "  where iotlink's time goes, per request (us):"]
    lines += [f"    {phase:48s} {us:8.1f}" for phase, us in figures["iotlink_us_per_request"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe(run()))
