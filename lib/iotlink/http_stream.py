# A never-ending HTTP reply read as a stream of JSON documents (thethings.iO's subscribe):
# a raw-socket client that de-chunks whatever bytes have arrived, and a splitter that cuts the
# documents the server concatenates with no delimiter. Both keep their state between reads, so
# a read that times out anywhere (mid chunk header, mid document) loses nothing.
import socket

from iotlink import http
from iotlink.http_conn import MAX_LINE, chunk_size, read_line, rx_buffer, split_url, tls_context
from iotlink.errors import ConnectionFailed, ProtocolError, Timeout, TLSError

MAX_DOC = 4096  # a larger document is not a thethings.iO update: drop the channel
_BLANK = b" \t\r\n"
_OPEN = b"{["
_CLOSE = b"}]"


class Splitter:
    # Cuts concatenated JSON objects and arrays apart with a depth counter that ignores
    # brackets inside strings (and escaped quotes inside those), in a fixed buffer.

    def __init__(self, cap=MAX_DOC):
        self._buf = bytearray(cap)
        self.reset()

    def reset(self):
        self._n = 0
        self._depth = 0
        self._in_string = False
        self._escaped = False

    def feed(self, data, docs):
        # Append each document completed by `data` to `docs` (as bytes); a partial one waits
        # for the next feed. Raises ProtocolError on bytes outside a document or an overflow.
        buf = self._buf
        for b in data:
            if not self._depth:
                if b in _OPEN:
                    buf[0] = b
                    self._n = 1
                    self._depth = 1
                elif b not in _BLANK:
                    raise ProtocolError("stream: byte outside a JSON document")
                continue
            if self._n == len(buf):
                self.reset()
                raise ProtocolError("stream: document over %d bytes" % len(buf))
            buf[self._n] = b
            self._n += 1
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif b == 0x5C:  # backslash
                    self._escaped = True
                elif b == 0x22:  # quote
                    self._in_string = False
            elif b == 0x22:
                self._in_string = True
            elif b in _OPEN:
                self._depth += 1
            elif b in _CLOSE:
                self._depth -= 1
                if not self._depth:
                    docs.append(bytes(buf[: self._n]))
                    self._n = 0


