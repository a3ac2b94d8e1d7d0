"""A fault-injecting HTTP proxy between a board and the devserver, for tests and `make soak`.

Each request is read whole, then, at the configured rate and from a seeded random generator,
one fault is applied:

  refuse     close the connection before forwarding (the server never sees the request)
  lose_reply forward, then close without the reply (the server acted; the board can't know)
  delay      forward after a pause
  truncate   forward, then send only part of the reply
  corrupt    forward, then send the reply with its status line garbled
  error      answer 500, 503 or 429 (with Retry-After) without forwarding

Requests without a fault are forwarded untouched, so it is transparent at rate 0. Their replies
are relayed as they come, so a reply that never ends (thethings.iO's subscription stream) streams
through the proxy too.
"""

from __future__ import annotations

import random
import socket
import socketserver
import threading
import time
from collections import Counter

FAULTS = ("refuse", "lose_reply", "delay", "truncate", "corrupt", "error")
MAX_MESSAGE = 8 * 1024 * 1024


def read_message(sock: socket.socket, buffered: bytes = b"", to_head: bool = False) -> tuple[bytes, bytes]:
    """One HTTP message (head + body by Content-Length or chunked, else to EOF); returns it and
    what was read past its end. Returns (b"", b"") when the peer closed before a message.
    to_head: the reply to a HEAD request, whose headers describe a body that never comes."""
    data = buffered
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        if not part:
            return (data if data else b""), b""
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    is_request = not head.startswith(b"HTTP/")
    if to_head:
        end = 0
    elif b"content-length" in fields:
        end = int(fields[b"content-length"])
    elif b"chunked" in fields.get(b"transfer-encoding", b"").lower():
        while not body.endswith(b"0\r\n\r\n"):
            part = sock.recv(65536)
            if not part:
                break
            body += part
        end = len(body)
    elif is_request or head.split(b" ", 2)[1:2] in ([b"204"], [b"304"]):
        end = 0
    else:
        end = MAX_MESSAGE  # the body ends when the server closes
    while len(body) < end:
        part = sock.recv(65536)
        if not part:
            break
        body += part
    return head + b"\r\n\r\n" + body[:end], body[end:]


class _Relay:
    """The upstream socket as read_message sees it: what it reads also goes on to the client."""

    def __init__(self, upstream: socket.socket, client: socket.socket):
        self.upstream = upstream
        self.client = client

    def recv(self, size: int) -> bytes:
        data = self.upstream.recv(size)
        self.client.sendall(data)
        return data


class FaultProxy:
    def __init__(self, upstream: str, rate: float = 0.3, seed: int = 0,
                 faults: tuple[str, ...] = FAULTS, max_delay_s: float = 2.0):
        host, _, port = upstream.split("://", 1)[-1].rstrip("/").partition(":")
        self.upstream = (host, int(port or 80))
        self.rate = rate
        self.faults = faults
        self.max_delay_s = max_delay_s
        self.stats: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                proxy._serve(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.request_queue_size = 128

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "FaultProxy":
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _pick(self) -> tuple[str | None, random.Random]:
        with self._lock:
            fault = self._rng.choice(self.faults) if self._rng.random() < self.rate else None
            self.stats[fault or "passed"] += 1
            return fault, random.Random(self._rng.random())

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(60)
        extra = b""
        try:
            while True:  # one request at a time, on the board's kept-alive connection too
                request, extra = read_message(client, extra)
                if not request:
                    return
                if not self._exchange(client, request):
                    return
        except OSError:
            return

    def _exchange(self, client: socket.socket, request: bytes) -> bool:
        """Handle one request; returns whether the client connection stays usable."""
        fault, rng = self._pick()
        if fault == "refuse":
            return False
        if fault == "error":
            status = rng.choice([b"500 Internal Server Error", b"503 Service Unavailable",
                                 b"429 Too Many Requests"])
            client.sendall(b"HTTP/1.1 " + status + b"\r\nRetry-After: 1\r\nContent-Length: 0\r\n"
                           b"Connection: close\r\n\r\n")
            return False
        if fault == "delay":
            time.sleep(rng.uniform(0, self.max_delay_s))
        relayed = fault in (None, "delay")  # the reply goes to the client unchanged
        with socket.create_connection(self.upstream, timeout=60) as up:
            up.sendall(request)
            reply, _ = read_message(_Relay(up, client) if relayed else up, to_head=request.startswith(b"HEAD "))
        if fault == "lose_reply":
            return False
        if fault == "truncate":
            # Cut inside the body when there is one, else inside the status line: both are
            # replies no client may take as complete.
            head_end = reply.find(b"\r\n\r\n") + 4
            start, end = (head_end, len(reply)) if len(reply) > head_end else (1, reply.find(b"\r\n"))
            client.sendall(reply[: rng.randrange(start, max(end, start + 1))])
            return False
        if fault == "corrupt":
            client.sendall(b"HTTP/1.1 2x0 ?\x00\xff" + reply[reply.find(b"\r\n"):])
            return False
        return b"connection: close" not in reply.lower().split(b"\r\n\r\n", 1)[0]
