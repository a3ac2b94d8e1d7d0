# thethings.iO REST API v2 for one thing (its token in the path): activation, write with geo and
# client time, read paging past the server's page size, the $settings and $geo magic resources,
# the server's date, and the subscription channel.
import random
import time

from iotlink import http
from iotlink.clock import EPOCH_OFFSET
from iotlink.errors import ConnectionFailed, HTTPError, ProtocolError, ProvisionError, Timeout
from iotlink.http import error_message
from iotlink.http_stream import Stream
from iotlink.http_transport import transport

PAGE = 100  # values per read request: little RAM, and under both documented maxima (100, 1000)
READ_LIMIT = 16384  # bytes of one read reply
ECHO_MS = 5000  # how long a value this thing wrote may come back on its channel as an echo
MAX_ECHOES = 16
_EPOCH_2010 = 1262304000  # a client time before this means the clock was never set
_KEY_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"


def retryable(status):
    # 403 is also thethings.iO's rate limit; 429 and 5xx say "later". Anything else is final.
    return status in (403, 429) or status >= 500


def check_key(key):
    # Letters, digits, ".", "-", "_"; "$" only to start a magic resource ($geo, $settings[.path]).
    if not isinstance(key, str) or not key:
        raise ValueError("a key is a non-empty string")
    name = key[1:] if key[0] == "$" else key
    for c in name.encode():
        if c not in _KEY_CHARS:
            raise ValueError("key %r: only letters, digits, '.', '-' and '_'" % key)
    if key[0] == "$" and name != "geo" and name != "settings" and not name.startswith("settings."):
        raise ValueError("key %r: unknown magic resource" % key)


def stamp(t):
    # Client time as the API wants it, "YYYYMMDDHHmmss" UTC, from unix seconds (what
    # clock.now_ms() // 1000 gives, whatever the port's epoch), a time tuple, or such a string.
    if isinstance(t, str):
        if len(t) == 14 and t.isdigit():
            return t
        raise ValueError("a datetime string is YYYYMMDDHHmmss")
    if isinstance(t, (int, float)):
        if t < _EPOCH_2010:
            raise ValueError("datetime before 2010: clock not set, or not unix seconds")
        t = time.gmtime(int(t) - EPOCH_OFFSET)  # ESP32's gmtime counts from 2000
    elif t[0] < 2010:
        raise ValueError("datetime before 2010: clock not set")
    return "%04d%02d%02d%02d%02d%02d" % tuple(t[:6])


def geo_point(geo):
    # (lat, long) or {"lat", "long"} -> the API's {"lat": .., "long": ..}, range-checked.
    if isinstance(geo, dict):
        geo = (geo.get("lat"), geo.get("long"))
    try:
        lat, long = float(geo[0]), float(geo[1])
    except (TypeError, ValueError, IndexError):
        raise ValueError("geo is (lat, long)")
    if not (-90 <= lat <= 90 and -180 <= long <= 180):
        raise ValueError("geo (lat, long) out of range")
    return {"lat": lat, "long": long}


def items(values, geo=None, datetime=None):
    # The request's "values" list: from a dict, or copies of {"key", "value"[, "geo"][, "datetime"]}
    # records; geo/datetime go on every value that has none of its own.
    if isinstance(values, dict):
        values = [{"key": k, "value": values[k]} for k in values]
    elif not isinstance(values, (list, tuple)):
        raise ValueError("values: a dict or a list of {key, value} records")
    out = []
    for v in values:
        if not isinstance(v, dict) or "key" not in v or "value" not in v:
            raise ValueError("each value is a {key, value} record")
        check_key(v["key"])
        if v["value"] is None:
            raise ValueError("value of %r is None" % v["key"])
        item = dict(v)
        if geo is not None and "geo" not in item:
            item["geo"] = geo
        if datetime is not None and "datetime" not in item:
            item["datetime"] = datetime
        if "geo" in item:
            item["geo"] = geo_point(item["geo"])
        if "datetime" in item:
            item["datetime"] = stamp(item["datetime"])
        out.append(item)
    if len(out) > 1 and any(i["key"][0] == "$" for i in out):
        raise ValueError("send one magic resource per request (the server reorders them)")
    return out


