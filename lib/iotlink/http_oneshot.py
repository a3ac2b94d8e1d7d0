# The transport of one request per connection: the port's frozen `requests` (HTTP/1.0, the
# connection closed after each reply). http_transport.py loads it for a client built without
# keep-alive or CA data; the device loop keeps its connection alive and never loads it.
try:
    import requests
except ImportError:
    import urequests as requests

from iotlink.errors import ProtocolError
from iotlink import http
from iotlink.http import MAX_BODY, keep_header, network_error, read_body

JSON_HEADERS = {"Content-Type": "application/json"}


class _Body:
    # The reply's body, read from the socket `requests` left open, within http.DEADLINE timeouts
    # (http.wait). The status and headers `requests` reads itself, each read within the timeout.
    def __init__(self, sock, timeout):
        sock.setblocking(False)
        self._sock = sock
        self._poll = http.watch(sock)
        self._timeout_ms = max(1, int(timeout * 1000))
        self._until = http.deadline(self._timeout_ms)

    def readinto(self, buf):
        n = None
        while n is None:  # None: readable, but not a whole TLS record yet
            http.wait(self._poll, self._until, self._timeout_ms)
            n = self._sock.readinto(buf)
        return n

    def close(self):
        self._sock.close()


def open(method, url, body=None, timeout=10, headers=None, keep=keep_header):
    # Send a request and return the response with its headers read and the body unread.
    # The caller owns the response: read it with http.read_body() or close() it.
    # keep(line, headers) picks the reply headers to keep.
    hdrs = JSON_HEADERS if body is not None else {}
    if headers:
        hdrs = dict(hdrs)
        hdrs.update(headers)
    try:
        resp = requests.request(
            method, url, data=body, headers=hdrs, timeout=timeout, parse_headers=keep
        )
        resp.raw = _Body(resp.raw, timeout)
        return resp
    except OSError as e:
        raise network_error(e)
    except (ValueError, IndexError, NotImplementedError) as e:
        # Bad status line, chunked reply to HTTP/1.0, relative redirect: not this API.
        raise ProtocolError("bad response (%s)" % e)


def request(method, url, body=None, timeout=10, limit=MAX_BODY, headers=None):
    # One exchange: returns (status, body bytes, headers).
    resp = open(method, url, body, timeout, headers)
    data = read_body(resp, limit)
    return resp.status_code, data, resp.headers
