"""thethings.iO's REST API v2 (/v2/...), as its documentation describes it.

Activation (201 / 400), write (201; keys checked; `$settings`, `$settings.<path>` and `$geo`
handled; `store` / `broadcast` flags), read (limit 1 by default, up to the documented 1000 a
query -- a larger limit gets 1000 --, newest first, ISO datetimes with ms and Z; older values by
paging with `endDate`), subscribe (a chunked stream: the "subscribed" notice, `{}` every
keepAlive ms, an array per write, the thing's own writes included), `/v2/utils/date` in both
formats; errors as `{"status":"error","message":...}`.

Where the vendor documents nothing, this server picks:
- an unknown thing token is 401 `Thing token doesn't exist` (subscribe: the documented
  `Thing with thing token '...' not found.`, also 401); a never-written key is 404;
- startDate and endDate are inclusive, to the millisecond (so a client paging with the oldest
  datetime as the next endDate gets that value again and must drop it);
- a whole-object `$settings` write replaces the settings; an activation code used again
  answers the same token;
- stream updates are arrays of `{"key","value","datetime"[,"geo"]}`.

Tests and tools use `srv.thethings` (a `TheThingsServer`): add_thing, write (as another
client), values, settings, geo, fail_next (fault injection), wait_subscribed, drop_streams,
streamed.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from .core import now_ms
from .web import BoundedLog, Request, Response, json_response

if TYPE_CHECKING:
    from .core import DevServer

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tt_things (
        token TEXT PRIMARY KEY, thing_id TEXT UNIQUE NOT NULL, activation_code TEXT UNIQUE,
        product_id TEXT, activated INTEGER NOT NULL, settings TEXT NOT NULL, geo TEXT)""",
    """CREATE TABLE IF NOT EXISTS tt_values (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, token TEXT NOT NULL, key TEXT NOT NULL,
        ts INTEGER NOT NULL, value TEXT NOT NULL, geo TEXT)""",
    "CREATE INDEX IF NOT EXISTS tt_values_by_key ON tt_values (token, key, ts)",
    """CREATE TABLE IF NOT EXISTS tt_faults (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, status INTEGER NOT NULL,
        remaining INTEGER NOT NULL, message TEXT NOT NULL)""",
)

MAX_LIMIT = 1000  # documented
DEFAULT_KEEP_ALIVE_MS = 60000
MIN_KEEP_ALIVE_MS = 50
STREAM_LOG = (10_000, 8 * 1024 * 1024)  # the newest documents kept per thing: count, bytes
SUBSCRIBED = b'{"status":"success","message":"subscribed"}'
_KEY = re.compile(r"[A-Za-z0-9._-]+")
_MAGIC = re.compile(r"\$geo|\$settings(\.[A-Za-z0-9_-]+)*")
_COMPACT = re.compile(r"\d{14}")
_FAULT_MESSAGES = {400: "bad request", 401: "Invalid session token", 403: "forbidden",
                   404: "not found", 410: "gone", 429: "too many requests"}


class BadRequest(ValueError):
    """A request the API refuses with 400 and this message."""


def error(message: str, status: int) -> Response:
    return json_response({"status": "error", "message": message}, status)


def parse_date(text: str) -> int:
    """`YYYYMMDDHHmmss` or ISO 8601 (UTC) -> unix ms; BadRequest otherwise."""
    try:
        if _COMPACT.fullmatch(text):
            moment = datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
        else:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
    except ValueError:
        raise BadRequest(f"invalid date {text!r}") from None
    return round(moment.timestamp() * 1000)