class Stream:
    # One GET whose reply body is read as it comes: open(), then read() until close().

    def __init__(self, url, timeout=10, cadata=None, cap=MAX_DOC):
        self.scheme, self.host, self.port, self.path = split_url(url)
        self.timeout = timeout
        self._cadata = cadata
        self._splitter = Splitter(cap)
        rx_buffer(self)  # the head's lines are read through it, then the body
        self._line = bytearray()
        self._sock = None
        self._tcp = None
        self.status = None
        self.headers = None
        self._broken = None  # the error a read found after documents it still returned
        self._poll = None
        self._timeout_ms = max(1, int(timeout * 1000))
        self._until = 0  # the head's and an error body's deadline: see _wait()

    def open(self, headers=None):
        # Connect, send the request and read the status and headers (each step bounded by
        # `timeout`, the head by http.DEADLINE timeouts); returns the status. The body is left
        # for read() / read_rest().
        addr = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0][-1]
        self._tcp = socket.socket()
        self._tcp.settimeout(self.timeout)
        try:
            self._tcp.connect(addr)
            self._sock = self._tcp
            if self.scheme == "https":
                try:
                    self._sock = tls_context(self._cadata).wrap_socket(
                        self._tcp, server_hostname=self.host
                    )
                except ValueError as e:  # mbedTLS reports verification failures this way
                    raise TLSError(str(e).strip())
            head = "GET %s HTTP/1.1\r\nHost: %s\r\n" % (self.path, self.host)
            for k in headers or ():
                head += "%s: %s\r\n" % (k, headers[k])
            self._sock.write((head + "\r\n").encode())
            # Non-blocking from here: the head under a deadline, the body polled (_receive).
            self._sock.setblocking(False)
            self._poll = http.watch(self._sock)
            self._at = self._end = 0
            self._until = http.deadline(self._timeout_ms)
            self._read_head()
        except OSError as e:
            self.close()
            raise http.network_error(e)
        except Exception:
            self.close()
            raise
        return self.status

    def _read_head(self):
        parts = read_line(self).split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ProtocolError("bad status line")
        try:
            self.status = int(parts[1])
        except ValueError:
            raise ProtocolError("bad status line")
        self.headers = {}
        for _ in range(48):
            line = read_line(self)
            if line in (b"\r\n", b"\n", b""):
                break
            http.keep_header(line, self.headers)
        else:
            raise ProtocolError("too many header lines")
        self._chunked = b"chunked" in self.headers.get("transfer-encoding", b"").lower()
        length = self.headers.get("content-length")
        # Chunked: bytes left in the current chunk (0: a size line comes next).
        # Otherwise: bytes left in the body, or None for "until the server closes".
        self._left = 0 if self._chunked else http.length(self.headers)
        self._after_data = False
        self.done = self._left == 0 and not self._chunked

    def close(self):
        if self._sock:
            self._sock.close()
        elif self._tcp:
            self._tcp.close()
        self._sock = self._tcp = self._poll = None

    def _wait(self):
        http.wait(self._poll, self._until, self._timeout_ms)

    def _receive(self, wait_s):
        # Whatever bytes have arrived, waiting up to wait_s for the first; Timeout when none did.
        # The socket is non-blocking and polled: a blocking readinto() waits for a full buffer.
        # The body bytes read with the head come first, with no wait.
        if self._at < self._end:
            held = self._rxv[self._at : self._end]
            self._at = self._end
            return held
        for _ in self._poll.ipoll(max(int(wait_s * 1000), 1)):
            break
        else:
            raise Timeout("no data")
        try:
            n = self._sock.readinto(self._rx)
        except OSError as e:
            raise http.network_error(e)
        if n is None:  # readable, but not a whole TLS record yet
            return self._rxv[:0]
        if not n:
            raise ProtocolError("stream truncated" if self._chunked or self._left else "stream ended")
        return self._rxv[:n]

    def _body(self, data, sink):
        # Pass the body bytes in `data` to sink(memoryview), taking the chunk framing away.
        if not self._chunked:
            if self._left is not None:
                data = data[: self._left]
                self._left -= len(data)
                self.done = not self._left
            sink(data)
            return
        i = 0
        while i < len(data) and not self.done:
            if self._left:
                take = min(self._left, len(data) - i)
                sink(data[i : i + take])
                i += take
                self._left -= take
                self._after_data = not self._left
                continue
            b = data[i]
            i += 1
            if b != 0x0A:
                if len(self._line) >= MAX_LINE:
                    raise ProtocolError("bad chunk header")
                self._line.append(b)
                continue
            line = bytes(self._line).strip()
            self._line = bytearray()
            if self._after_data:  # the CRLF that closes a chunk's data
                self._after_data = False
                if line:
                    raise ProtocolError("bad chunk framing")
                continue
            self._left = chunk_size(line)
            self.done = not self._left  # the last chunk; trailers are not read

    def read(self, wait_s):
        # The documents completed by the bytes that arrive within wait_s (maybe none).
        # Timeout: no byte at all. ProtocolError: the stream ended, broke its framing or a
        # document overflowed; the documents before that are still returned, the error comes
        # on the next read.
        if self._broken:
            raise self._broken
        data = self._receive(wait_s)
        docs = []
        try:
            self._body(data, lambda part: self._splitter.feed(part, docs))
            if self.done:
                raise ProtocolError("stream ended")
        except ProtocolError as e:
            if not docs:
                raise
            self._broken = e
        return docs

    def read_rest(self, limit=512):
        # The rest of a (short) body, e.g. an error reply: at most `limit` bytes, within
        # http.DEADLINE timeouts.
        out = bytearray()

        def keep(part):
            out.extend(part[: limit - len(out)])

        self._until = http.deadline(self._timeout_ms)
        while not self.done and len(out) < limit:
            try:
                if self._at == self._end:  # nothing read with the head is left
                    self._wait()
                self._body(self._receive(0), keep)
            except (ProtocolError, Timeout, ConnectionFailed):
                break  # the server closed, went quiet or dripped: that was the body
        return bytes(out)