def _jitter(ms):
    # Up to 25 % more, so boards that failed together do not retry together.
    return ms + random.getrandbits(8) * ms // 1024


def exchange(conn, method, url, payload, timeout, policy, limit=http.MAX_BODY):
    # One request, repeated after a growing pause while the server pushes back; (status, body).
    # policy: retries, backoff_ms, max_backoff_ms (a TheThings or its class).
    body = None if payload is None else http.dumps(payload)
    pause = policy.backoff_ms
    attempt = 0
    while True:
        status, data, _ = conn.request(method, url, body, timeout, limit)
        if not retryable(status) or attempt >= policy.retries:
            return status, data
        time.sleep_ms(_jitter(pause))
        pause = min(pause * 2, policy.max_backoff_ms)
        attempt += 1


class TheThings:
    retries = 3  # repeats on 403/429/5xx before the error is raised; other errors raise at once
    backoff_ms = 1000  # first pause; doubles up to max_backoff_ms
    max_backoff_ms = 60000
    page = PAGE

    def __init__(self, server, token, timeout=10, keepalive=False, cadata=None):
        self._api = server.rstrip("/") + "/v2/"
        self._thing = self._api + "things/" + token
        self._token = token
        self.timeout = timeout
        self._cadata = cadata
        self.transport = transport(server, timeout, keepalive, cadata)  # the clock is set over it too
        self._stream = None
        self._keep_alive_ms = None
        self._heard = 0  # ticks_ms of the channel's last byte
        self._failures = 0  # channel failures in a row (backoff)
        self._echoes = []  # (key, value, ticks_ms) of recent writes the channel will echo
        self._seen = {}  # catch-up key -> (datetime, value) last given to the callback
        self._pending = []  # values read from the channel, not yet given to the callback

    # ---- plain calls --------------------------------------------------------------------
    def _check(self, status, data):
        # Errors carry the server's message, with the token taken out (some messages quote it).
        if not 200 <= status < 300:
            raise HTTPError(status, error_message(data).replace(self._token, "<token>"))

    def _request(self, method, url, payload=None, limit=http.MAX_BODY):
        status, data = exchange(self.transport, method, url, payload, self.timeout, self, limit)
        self._check(status, data)
        return data

    def write(self, values, geo=None, datetime=None, store=True, broadcast=True):
        # Raises on any failure (after retries for 403/429/5xx): nothing is lost, the caller
        # still holds the values. datetime: unix seconds, a time tuple, or "YYYYMMDDHHmmss".
        records = items(values, geo, datetime)
        if not records:
            return
        flags = []
        if not store:
            flags.append("store=false")  # deliver to subscribers only
        if not broadcast:
            flags.append("broadcast=false")  # store only
        url = self._thing + ("?" + "&".join(flags) if flags else "")
        # The echo is expected before the POST goes: the server may stream it to a subscriber
        # (another thread) before the POST has its reply. A write that fails is not echoed.
        echoes = []
        if broadcast:
            now = time.ticks_ms()
            echoes = [(r["key"], r["value"], now) for r in records]
            self._echoes = (self._echoes + echoes)[-MAX_ECHOES:]
        try:
            self._request("POST", url, {"values": records})
        except Exception:
            self._echoes = [e for e in self._echoes if not any(e is mine for mine in echoes)]
            raise

    def _resource(self, key, query="", limit=http.MAX_BODY):
        # The values of a resource as the server lists them; [] when it has none (404).
        check_key(key)
        status, data = exchange(
            self.transport, "GET", self._thing + "/resources/" + key + query, None, self.timeout, self, limit
        )
        if status == 404:
            return []
        self._check(status, data)
        reply = http.loads(data)
        if not isinstance(reply, list) or not all(isinstance(i, dict) and "value" in i for i in reply):
            raise ProtocolError("read reply is not a list of values")
        return reply

    def read(self, key, limit=10, start=None, end=None):
        # Up to `limit` values, newest first, in pages of `page`: each next page ends at the
        # oldest datetime so far, as the server wrote it (ISO, ms). Whether endDate is inclusive is
        # undocumented, so values at that boundary already held are skipped on (datetime, value).
        out = []
        start = "" if start is None else "&startDate=" + http.quote(self._date(start))
        end = None if end is None else self._date(end)
        boundary, held = None, []  # the oldest datetime so far, and the values held with it
        while len(out) < limit:
            want = min(limit - len(out) + len(held), self.page)  # room for the repeats
            query = "?limit=%d%s" % (want, start)
            if end is not None:
                query += "&endDate=" + http.quote(end)
            page = self._resource(key, query, READ_LIMIT)
            new = 0
            for item in page:
                if item.get("datetime") == boundary and item["value"] in held:
                    continue
                if len(out) < limit:
                    out.append(item)
                    new += 1
            if len(page) < want or not new or not page[-1].get("datetime"):
                break
            oldest = page[-1]["datetime"]
            if oldest != boundary:
                boundary, held = oldest, []
            held += [i["value"] for i in page if i.get("datetime") == oldest and i["value"] not in held]
            end = oldest
        return out

    @staticmethod
    def _date(t):
        return t if isinstance(t, str) else stamp(t)  # strings as given: ISO or YYYYMMDDHHmmss

    def settings(self, name=None):
        # All settings (a dict, {} when none), or one field in dot notation (None when unset).
        found = self._resource("$settings" if name is None else "$settings." + name)
        if not found:
            return {} if name is None else None
        return found[0]["value"]

    def set_settings(self, values):
        # Whether the server merges or replaces is undocumented: use set_setting for one field.
        if not isinstance(values, dict):
            raise ValueError("settings are a dict")
        self.write([{"key": "$settings", "value": values}])

    def set_setting(self, name, value):
        self.write([{"key": "$settings." + name, "value": value}])

    def geo(self):
        # The thing's position as (lat, long), or None when it has none.
        found = self._resource("$geo")
        if not found:
            return None
        value = found[0]["value"]
        coords = value.get("coordinates") if isinstance(value, dict) else value  # or [long, lat]
        try:
            return (float(coords[1]), float(coords[0]))
        except (TypeError, ValueError, IndexError):
            raise ProtocolError("$geo is not a GeoJSON point")

    def set_geo(self, lat, long):
        point = geo_point((lat, long))
        # GeoJSON: longitude first.
        self.write([{"key": "$geo", "value": {"type": "Point", "coordinates": [point["long"], point["lat"]]}}])

    def server_time(self, fmt="unix_timestamp"):
        # unix_timestamp: seconds since 1970 (int); UTC: the ISO string "2017-05-12T11:07:53.176Z".
        if fmt not in ("unix_timestamp", "UTC"):
            raise ValueError("fmt is unix_timestamp or UTC")
        data = self._request("GET", "%sutils/date?thingToken=%s&format=%s" % (self._api, self._token, fmt))
        reply = http.loads(data)
        date = reply.get("date") if isinstance(reply, dict) else None
        if fmt == "UTC":
            if not isinstance(date, str):
                raise ProtocolError("no UTC date in the reply")
            return date
        if not isinstance(date, (int, float)) or isinstance(date, bool):
            raise ProtocolError("no unix timestamp in the reply")
        return int(date)

    @classmethod
    def activate(cls, server, activation_code, product_id=None, timeout=10, cadata=None):
        # The thing token for an activation code. Save it at once: activate only once.
        body = {"activationCode": activation_code}
        if product_id is not None:
            body["productId"] = product_id
        # On the connection code the loop uses anyway, closed after (as ThingsBoard provisions).
        conn = transport(server, timeout, True, cadata)
        try:
            status, data = exchange(conn, "POST", server.rstrip("/") + "/v2/things/", body, timeout, cls)
        finally:
            conn.close()
        if status == 400:
            raise ProvisionError("error", error_message(data))
        if not 200 <= status < 300:
            raise HTTPError(status, error_message(data))
        reply = http.loads(data)
        token = reply.get("thingToken") if isinstance(reply, dict) else None
        if not isinstance(token, str) or not token:
            raise ProvisionError("error", "no thing token in the reply")
        return token

    # ---- subscription -------------------------------------------------------------------
    def subscribe(self, callback, keep_alive_ms=60000, duration_ms=None, keys=()):
        # Calls callback(key, value) for each value written by others, until the callback
        # returns a true value (-> True) or duration_ms has passed (-> False; None: forever).
        # The channel stays open between calls, so a device loop can call this with a short
        # duration each turn and miss nothing. It is dropped and opened again after backoff when
        # no byte came for 2 x keep_alive_ms, the stream broke, or the server pushed back. After
        # each (re)connect the latest value of each key in `keys` is read once and given to the
        # callback if it was not seen yet: the channel does not replay what it missed.
        # Raises at once on 400/401/404/410 and on an error document in the stream.
        start = time.ticks_ms()
        while True:
            while self._pending:
                if self._deliver(self._pending.pop(0), callback, keys):
                    return True
            left = None if duration_ms is None else duration_ms - time.ticks_diff(time.ticks_ms(), start)
            if left is not None and left <= 0:
                return False
            pause = None
            try:
                if self._stream is None or self._keep_alive_ms != keep_alive_ms:
                    self._open(keep_alive_ms)
                    self._catch_up(keys)
                    continue
                self._listen(left)
            except HTTPError as e:
                self.close()
                if not retryable(e.status):
                    raise
                pause = self.max_backoff_ms if e.status == 429 else self._backoff()
            except (Timeout, ConnectionFailed, ProtocolError):
                self.close()
                pause = self._backoff()
            if pause is not None:
                pause = _jitter(pause)
                time.sleep_ms(pause if left is None else min(pause, left))

    def close(self):
        # Close the subscription channel (the next subscribe opens it again).
        if self._stream:
            self._stream.close()
        self._stream = None

    def _backoff(self):
        self._failures += 1
        return min(self.backoff_ms << min(self._failures - 1, 16), self.max_backoff_ms)

    def _open(self, keep_alive_ms):
        self.close()
        stream = Stream("%s?keepAlive=%d" % (self._thing, keep_alive_ms), self.timeout, self._cadata)
        status = stream.open({"Accept": "application/json"})
        if not 200 <= status < 300:
            data = stream.read_rest()
            stream.close()
            self._check(status, data)
        self._stream = stream
        self._keep_alive_ms = keep_alive_ms
        self._heard = time.ticks_ms()

    def _catch_up(self, keys):
        for key in keys:
            for item in self.read(key, 1):
                seen = self._seen.get(key)
                if seen and seen[1] == item["value"] and seen[0] in (None, item.get("datetime")):
                    continue  # already given to the callback
                item.setdefault("key", key)
                item["caught_up"] = True
                self._pending.append(item)

    def _listen(self, left):
        # Read what the channel brings within the time left, into _pending.
        wait = 2 * self._keep_alive_ms - time.ticks_diff(time.ticks_ms(), self._heard)
        if wait <= 0:
            raise Timeout("no heartbeat for 2 x keepAlive")
        if left is not None:
            wait = min(wait, left)
        try:
            docs = self._stream.read(wait / 1000)
        except Timeout:
            return  # the next turn tells a quiet channel from a dead one
        self._heard = time.ticks_ms()
        for doc in docs:
            msg = http.loads(doc)
            self._failures = 0
            if isinstance(msg, dict):
                if msg.get("status") == "error":
                    raise HTTPError(
                        self._stream.status, str(msg.get("message", "")).replace(self._token, "<token>")
                    )
                msg = [msg] if "key" in msg else ()  # {} heartbeat, "subscribed" notice
            for item in msg:
                if isinstance(item, dict) and "key" in item:
                    self._pending.append(item)

    def _deliver(self, item, callback, keys):
        key, value = item["key"], item.get("value")
        if self._own_echo(key, value):
            return False
        if item.get("caught_up"):
            # Written after the channel opened and before the read: the channel brings it too.
            # Ignored once, as an echo is.
            self._echoes.append((key, value, time.ticks_ms()))
        if key in keys:
            self._seen[key] = (item.get("datetime"), value)
        return callback(key, value)

    def _own_echo(self, key, value):
        # True (once) for a value this thing wrote a moment ago: the server echoes own writes.
        now = time.ticks_ms()
        self._echoes = [e for e in self._echoes if time.ticks_diff(now, e[2]) < ECHO_MS]
        for e in self._echoes:
            if e[0] == key and e[1] == value:
                self._echoes.remove(e)
                return True
        return False
