"""The HTTP plumbing of the dev server: requests, responses, routing, a threaded server.

Every plain response carries Content-Length and closes the connection, as ThingsBoard's
Tomcat does for the HTTP/1.0 requests the boards' `requests` sends. Streaming responses
(thethings.iO subscribe) are chunked and stay open until the client or the server leaves.

What a request may be: a body of at most its route's `max_body` bytes, by Content-Length or
chunked (anything else is refused and the connection closed, so a body is never read as the
next request), every read under a timeout. What a page of another site may make a browser send
is refused on every route: a request whose Origin is not the server's own, or that the browser
marks as sent from another site (Sec-Fetch-Site), unless it is a visit to a page. A request from
a browser (Origin or Sec-Fetch-Site) needs a local Host (an IP address, localhost or an allowed
name: no DNS rebinding), and so does any request to a route `for_browsers` (the page, the REST
API); devices, which send neither header, may know the server by any name. A route's
`body_types` make a browser preflight a write, which the server never allows.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, unquote, urlsplit

MAX_BODY = 1024 * 1024  # any request's body, unless its route allows more
MAX_UPLOAD = 50 * 1024 * 1024  # an OTA package upload: ThingsBoard's multipart limit
READ_TIMEOUT_S = 60.0  # a client silent this long mid-request, or idle between requests, is dropped
KEPT_BODY = 64 * 1024  # the part of a body the exchange log keeps
SWALLOW = 2 * 1024 * 1024  # what is read and dropped of a refused request's body (Tomcat's maxSwallowSize)
MAX_LINE = 1024  # a chunk-size or trailer line
MAX_TRAILERS = 32
JSON_BODY = ("application/json",)  # also matches application/*+json
FORM_BODY = ("multipart/form-data",)


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
    """What crossed the wire, kept so tests can assert on the exact bytes a board sent
    (a body's first KEPT_BODY bytes; `length` is its whole size)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int = 0
    at: float = 0.0
    peer: tuple = ()  # the client's (address, port): one per TCP connection
    length: int = 0

    def json(self):
        return json.loads(self.body)

    @property
    def footprint(self) -> int:
        """Roughly the bytes it holds: what came from the client, and the objects around it."""
        sent = sum(len(k) + len(v) for k, v in self.headers.items())
        sent += sum(len(k) + sum(map(len, v)) for k, v in self.query.items())
        return 1024 + len(self.path) + sent + len(self.body)


class BoundedLog(list):
    """A log that keeps its newest entries, oldest first: at most max_count of them, holding
    at most max_bytes (as `size` counts an entry)."""

    def __init__(self, max_count: int, max_bytes: int, size: Callable[[Any], int] = len):
        super().__init__()
        self.max_count, self.max_bytes, self._size = max_count, max_bytes, size
        self._bytes = 0

    def append(self, entry) -> None:
        super().append(entry)
        self._bytes += self._size(entry)
        drop = 0
        while drop < len(self) and (len(self) - drop > self.max_count or self._bytes > self.max_bytes):
            self._bytes -= self._size(self[drop])
            drop += 1
        del self[:drop]

    def extend(self, entries) -> None:
        for entry in entries:
            self.append(entry)

    def clear(self) -> None:
        super().clear()
        self._bytes = 0


def exchange_log() -> BoundedLog:
    """The exchanges a server keeps for tests: plenty for any test or soak run, within 64 MiB."""
    return BoundedLog(100_000, 64 * 1024 * 1024, size=lambda exchange: exchange.footprint)


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    regex: re.Pattern
    handler: Handler
    max_body: int = MAX_BODY
    for_browsers: bool = False  # the page and the REST API: a local Host always, never in a frame
    body_types: tuple[str, ...] = ()  # the media types a body may have (empty: any)

    def with_handler(self, handler: Handler) -> "Route":
        return replace(self, handler=handler)


class Router:
    def __init__(self):
        self._routes: list[Route] = []
        self.patterns: list[tuple[str, str]] = []  # (method, pattern) of every route, as added

    def add(self, method: str, pattern: str, handler: Handler, **options) -> None:
        """pattern: a path with {name} segments (one path segment each) or {name:re};
        options: Route's max_body, for_browsers, body_types."""
        regex = re.sub(r"\{(\w+)(?::([^}]+))?\}", lambda m: f"(?P<{m[1]}>{m[2] or '[^/]+'})", pattern)
        self._routes.append(Route(method, re.compile(regex + "$"), handler, **options))
        self.patterns.append((method, pattern))

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        path_known = False
        for route in self._routes:
            found = route.regex.match(path)
            if found:
                if route.method == method:
                    return route, {k: unquote(v) for k, v in found.groupdict().items()}, True
                path_known = True
        return None, {}, path_known


def not_found(path: str) -> Response:
    return json_response(
        {"timestamp": int(time.time() * 1000), "status": 404, "error": "Not Found", "path": path}, 404
    )


def refusal(status: int, message: str) -> Response:
    return json_response({"status": status, "message": message, "timestamp": int(time.time() * 1000)}, status)


def local_host(host: str, allowed: frozenset[str]) -> bool:
    """Whether a Host header names this server in a way no other site can: an IP address,
    `localhost`, or a name in `allowed` (lower case). Any other name may be DNS rebinding."""
    found = re.fullmatch(r"\[([^\]]+)\](?::\d*)?|([^:\[\]]+)(?::\d*)?", host)
    if not found:
        return False
    name = (found[1] or found[2]).lower()
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name in allowed or name == "localhost"
    return True


def _media_type(ctype: str) -> str:
    return ctype.partition(";")[0].strip().lower()


def _body_type_ok(ctype: str, allowed: tuple[str, ...]) -> bool:
    media = _media_type(ctype)
    return media in allowed or ("application/json" in allowed and media.startswith("application/")
                                and media.endswith("+json"))


class _Refused(Exception):
    """A request answered before its body is read; its connection then closes."""

    def __init__(self, response: Response):
        self.response = response


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "Server"

    def setup(self):
        self.timeout = self.server.read_timeout_s  # applied to the socket by super().setup()
        self._expects_continue = False
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

    def handle_expect_100(self):
        # "100 Continue" only once the request passed its checks (_serve); else the refusal.
        self._expects_continue = True
        return True

    def _serve(self):
        url = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        route, params, path_known = self.server.router.match(self.command, url.path)
        try:
            body, resp = self._body(route, headers), None
        except _Refused as refused:
            body, resp = b"", refused.response
            self.close_connection = True  # whatever body it had is still unread
        req = Request(self.command, url.path, parse_qs(url.query, keep_blank_values=True), headers, body)
        exchange = Exchange(req.method, req.path, req.query, headers, body[:KEPT_BODY], at=req.received,
                            peer=tuple(self.client_address), length=len(body))
        self.server.record(exchange)
        unread = resp is not None
        if resp is None:
            resp = self._dispatch(req, route, params, path_known)
        if route is not None and route.for_browsers:  # no other site may show the page in a frame
            resp = replace(resp, headers={**resp.headers, "X-Frame-Options": "DENY"})
        exchange.status = resp.status
        self.server.answered(exchange)
        self._send(resp)
        if unread:
            self._swallow()

    def _swallow(self) -> None:
        """After a refusal, take what the client still sends (at most SWALLOW bytes) before the
        connection closes, as Tomcat does: closing on unread bytes resets the connection, and
        a client still sending its body would lose the answer."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            left = SWALLOW
            while left > 0 and (data := self.rfile.read1(min(left, 65536))):
                left -= len(data)
        except OSError:
            pass  # the client left, or went silent: nothing more to wait for

    def _dispatch(self, req: Request, route: Route | None, params: dict[str, str], path_known: bool) -> Response:
        if route is None:
            if path_known:
                return json_response({"status": 405, "error": "Method Not Allowed", "path": req.path}, 405)
            return not_found(req.path)
        req.params = params
        try:
            return route.handler(req)
        except Exception as exc:  # a handler bug must show up, not hang the client
            return text_response(f"internal error: {exc!r}", 500)

    def _body(self, route: Route | None, headers: dict[str, str]) -> bytes:
        """The request's body, once the request passed every check; raises _Refused."""
        length = self._framing()
        self._check_browser(route, headers)
        if route is not None:
            if route.body_types and length != 0 and not _body_type_ok(headers.get("content-type", ""),
                                                                       route.body_types):
                ctype = _media_type(headers.get("content-type", "")) or "none"
                raise _Refused(refusal(415, f"Content-Type '{ctype}' is not supported here"))
        limit = route.max_body if route is not None else MAX_BODY
        if length is not None and length > limit:
            raise _Refused(text_response('"Payload too large"', 413, "application/json"))
        if self._expects_continue:
            self._expects_continue = False
            self.send_response_only(100)
            self.end_headers()
        if length is None:
            return self._read_chunked(limit)
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            raise ConnectionAbortedError("the client left in the middle of its body")
        return body

    def _framing(self) -> int | None:
        """The body's Content-Length, or None for a chunked body; _Refused for anything else."""
        encodings = self.headers.get_all("Transfer-Encoding") or []
        lengths = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        if encodings:
            if lengths:
                raise _Refused(text_response("Content-Length with Transfer-Encoding", 400))
            if ",".join(encodings).strip().lower() != "chunked":
                raise _Refused(text_response("Transfer-Encoding other than chunked", 501))
            return None
        if not lengths:
            return 0
        if len(lengths) > 1 or not re.fullmatch(r"[0-9]{1,18}", next(iter(lengths))):
            raise _Refused(text_response("Invalid Content-Length", 400))
        return int(next(iter(lengths)))

    def _check_browser(self, route: Route | None, headers: dict[str, str]) -> None:
        """Refuse what a page of another site may make a browser send (see the module's doc)."""
        host, origin, site = headers.get("host"), headers.get("origin"), headers.get("sec-fetch-site")
        for_browsers = origin is not None or site is not None or (route is not None and route.for_browsers)
        if for_browsers and host is not None and not local_host(host, self.server.allowed_hosts):
            raise _Refused(refusal(403, f"Host {host!r} is not allowed (iotlink devserver --allow-host NAME)"))
        if origin is not None and origin.lower() != f"{self.server.scheme}://{host}".lower():
            raise _Refused(refusal(403, f"Cross-origin request from {origin!r} refused"))
        visit = self.command == "GET" and headers.get("sec-fetch-mode") == "navigate" \
            and headers.get("sec-fetch-dest") == "document"
        if site not in (None, "same-origin", "none") and not visit:
            raise _Refused(refusal(403, f"Request from a page of another site ({site}) refused"))

    def _read_chunked(self, limit: int) -> bytes:
        body = bytearray()
        while True:
            field = self._line().partition(b";")[0].strip()
            if not re.fullmatch(rb"[0-9A-Fa-f]{1,8}", field):
                raise _Refused(text_response("Invalid chunk size", 400))
            size = int(field, 16)
            if size == 0:
                break
            if len(body) + size > limit:
                raise _Refused(text_response('"Payload too large"', 413, "application/json"))
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                raise ConnectionAbortedError("the client left in the middle of its body")
            body += chunk
            if self._line().strip():
                raise _Refused(text_response("Chunk longer than its size", 400))
        for _ in range(MAX_TRAILERS):
            if not self._line().strip():
                return bytes(body)
        raise _Refused(text_response("Too many trailer fields", 400))

    def _line(self) -> bytes:
        line = self.rfile.readline(MAX_LINE + 1)
        if not line.endswith(b"\n"):
            if len(line) > MAX_LINE:
                raise _Refused(text_response("Line too long in a chunked body", 400))
            raise ConnectionAbortedError("the client left in the middle of its body")
        return line

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
    scheme = "http"

    def __init__(self, address, router: Router, record: Callable[[Exchange], None],
                 allowed_hosts: Iterable[str] = (), read_timeout_s: float = READ_TIMEOUT_S,
                 answered: Callable[[Exchange], None] = lambda exchange: None):
        """allowed_hosts: host names (besides IP addresses and localhost) a browser may use."""
        self.router = router
        self.record = record  # each request as it arrives
        self.answered = answered  # each request once its answer is known, before it is sent
        self.allowed_hosts = frozenset(name.lower() for name in allowed_hosts)
        self.read_timeout_s = read_timeout_s
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
        self.scheme = "https"

    def start(self) -> threading.Thread:
        # Polling every 50 ms: stop() returns at once rather than after the default 0.5 s.
        thread = threading.Thread(target=self.serve_forever, args=(0.05,), name="devserver", daemon=True)
        thread.start()
        return thread
