# A persistent HTTP/1.1 connection: keep-alive (no TCP/TLS handshake per request), chunked
# replies, and TLS that verifies the server when CA data is given. Same response shape as
# `requests` (status_code, headers, raw, close), so http.read_body/read_into work on it.
#
# Every request has a deadline, whatever the server does: the reply is read from a non-blocking
# socket, each read after http.wait().
import socket

from micropython import const

from iotlink import http, unload
from iotlink.errors import ProtocolError, TLSError

MAX_LINE = 128  # the bytes kept of a line: the values iotlink parses (status, lengths) are short
_MAX_LINE_BYTES = const(4096)  # a longer line is not from the API we speak
_MAX_HEADERS = const(48)
_HEX = b"0123456789abcdefABCDEF"
_RX = const(256)  # a connection's reply buffer: a usual head in one read


# A reply is read through a buffer its reader owns (a Connection, a Stream): `_rx`, a bytearray,
# and `_rxv`, a view of it, with `_at`:`_end` the bytes read and not yet taken. One read takes a
# usual head whole, where readline() on a socket makes a system call per byte; the bytes read
# past the head go to the body first. The reader's `_sock` is non-blocking: each read comes
# after its `_wait()`.
def rx_buffer(r):
    r._rx = bytearray(_RX)
    r._rxv = memoryview(r._rx)
    r._at = r._end = 0


def read_into(r, view):
    # Reply bytes into view: those the buffer holds first, then what the socket has (0 at EOF).
    at = r._at
    if at < r._end:
        n = min(r._end - at, len(view))
        view[:n] = r._rxv[at : at + n]
        r._at = at + n
        return n
    n = None
    while n is None:  # None: readable, but not a whole TLS record yet
        r._wait()
        n = r._sock.readinto(view)
    return n


def read_line(r):
    # The next line, cut to its first MAX_LINE bytes (the rest of a longer line is read and
    # dropped); b"" at EOF.
    line = b""
    seen = 0
    while True:
        if r._at == r._end:
            r._at = r._end = 0
            r._end = read_into(r, r._rxv)
            if not r._end:
                return line
        at = r._at
        end = r._rx.find(b"\n", at, r._end) + 1  # 0: the line goes on in the next read
        r._at = end or r._end
        line += r._rxv[at : r._at][: MAX_LINE - len(line)]
        if end:
            return line
        seen += r._at - at
        if seen > _MAX_LINE_BYTES:
            raise ProtocolError("line too long")


def chunk_size(line):
    # The size a chunk header line gives: hex digits only (not "-1", "0x10", "+5"), 8 at most.
    digits = line.split(b";")[0].strip()
    if not 0 < len(digits) <= 8 or digits.lstrip(_HEX):
        raise ProtocolError("bad chunk header")
    return int(digits, 16)


def split_url(url):
    # "https://host:port/path" -> (scheme, host, port, path)
    scheme, _, rest = url.partition("://")
    if scheme not in ("http", "https") or not rest:
        raise ValueError("URL must start with http:// or https://")
    hostport, slash, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    port = int(port) if port else (443 if scheme == "https" else 80)
    return scheme, host, port, slash + path


def tls_context(cadata):
    # For https only, once per connection: the certificate code is in RAM for that moment.
    from iotlink import http_tls_once

    try:
        return http_tls_once.context(cadata)
    finally:
        unload("http_tls_once")


class Response:
    # One reply: its status, the headers kept, and its body, read no further than its end
    # (Content-Length or chunked framing). `raw` is the response itself: the shape of `requests`.

    def __init__(self, conn, status, headers, length, chunked):
        self.status_code = status
        self.headers = headers
        self.raw = self
        self._conn = conn
        self._left = length  # bytes left in the body (or the current chunk); None: until EOF
        self._chunked = chunked
        self.done = length == 0 and not chunked

    def close(self):
        # Keep the socket for the next request only when this body was read to its end and
        # nothing came after it.
        conn = self._conn
        if not (self.done and conn._reusable and conn._at == conn._end):
            conn.close()

    def _next_chunk(self):
        line = read_line(self._conn)
        if line == b"\r\n":  # the CRLF closing the previous chunk
            line = read_line(self._conn)
        if not line:
            raise ProtocolError("reply truncated")
        size = chunk_size(line)
        if size == 0:
            for _ in range(_MAX_HEADERS):
                if len(read_line(self._conn)) <= 2:
                    break  # trailers, up to the blank line (or EOF)
            else:
                raise ProtocolError("too many trailer lines")
            self.done = True
        self._left = size

    def readinto(self, buf):
        if self.done:
            return 0
        if self._chunked and not self._left:
            self._next_chunk()
            if self.done:
                return 0
        view = memoryview(buf)
        if self._left is not None and self._left < len(buf):
            view = view[: self._left]
        n = read_into(self._conn, view)
        if not n:
            if self._left is not None:
                raise ProtocolError("reply truncated")
            self.done = True
            return 0
        if self._left is not None:
            self._left -= n
            if not self._left and not self._chunked:
                self.done = True
        return n


