# What iotlink's two transports share (http_transport.py picks one): bounded body reads, JSON
# bodies, error mapping, the reply headers kept, the deadline of a reply.
import errno
import json
import select
import time

from micropython import const

from iotlink.errors import ConnectionFailed, HTTPError, ProtocolError, Timeout

MAX_BODY = 8192  # default cap on a response body held in RAM
_MAX_NESTING = const(64)  # arrays and objects in arrays and objects: no API iotlink speaks goes near

# Only the headers iotlink acts on are kept, their values as raw bytes (int() and .strip() take
# them as they are), so a server cannot fill the heap with headers. Looked up by name length
# first: the other headers cost no allocation at all.
_KEPT_HEADERS = {
    len(name): (name, name.encode())
    for name in ("content-length", "retry-after", "connection", "transfer-encoding")
}
TIMEOUT_ERRNOS = (errno.ETIMEDOUT, errno.EAGAIN)
DEADLINE = 3  # a reply ends within this many times the request's timeout, however it comes


def watch(sock):
    # A poll object that tells when the non-blocking socket has bytes for wait().
    poll = select.poll()
    poll.register(sock, select.POLLIN)
    return poll


def deadline(timeout_ms):
    # The ticks by which the reply to a request sent now must have come whole.
    return time.ticks_add(time.ticks_ms(), DEADLINE * timeout_ms)


def wait(poll, until, timeout_ms):
    # Until the socket `poll` watches has bytes: timeout_ms at most, and never past the ticks
    # `until`; Timeout otherwise. Replies are read so, non-blocking: a blocking read waits for
    # its whole buffer, and a server sending a byte now and then would hold it for hours.
    left = time.ticks_diff(until, time.ticks_ms())
    if left > 0:
        for _ in poll.ipoll(min(timeout_ms, left)):  # ipoll: no list allocated, as poll() would
            return
    if left < timeout_ms:
        raise Timeout("no whole reply within %d s" % (DEADLINE * timeout_ms // 1000))
    raise Timeout("timed out")


def keep_header(line, headers):
    i = line.find(b":")
    kept = _KEPT_HEADERS.get(i)
    if kept and line[:i].lower() == kept[1]:
        headers[kept[0]] = line[i + 1 :]


def network_error(exc):
    # Map an OSError from the socket layer to iotlink's own exception types.
    code = exc.args[0] if exc.args else 0
    if code in TIMEOUT_ERRNOS:
        return Timeout("timed out")
    return ConnectionFailed("connection failed (errno %d)" % (code if isinstance(code, int) else 0))


def dumps(obj):
    # JSON as bytes: Content-Length must count bytes, not characters.
    return json.dumps(obj).encode()


def loads(body):
    # JSON whatever the Content-Type said (ThingsBoard answers some calls as text/plain).
    try:
        return json.loads(body)
    except ValueError:
        raise ProtocolError("reply is not JSON")
    except MemoryError:
        # The parser runs out of room on arrays nested a thousand deep, whatever the free heap:
        # the reply's fault, not the board's (the loop resets a board short of memory).
        if _nesting(body) > _MAX_NESTING:
            raise ProtocolError("reply is nested too deeply")
        raise


def _nesting(body):
    # How deep arrays and objects nest in a JSON text (brackets inside strings do not count).
    depth = deepest = 0
    quoted = escaped = False
    for b in body:
        if escaped:
            escaped = False
        elif quoted:
            escaped = b == 0x5C  # backslash
            quoted = b != 0x22  # quote
        elif b == 0x22:
            quoted = True
        elif b == 0x5B or b == 0x7B:  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif b == 0x5D or b == 0x7D:  # ] }
            depth -= 1
    return deepest


def length(headers):
    # The reply's Content-Length as an int, None without one; ProtocolError for anything but
    # digits ("abc", "0x10", "-1": never a negative or absurd allocation).
    value = headers.get("content-length")
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or len(value) > 9:
        raise ProtocolError("bad Content-Length")
    return int(value)


_SAFE = const(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def quote(value):
    # Percent-encode a query or path value. Keys and versions are mostly safe as they are: then
    # no copy at all, else one bytearray (not a string per character).
    value = str(value)
    raw = value.encode()
    for b in raw:
        if b not in _SAFE:
            break
    else:
        return value
    out = bytearray()
    for b in raw:
        if b in _SAFE:
            out.append(b)
        else:
            out.extend(b"%%%02X" % b)
    return out.decode()


def read_into(resp, buf):
    # Fill buf from the response body; return how many bytes arrived before EOF. A slice of the
    # view only when a read came short: each is an object on the heap.
    mv = memoryview(buf)
    got = 0
    try:
        while got < len(buf):
            n = resp.raw.readinto(mv[got:] if got else mv)
            if not n:
                break
            got += n
    except OSError as e:
        raise network_error(e)
    return got


def read_body(resp, limit=MAX_BODY):
    # Read the whole body (at most `limit` bytes) and close the response.
    try:
        size = length(resp.headers)
        if size is not None:
            if size > limit:
                raise ProtocolError("reply of %d bytes exceeds the %d byte limit" % (size, limit))
            buf = bytearray(size)
            got = read_into(resp, buf)
            if got < size:
                raise ProtocolError("reply truncated at %d of %d bytes" % (got, size))
            return buf
        # No length: the body ends where the server closes the connection (or the last chunk).
        # buf grows in place when nothing was allocated after it: no slice for a full part.
        buf = bytearray()
        part = bytearray(256)
        while True:
            got = read_into(resp, part)
            try:
                buf.extend(part if got == len(part) else memoryview(part)[:got])
            except MemoryError:
                # Growing buf takes its size again in one piece: a reply the heap cannot hold is
                # the reply's fault (the loop resets a board short of memory, not of this).
                raise ProtocolError("reply exceeds the free heap at %d bytes" % len(buf))
            if len(buf) > limit:
                raise ProtocolError("reply exceeds the %d byte limit" % limit)
            if got < len(part):
                return buf
    finally:
        resp.close()


def check(status, body):
    # Raise HTTPError with the server's own message for any non-2xx reply.
    if 200 <= status < 300:
        return
    raise HTTPError(status, error_message(body))


def error_message(body):
    # Error bodies come as JSON objects, quoted JSON strings, plain text or nothing.
    if not body:
        return ""
    try:
        msg = loads(body)
    except ProtocolError:
        try:
            return str(bytes(body[:200]), "utf-8")
        except UnicodeError:
            return "(binary reply)"
    if isinstance(msg, dict):
        for key in ("message", "errorMsg", "error"):
            if key in msg:
                return str(msg[key])
    return str(msg)[:200]
