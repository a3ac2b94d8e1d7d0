"""The HTTP plumbing of the dev server: requests, responses, routing, a threaded server.

Every plain response carries Content-Length and closes the connection, as ThingsBoard's
Tomcat does for the HTTP/1.0 requests the boards' `requests` sends. Streaming responses
(thethings.iO subscribe) are chunked and stay open until the client or the server leaves.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable
from urllib.parse import parse_qs, unquote, urlsplit

MAX_REQUEST_BODY = 50 * 1024 * 1024


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    received: float = field(default_factory=time.time)

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def text(self) -> str:
        # Spring's String converter: the charset given, else UTF-8 for JSON, else ISO-8859-1.
        ctype = self.headers.get("content-type", "")
        m = re.search(r"charset=([\w-]+)", ctype, re.I)
        charset = m.group(1) if m else ("utf-8" if "json" in ctype.lower() else "iso-8859-1")
        return self.body.decode(charset, errors="replace")

    def json(self):
        """The body as JSON; raises ValueError on a syntax error (or nesting too deep to parse)."""
        try:
            return json.loads(self.text())
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None

    def form(self) -> dict[str, "FormPart"]:
        """The parts of a multipart/form-data body by name (empty for any other body)."""
        found = re.search(r'boundary="?([^";]+)"?', self.headers.get("content-type", ""), re.I)
        if not found or not self.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            return {}
        parts = {}
        for chunk in self.body.split(b"--" + found.group(1).encode())[1:]:
            if chunk.startswith(b"--"):
                break
            head, _, data = chunk.partition(b"\r\n\r\n")
            headers = {}
            for line in head.decode("utf-8", "replace").split("\r\n"):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            disposition = headers.get("content-disposition", "")
            name = re.search(r'\bname="([^"]*)"', disposition)
            if name:
                file_name = re.search(r'\bfilename="([^"]*)"', disposition)
                parts[name.group(1)] = FormPart(data[:-2] if data.endswith(b"\r\n") else data,
                                                file_name.group(1) if file_name else None,
                                                headers.get("content-type"))
        return parts


@dataclass
class FormPart:
    """One part of a multipart/form-data body."""

    data: bytes
    file_name: str | None
    content_type: str | None


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # A streaming response yields chunks instead of carrying a body.
    stream: Iterable[bytes] | None = None


def json_response(obj, status: int = 200) -> Response:
    return Response(status, json.dumps(obj).encode(), "application/json")


def text_response(text: str, status: int, ctype: str = "text/plain;charset=UTF-8") -> Response:
    return Response(status, text.encode(), ctype)


def empty(status: int = 200) -> Response:
    return Response(status)


@dataclass
class Exchange:
    """What crossed the wire, kept so tests can assert on the exact bytes a board sent."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int = 0
    at: float = 0.0
    peer: tuple = ()  # the client's (address, port): one per TCP connection

    def json(self):
        return json.loads(self.body)


Handler = Callable[[Request], Response]


class Router:
    def __init__(self):
        self._routes: list[tuple[str, re.Pattern, Handler]] = []
        self.patterns: list[tuple[str, str]] = []  # (method, pattern) of every route, as added

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        """pattern: a path with {name} segments (one path segment each) or {name:re}."""
        regex = re.sub(r"\{(\w+)(?::([^}]+))?\}", lambda m: f"(?P<{m[1]}>{m[2] or '[^/]+'})", pattern)
        self._routes.append((method, re.compile(regex + "$"), handler))
        self.patterns.append((method, pattern))

    def match(self, method: str, path: str) -> tuple[Handler | None, dict[str, str], bool]:
        path_known = False
        for m, regex, handler in self._routes:
            found = regex.match(path)
            if found:
                if m == method:
                    return handler, {k: unquote(v) for k, v in found.groupdict().items()}, True
                path_known = True
        return None, {}, path_known


def not_found(path: str) -> Response:
    return json_response(
        {"timestamp": int(time.time() * 1000), "status": 404, "error": "Not Found", "path": path}, 404
    )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "Server"

    def setup(self):
        super().setup()
        self.server.track(self.connection)
        # Headers and body go out in separate writes: without this, Nagle holds the body back
        # until the client's delayed ACK (40 ms) on every kept-alive exchange.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def finish(self):
        self.server.untrack(self.connection)
        super().finish()

    def log_message(self, fmt, *args):  # the server keeps its own exchange log
        pass

    def date_time_string(self, timestamp=None):
        # The Date header, from a clock that tests can set wrong, as a real server's may be.
        if timestamp is None:
            timestamp = time.time() + self.server.clock_skew_s
        return super().date_time_string(timestamp)

    def _serve(self):
        url = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        length = int(headers.get("content-length") or 0)
        if length > MAX_REQUEST_BODY:
            self._send(text_response('"Payload too large"', 413, "application/json"))
            return
        body = self.rfile.read(length) if length else b""
        req = Request(self.command, url.path, parse_qs(url.query, keep_blank_values=True), headers, body)
        exchange = Exchange(req.method, req.path, req.query, headers, body, at=req.received,
                            peer=tuple(self.client_address))
        self.server.record(exchange)
        handler, params, path_known = self.server.router.match(req.method, req.path)
        if handler is None:
            resp = (
                json_response({"status": 405, "error": "Method Not Allowed", "path": req.path}, 405)
                if path_known
                else not_found(req.path)
            )
        else:
            req.params = params
            try:
                resp = handler(req)
            except Exception as exc:  # a handler bug must show up, not hang the client
                resp = text_response(f"internal error: {exc!r}", 500)
        exchange.status = resp.status
        self.server.answered(exchange)
        self._send(resp)

    def _send(self, resp: Response):
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        if resp.content_type:
            self.send_header("Content-Type", resp.content_type)
        if resp.stream is not None:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.close_connection = True
            try:
                for chunk in resp.stream:
                    if chunk:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass  # the client went away
            return
        self.send_header("Content-Length", str(len(resp.body)))
        # HTTP/1.1 clients keep the connection unless they said close; HTTP/1.0 ones never do.
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if resp.body and self.command != "HEAD":
            self.wfile.write(resp.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # boards open a connection per request: a short backlog drops SYNs
    clock_skew_s = 0.0  # added to the time in the Date header

    def __init__(self, address, router: Router, record: Callable[[Exchange], None],
                 answered: Callable[[Exchange], None] = lambda exchange: None):
        self.router = router
        self.record = record  # each request as it arrives
        self.answered = answered  # each request once its answer is known, before it is sent
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)

    def untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)

    def handle_error(self, request, client_address) -> None:
        # A board that reset or lost its network mid-request is normal here, not a server error.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def server_close(self) -> None:
        # A stopped server drops its kept-alive connections too, as a dead one would.
        super().server_close()
        with self._lock:
            for conn in self._connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def use_tls(self, certfile: str, keyfile: str) -> None:
        # The handshake happens in each connection's own thread, on its first read.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certfile, keyfile)
        self.socket = ctx.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def start(self) -> threading.Thread:
        # Polling every 50 ms: stop() returns at once rather than after the default 0.5 s.
        thread = threading.Thread(target=self.serve_forever, args=(0.05,), name="devserver", daemon=True)
        thread.start()
        return thread