class Connection:
    def __init__(self, base_url, timeout=10, cadata=None):
        self.scheme, self.host, self.port, path = split_url(base_url)
        self._origin = base_url[: len(base_url) - len(path)]  # "scheme://host[:port]"
        self.timeout = timeout
        self._cadata = cadata
        self._ctx = None
        self._addr = None  # resolved once: getaddrinfo has no timeout
        self._sock = None
        self._tcp = None
        self._poll = None
        self._timeout_ms = self._until = 0  # the request's: see _wait()
        self._reusable = False
        rx_buffer(self)
        default = 443 if self.scheme == "https" else 80
        self._host = self.host if self.port == default else "%s:%d" % (self.host, self.port)

    def _connect(self, timeout):
        if self._addr is None:
            self._addr = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0][-1]
        tcp = socket.socket()
        tcp.settimeout(timeout)
        try:
            tcp.connect(self._addr)
            sock = tcp
            if self.scheme == "https":
                if self._ctx is None:
                    self._ctx = tls_context(self._cadata)
                try:
                    sock = self._ctx.wrap_socket(tcp, server_hostname=self.host)
                except ValueError as e:  # mbedTLS reports verification failures this way
                    raise TLSError(str(e).strip())
        except Exception:
            tcp.close()
            raise
        self._tcp = tcp  # TLS sockets have no settimeout: the TCP socket's timeout applies
        self._poll = http.watch(sock)
        return sock

    def close(self):
        if self._sock:
            self._sock.close()
        self._sock = self._poll = None
        self._at = self._end = 0
        self._reusable = False

    def _wait(self):
        http.wait(self._poll, self._until, self._timeout_ms)

    def open(self, method, url, body=None, timeout=None, headers=None, keep=http.keep_header):
        # keep(line, headers) picks the reply headers to keep; it must keep http.keep_header's.
        timeout = timeout or self.timeout
        if not url.startswith(self._origin):
            raise ValueError("URL is not on this connection's server")
        # Formatted as bytes, no str to encode (MicroPython's bytes % takes a str as its UTF-8).
        # The body is joined to the head: as a second write, it would wait out Nagle's delay.
        path = url[len(self._origin) :] or "/"
        request = b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, path, self._host)
        if body is not None:
            request += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        for k in headers or ():
            request += b"%s: %s\r\n" % (k, headers[k])
        request += b"\r\n"
        if body:
            request += body
        # A kept-alive socket may have been closed by the server while idle: if nothing at
        # all comes back on it, the request was not processed and goes once more on a new one.
        for attempt in (0, 1):
            reused = self._sock is not None
            try:
                if not reused:
                    self._sock = self._connect(timeout)
                self._timeout_ms = max(1, int(timeout * 1000))
                self._until = http.deadline(self._timeout_ms)
                self._tcp.settimeout(timeout)  # blocking, for the request
                self._sock.write(request)
                self._sock.setblocking(False)  # and not for the reply: see http.wait()
                status_line = read_line(self)
                if not status_line and reused and not attempt:
                    self.close()
                    continue
                return self._read_head(status_line, method == "HEAD", keep)
            except OSError as e:
                self.close()
                if reused and not attempt and e.args and e.args[0] not in http.TIMEOUT_ERRNOS:
                    continue
                raise http.network_error(e)
            except Exception:
                self.close()
                raise

    def _read_head(self, status_line, head_only, keep):
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ProtocolError("bad status line")
        try:
            status = int(parts[1])
        except ValueError:
            status = 0
        if not 100 <= status <= 999 or len(parts[1]) != 3:
            raise ProtocolError("bad status line")
        headers = {}
        keep_alive = parts[0] == b"HTTP/1.1"
        for _ in range(_MAX_HEADERS):
            line = read_line(self)
            if not line or line[0] in b"\r\n":  # EOF, or the blank line ending the head
                break
            keep(line, headers)
        else:
            raise ProtocolError("too many header lines")
        connection = headers.pop("connection", b"").strip().lower()
        if connection == b"close":
            keep_alive = False
        elif connection == b"keep-alive":
            keep_alive = True
        chunked = b"chunked" in headers.pop("transfer-encoding", b"").lower()
        length = None if chunked else http.length(headers)
        if head_only:  # the headers describe the body a GET would have; none follows
            chunked, length = False, 0
        if length is None and not chunked:
            keep_alive = False  # the body ends when the server closes
        self._reusable = keep_alive
        return Response(self, status, headers, length, chunked)

    def request(self, method, url, body=None, timeout=None, limit=http.MAX_BODY, headers=None):
        resp = self.open(method, url, body, timeout, headers)
        data = http.read_body(resp, limit)
        return resp.status_code, data, resp.headers
