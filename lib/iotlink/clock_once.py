# Setting the clock (clock.py) from NTP or from the Date header of the server's replies. The app
# loads this module for a sync (once a day, or until one succeeds) and unloads it after.
import time

from micropython import const

from iotlink import http, http_transport
from iotlink.clock import EPOCH_OFFSET, local_ms, set_unix_ms
from iotlink.errors import IotlinkError

_MONTHS = const(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"))


def days_from_civil(y, m, d):
    # Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def unix_seconds(y, m, d, hh=0, mm=0, ss=0):
    return days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss


def parse_http_date(value):
    # "Sun, 06 Nov 1994 08:49:37 GMT" (RFC 9110 IMF-fixdate) -> unix seconds.
    parts = value.split()
    try:
        hh, mm, ss = (int(x) for x in parts[4].split(":"))
        return unix_seconds(int(parts[3]), _MONTHS.index(parts[2]) + 1, int(parts[1]), hh, mm, ss)
    except (IndexError, ValueError):
        raise ValueError("not an HTTP date")


def sync_ntp(host=None, timeout=5):
    # Where the port has ntptime and NTP is reachable; returns True when the clock was set.
    try:
        import ntptime
    except ImportError:
        return False
    if host:
        ntptime.host = host
    ntptime.timeout = timeout
    try:
        seconds = ntptime.time()  # since the port's epoch
    except (OSError, OverflowError):
        return False
    set_unix_ms((seconds + EPOCH_OFFSET) * 1000)
    return True


def _keep_date(line, headers):
    # The headers a transport keeps anyway (framing), and Date: other replies leave it out.
    http.keep_header(line, headers)
    if line[:5].lower() == b"date:":
        headers["date"] = line[5:]


def _server_seconds(url, timeout, transport):
    # The server's Date in unix seconds, or None.
    try:
        resp = transport.open("HEAD", url, None, timeout, None, _keep_date)
    except IotlinkError:
        return None
    resp.close()
    date = resp.headers.get("date")
    try:
        return parse_http_date(date.decode().strip()) if date else None
    except ValueError:
        return None


def sync_http(url, timeout=10, probes=12, transport=None):
    # From the Date header of the server's replies; True when set. Date has whole seconds, so
    # the server is asked again (every 100 ms, `probes` times at most) until its second turns:
    # that moment is known to a round trip. If it does not turn, the middle of the second.
    # transport: a client's kept-alive connection saves a handshake per probe.
    transport = transport or http_transport.transport(url, timeout, False, None)
    first = _server_seconds(url, timeout, transport)
    if first is None:
        return False
    seconds = first
    for _ in range(probes):
        time.sleep_ms(100)
        sent = local_ms()
        seconds = _server_seconds(url, timeout, transport)
        if seconds is None:
            break
        if seconds != first:
            set_unix_ms(seconds * 1000 + (local_ms() - sent) // 2)
            return True
    set_unix_ms(first * 1000 + 500)
    return True


def sync(server, ntp_host=None, timeout=5, transport=None):
    # NTP first (millisecond precision), then the server's HTTP Date header; True when set.
    # transport: a client's kept-alive connection saves a handshake per Date probe.
    return sync_ntp(ntp_host, timeout) or sync_http(server, timeout, transport=transport)