def iso(ms: int) -> str:
    """unix ms -> "2017-01-16T10:25:10.644Z", the form replies carry."""
    moment = datetime.fromtimestamp(ms // 1000, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_values(payload: Any, server_ms: int) -> list[dict]:
    """The records of a write body as {"key","value","ts"[,"geo"]}; BadRequest for a bad one."""
    if not isinstance(payload, dict) or not isinstance(payload.get("values"), list) \
            or not payload["values"]:
        raise BadRequest('body must be {"values": [...]}')
    records = []
    for item in payload["values"]:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or "value" not in item:
            raise BadRequest("each value needs a key and a value")
        key = item["key"]
        if not (_KEY.fullmatch(key) or _MAGIC.fullmatch(key)):
            raise BadRequest(f"invalid key {key!r}")
        record = {"key": key, "value": item["value"], "ts": server_ms}
        if "datetime" in item:
            if not isinstance(item["datetime"], str):
                raise BadRequest("datetime must be YYYYMMDDHHmmss")
            record["ts"] = parse_date(item["datetime"])
        if "geo" in item:
            geo = item["geo"]
            if not isinstance(geo, dict) or not _number(geo.get("lat")) or not _number(geo.get("long")):
                raise BadRequest('geo must be {"lat": <number>, "long": <number>}')
            record["geo"] = {"lat": geo["lat"], "long": geo["long"]}
        if key == "$geo":
            record["value"] = geojson(item["value"])
        elif key == "$settings" and not isinstance(item["value"], dict):
            raise BadRequest("$settings must be an object")
        records.append(record)
    return records


def geojson(value: Any) -> dict:
    """A $geo value: a GeoJSON Point, or the legacy [long, lat] array."""
    if isinstance(value, dict) and value.get("type") == "Point":
        value = value.get("coordinates")
    if not (isinstance(value, list) and len(value) == 2 and all(_number(c) for c in value)):
        raise BadRequest('$geo must be {"type":"Point","coordinates":[long, lat]}')
    return {"type": "Point", "coordinates": value}


def _flag(req: Request, name: str) -> bool:
    return (req.arg(name, "true") or "true").lower() != "false"


class _Subscription:
    """One open stream: documents waiting to be sent, and a way to end it."""

    def __init__(self, token: str):
        self.token = token
        self.queue: list[bytes] = []
        self.closed = False
        self.tail = b""  # bytes sent just before the server ends the stream (a cut document)


class TheThingsServer:
    """The thethings.iO state (in the DevServer's SQLite) and the Python API tests use."""

    def __init__(self, srv: "DevServer", page_size: int = MAX_LIMIT):
        self.srv = srv
        self.page_size = page_size  # a read answers at most this many values (tests lower it)
        self._subscriptions: list[_Subscription] = []
        self._streamed: dict[str, BoundedLog] = {}
        self._before: list[tuple[str, Callable[[], None]]] = []  # (path part, action), once each
        for statement in SCHEMA:
            srv.sql(statement)

    # ---- things ------------------------------------------------------------------------
    def add_thing(self, activation_code: str | None = None, product_id: str | None = None,
                  token: str | None = None, settings: dict | None = None) -> dict:
        """A thing; with an activation code it is usable only once activated."""
        token = token or secrets.token_urlsafe(32)  # 43 characters, as the platform's
        self.srv.sql("INSERT INTO tt_things VALUES (?,?,?,?,?,?,NULL)",
                     (token, secrets.token_urlsafe(32), activation_code, product_id,
                      int(activation_code is None), json.dumps(settings or {})))
        return self.thing(token)

    def thing(self, token: str) -> dict:
        rows = self.srv.sql("SELECT * FROM tt_things WHERE token=?", (token,))
        if not rows:
            raise KeyError("no such thing")
        return dict(rows[0])

    def _active(self, token: str | None) -> bool:
        return bool(token) and bool(self.srv.sql(
            "SELECT 1 FROM tt_things WHERE token=? AND activated=1", (token,)))

    def activate(self, code: Any, product_id: Any) -> str:
        """The token for an activation code; BadRequest as the platform refuses."""
        rows = self.srv.sql("SELECT * FROM tt_things WHERE activation_code=?", (code,)) \
            if isinstance(code, str) else []
        if not rows or (product_id is not None and rows[0]["product_id"] not in (None, product_id)):
            raise BadRequest("activation code not found")
        if product_id is None:
            products = self.srv.sql("SELECT DISTINCT product_id FROM tt_things WHERE product_id IS NOT NULL")
            if len(products) > 1:
                raise BadRequest("productId is required: the account has several products")
        self.srv.sql("UPDATE tt_things SET activated=1 WHERE token=?", (rows[0]["token"],))
        return rows[0]["token"]

    # ---- values ------------------------------------------------------------------------
    def write(self, token: str, values: dict | list, store: bool = True, broadcast: bool = True) -> None:
        """Write as another client would: a dict, or a list of {"key","value",...} records."""
        if isinstance(values, dict):
            values = [{"key": k, "value": v} for k, v in values.items()]
        self.apply(token, parse_values({"values": values}, now_ms()), store, broadcast)

    def apply(self, token: str, records: list[dict], store: bool, broadcast: bool) -> None:
        with self.srv.cond:
            if store:
                for r in records:
                    self._store(token, r)
            if broadcast:
                update = json.dumps([self._reply_item(r) for r in records]).encode()
                for sub in self._subscriptions:
                    if sub.token == token:
                        sub.queue.append(update)
            self.srv.changed()

    def _store(self, token: str, record: dict) -> None:
        key, value = record["key"], record["value"]
        if key == "$geo":
            self.srv.sql("UPDATE tt_things SET geo=? WHERE token=?", (json.dumps(value), token))
        elif key.startswith("$settings"):
            settings = value if key == "$settings" else self._set_path(
                self.settings(token), key.split(".")[1:], value)
            self.srv.sql("UPDATE tt_things SET settings=? WHERE token=?", (json.dumps(settings), token))
        else:
            geo = json.dumps(record["geo"]) if "geo" in record else None
            self.srv.sql("INSERT INTO tt_values (token, key, ts, value, geo) VALUES (?,?,?,?,?)",
                         (token, key, record["ts"], json.dumps(value), geo))

    @staticmethod
    def _set_path(settings: dict, path: list[str], value: Any) -> dict:
        node = settings
        for name in path[:-1]:
            if not isinstance(node.get(name), dict):
                node[name] = {}
            node = node[name]
        node[path[-1]] = value
        return settings

    @staticmethod
    def _reply_item(record: dict) -> dict:
        item = {"key": record["key"], "value": record["value"], "datetime": iso(record["ts"])}
        if "geo" in record:
            item["geo"] = record["geo"]
        return item

    def values(self, token: str, key: str, limit: int | None = None, start_ms: int | None = None,
             end_ms: int | None = None) -> list[dict]:
        """Stored values of a key, newest first, as the API lists them; all of them by default."""
        if key == "$geo" or key.startswith("$settings"):
            return self._read_magic(token, key)
        rows = self.srv.sql(
            "SELECT key, value, ts, geo FROM tt_values WHERE token=? AND key=? AND ts>=? AND ts<=? "
            "ORDER BY ts DESC, seq DESC LIMIT ?",
            (token, key, start_ms if start_ms is not None else -2**62,
             end_ms if end_ms is not None else 2**62, -1 if limit is None else limit))
        out = []
        for r in rows:
            record = {"key": r["key"], "value": json.loads(r["value"]), "ts": r["ts"]}
            if r["geo"]:
                record["geo"] = json.loads(r["geo"])
            out.append(self._reply_item(record))
        return out

    def _read_magic(self, token: str, key: str) -> list[dict]:
        if key == "$geo":
            geo = self.thing(token)["geo"]
            return [{"key": key, "value": json.loads(geo)}] if geo else []
        node: Any = self.settings(token)
        if key == "$settings":
            return [{"key": key, "value": node}] if node else []
        for name in key.split(".")[1:]:
            if not isinstance(node, dict) or name not in node:
                return []
            node = node[name]
        return [{"key": key, "value": node}]

    def settings(self, token: str) -> dict:
        return json.loads(self.thing(token)["settings"])

    def geo(self, token: str) -> dict | None:
        """The thing's $geo value (GeoJSON), or None."""
        found = self._read_magic(token, "$geo")
        return found[0]["value"] if found else None

    # ---- faults ------------------------------------------------------------------------
    def fail_next(self, status: int, count: int = 1, path: str = "/v2/", message: str | None = None) -> None:
        """Answer the next `count` requests whose path contains `path` with this status."""
        self.srv.sql("INSERT INTO tt_faults (path, status, remaining, message) VALUES (?,?,?,?)",
                     (path, status, count, message or _FAULT_MESSAGES.get(status, "internal error")))

    def before_next(self, path: str, action: Callable[[], None]) -> None:
        """Run action() once, just before the server handles the next request to `path`: a
        write that lands between two requests of a board, at exactly that moment."""
        with self.srv.cond:
            self._before.append((path, action))

    def _run_before(self, req: Request) -> None:
        with self.srv.cond:
            due = [hook for hook in self._before if hook[0] in req.path]
            self._before = [hook for hook in self._before if hook not in due]
        for _, action in due:
            action()

    def _fault(self, req: Request) -> Response | None:
        with self.srv.cond:
            for row in self.srv.sql("SELECT * FROM tt_faults WHERE remaining>0 ORDER BY seq"):
                if row["path"] in req.path:
                    self.srv.sql("UPDATE tt_faults SET remaining=remaining-1 WHERE seq=?", (row["seq"],))
                    return error(row["message"], row["status"])
        return None

    # ---- streams -----------------------------------------------------------------------
    def subscribers(self, token: str) -> int:
        with self.srv.cond:
            return sum(1 for s in self._subscriptions if s.token == token)

    def wait_subscribed(self, token: str, count: int = 1, timeout_s: float = 5.0) -> bool:
        """True once `count` streams of the thing are open (so a write will reach them)."""
        return bool(self.srv.wait_for(lambda: self.subscribers(token) >= count, timeout_s))

    def drop_streams(self, token: str, tail: bytes = b"") -> None:
        """End the thing's open streams, after sending `tail` (e.g. half a document)."""
        with self.srv.cond:
            for sub in self._subscriptions:
                if sub.token == token:
                    sub.closed, sub.tail = True, tail
            self.srv.changed()

    def streamed(self, token: str) -> list[bytes]:
        """The documents sent on the thing's streams, in order (heartbeats included; the
        newest STREAM_LOG of them)."""
        with self.srv.cond:
            return list(self._streamed.get(token, []))

    def stream(self, token: str, keep_alive_s: float):
        """The body of one subscription: documents as they come, `{}` when nothing does."""
        sub = _Subscription(token)
        with self.srv.cond:
            self._subscriptions.append(sub)
            self.srv.changed()
        sent = self._streamed.setdefault(token, BoundedLog(*STREAM_LOG))
        try:
            sent.append(SUBSCRIBED)
            yield SUBSCRIBED
            while True:
                with self.srv.cond:
                    self.srv.wait_for(lambda: sub.queue or sub.closed, keep_alive_s)
                    docs, sub.queue = sub.queue or [b"{}"], []
                    if self.srv.stopping:
                        return
                    if sub.closed:
                        docs = [sub.tail] if sub.tail else []
                    sent.extend(docs)
                yield b"".join(docs)  # several updates share one chunk
                if sub.closed:
                    return
        finally:
            with self.srv.cond:
                self._subscriptions.remove(sub)
                self.srv.changed()


def register(srv: "DevServer") -> None:
    tt = srv.thethings = TheThingsServer(srv)
    lock = threading.Lock()  # activation: check-then-update as one step

    def route(method: str, pattern: str, handler) -> None:
        def serve(req: Request) -> Response:
            try:
                tt._run_before(req)
                return tt._fault(req) or handler(req)
            except BadRequest as exc:
                return error(str(exc), 400)
        srv.router.add(method, pattern, handler=serve)

    def thing_or_401(req: Request) -> Response | None:
        if tt._active(req.params.get("token") or req.arg("thingToken")):
            return None
        return error("Thing token doesn't exist", 401)

    def body_json(req: Request) -> Any:
        try:
            return req.json()
        except ValueError:
            raise BadRequest("invalid JSON") from None

    def activate(req: Request) -> Response:
        payload = body_json(req)
        if not isinstance(payload, dict):
            raise BadRequest("activation code not found")
        with lock:
            token = tt.activate(payload.get("activationCode"), payload.get("productId"))
        return json_response({"status": "created", "message": "thing activated", "thingToken": token,
                              "thingId": tt.thing(token)["thing_id"]}, 201)

    def write(req: Request) -> Response:
        denied = thing_or_401(req)
        if denied:
            return denied
        records = parse_values(body_json(req), now_ms())
        tt.apply(req.params["token"], records, _flag(req, "store"), _flag(req, "broadcast"))
        if any(r["key"].startswith("$") for r in records):
            return json_response({"status": "created"}, 201)
        return json_response({"status": "Success", "message": "Created"}, 201)

    def read(req: Request) -> Response:
        denied = thing_or_401(req)
        if denied:
            return denied
        try:
            limit = int(req.arg("limit", "1"))
        except ValueError:
            raise BadRequest("limit must be a number") from None
        if limit < 1:
            raise BadRequest("limit must be at least 1")
        start, end = req.arg("startDate"), req.arg("endDate")
        found = tt.values(req.params["token"], req.params["key"], min(limit, MAX_LIMIT, tt.page_size),
                        parse_date(start) if start else None, parse_date(end) if end else None)
        if not found:
            return error("resource not found", 404)
        return json_response(found)

    def subscribe(req: Request) -> Response:
        token = req.params["token"]
        if not tt._active(token):
            return error(f"Thing with thing token '{token}' not found.", 401)
        try:
            keep_alive_ms = max(int(req.arg("keepAlive", str(DEFAULT_KEEP_ALIVE_MS))), MIN_KEEP_ALIVE_MS)
        except ValueError:
            raise BadRequest("keepAlive must be a number of ms") from None
        return Response(200, content_type="application/json", stream=tt.stream(token, keep_alive_ms / 1000))

    def date(req: Request) -> Response:
        denied = thing_or_401(req)
        if denied:
            return denied
        fmt = req.arg("format", "UTC")
        ms = now_ms()
        if fmt == "unix_timestamp":
            value: Any = ms // 1000
        elif fmt == "UTC":
            value = iso(ms)
        else:
            raise BadRequest("format must be UTC or unix_timestamp")
        return json_response({"date": value, "values": [{"value": value}]})

    def no_session(req: Request) -> Response:
        return json_response({"status": "error", "code": 401, "message": "Invalid session token"}, 401)

    route("POST", "/v2/things/?", activate)
    route("POST", "/v2/things/{token}", write)
    route("GET", "/v2/things/{token}", subscribe)
    route("GET", "/v2/things/{token}/resources/{key}", read)
    route("GET", "/v2/utils/date", date)
    route("GET", "/v2/?", no_session)
