"""ThingsBoard's telemetry and attribute REST API on the devserver (TelemetryController).

Time series:
- latest: GET .../values/timeseries[?keys=a,b][&useStrictDataTypes=true] (values as Java strings
  unless strict; a requested key without data comes back as one null value stamped "now");
- history: the same path with keys, startTs and endTs (all three, as ThingsBoard maps it), or
  GET .../values/timeseries/history (what the 4.x Python client calls): every point with
  startTs <= ts < endTs, per key, `orderBy` DESC (default) or ASC, at most `limit` (default 100)
  per key; with `agg` (AVG, MIN, MAX, SUM, COUNT) and an `interval` > 0, one value per interval
  from startTs, stamped at the interval's middle, intervals without data left out (oldest first,
  at most 700 of them); `agg` without `interval` is NONE;
- save: POST .../timeseries/{scope} with the device API's body shapes.
Keys come from `keys=a,b` or repeated `key=` parameters (which win). Attributes: read with or
without a scope, write SERVER_SCOPE / SHARED_SCOPE (both path forms), delete from any scope; a
shared change reaches a device long-polling for updates. Bodies of the attribute and time series
writes are read as ThingsBoard reads them, leniently (lenient.py).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from . import lenient
from .tb_device import parse_telemetry, typed
from .tb_rest import GENERAL, STRING_BODY, bad_request, error, java_string, now_ms
from .web import Request, Response, empty, json_response, text_response

if TYPE_CHECKING:
    from .core import DevServer

WRITABLE_SCOPES = ("SERVER_SCOPE", "SHARED_SCOPE")
SCOPES = ("CLIENT_SCOPE",) + WRITABLE_SCOPES
AGGREGATIONS = ("NONE", "AVG", "MIN", "MAX", "SUM", "COUNT")
MAX_INTERVALS = 700  # ThingsBoard's database.ts_max_intervals


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def aggregate(agg: str, values: list) -> Any:
    """One interval's value as ThingsBoard's SQL aggregation gives it: AVG of the numbers (a
    double), SUM (a long unless a double is in it), MIN/MAX of the strings if there are any, else
    of the numbers, COUNT of every value. None when the interval has nothing to give."""
    if agg == "COUNT":
        return len(values) or None
    numbers = [v for v in values if _number(v)]
    if agg in ("MIN", "MAX"):
        strings = [v for v in values if isinstance(v, str)]
        pool = strings or numbers
        if not pool:
            return None
        best = (min if agg == "MIN" else max)(pool)
        return float(best) if not strings and any(isinstance(v, float) for v in numbers) else best
    if not numbers:
        return None
    if agg == "AVG":
        return sum(numbers) / len(numbers)
    total = sum(numbers)
    return float(total) if any(isinstance(v, float) for v in numbers) else total


def register(srv: "DevServer") -> None:
    api = srv.rest_api

    def keys_of(req: Request) -> list[str]:
        repeated = req.query.get("key")
        if repeated:
            return repeated
        return [k for k in (req.arg("keys") or "").split(",") if k]

    def strict(req: Request) -> bool:
        return (req.arg("useStrictDataTypes") or "false").lower() == "true"

    def shown(value: Any, strict_types: bool) -> Any:
        return value if strict_types else java_string(value)

    def latest(req: Request, dev: dict) -> Response:
        stored = srv.latest_telemetry(dev["id"])
        keys = keys_of(req)
        reply = {}
        for key in keys or sorted(stored):
            if key in stored:
                ts, value = stored[key]
                reply[key] = [{"ts": ts, "value": shown(value, strict(req))}]
            else:  # a requested key without data: a null value stamped "now" (issue #4324)
                reply[key] = [{"ts": now_ms(), "value": None}]
        return json_response(reply)

    def history(req: Request, dev: dict) -> Response:
        try:
            start, end = int(req.arg("startTs", "")), int(req.arg("endTs", ""))
            interval = int(req.arg("interval") or 0)
            limit = int(req.arg("limit") or 100)
        except ValueError:
            return bad_request("startTs, endTs, interval and limit must be numbers")
        agg = (req.arg("agg") or "NONE").upper()
        order = (req.arg("orderBy") or "DESC").upper()
        if agg not in AGGREGATIONS or order not in ("ASC", "DESC") or limit < 1:
            return bad_request("agg must be one of NONE, AVG, MIN, MAX, SUM, COUNT; orderBy ASC or DESC; limit >= 1")
        if interval <= 0:
            agg = "NONE"  # ThingsBoard ignores agg without an interval
        elif -(-(end - start) // interval) > MAX_INTERVALS:
            return bad_request(f"Incorrect TsKvQuery. Number of intervals is to high - "
                               f"{-(-(end - start) // interval)}. Please increase 'interval' parameter "
                               "for your query or reduce the time range of the query.")
        keys = keys_of(req) or sorted({key for _, key, _ in srv.telemetry(dev["id"])})
        reply: dict[str, list] = {}
        for key in keys:
            points = [(ts, value) for ts, _, value in srv.telemetry(dev["id"], key) if start <= ts < end]
            if agg == "NONE":
                points.sort(key=lambda p: p[0], reverse=order == "DESC")
                found = points[:limit]
            else:
                found = []
                bucket_start, stop = start, max(start + 1, end)
                while bucket_start < stop:
                    bucket_end = min(bucket_start + interval, stop)
                    value = aggregate(agg, [v for ts, v in points if bucket_start <= ts < bucket_end])
                    if value is not None:
                        found.append((bucket_start + (bucket_end - bucket_start) // 2, value))
                    bucket_start = bucket_end
            if found:
                reply[key] = [{"ts": ts, "value": shown(value, strict(req))} for ts, value in found]
        return json_response(reply)

    def timeseries(req: Request) -> Response:
        dev, refused = api.device(req.params["id"])
        if refused:
            return refused
        # ThingsBoard's mapping: the history query needs keys, startTs and endTs all present.
        ranged = all(name in req.query for name in ("keys", "startTs", "endTs"))
        return history(req, dev) if ranged else latest(req, dev)

    def timeseries_history(req: Request) -> Response:
        dev, refused = api.device(req.params["id"])
        return refused or history(req, dev)

    def save_timeseries(req: Request) -> Response:
        dev, refused = api.device(req.params["id"])
        if refused:
            return refused
        try:
            records = parse_telemetry(lenient.parse(req.text()), now_ms())
        except ValueError as exc:
            return text_response(f"Unable to parse time series payload. Invalid JSON body: {exc}", 400)
        if not any(values for _, values in records):
            return text_response("No time series data found in request body!", 400)
        for ts, values in records:
            srv.store_telemetry(dev["id"], ts, values)
        return empty(200)

    # ---- attributes --------------------------------------------------------------------
    def scope_of(req: Request, allowed: tuple) -> tuple[str, Response | None]:
        scope = req.params["scope"]
        return scope, (None if scope in allowed else text_response(f"Invalid scope: {scope}", 400))

    def save_attributes(req: Request) -> Response:
        dev, refused = api.device(req.params["id"])
        scope, bad_scope = scope_of(req, WRITABLE_SCOPES)
        if refused or bad_scope:
            return refused or bad_scope
        try:
            payload = lenient.parse(req.text())
        except ValueError:
            return text_response("Invalid JSON", 400)
        if not isinstance(payload, dict):
            return text_response("Request is not a JSON object", 400)
        if any(value is None for value in payload.values()):
            return error(500, "Attribute value can't be null", GENERAL)
        if not payload:
            return text_response("No attributes data found in request body!", 400)
        if any(not key.strip() for key in payload):
            return text_response("Key cannot be blank", 400)
        srv.save_attributes(dev["id"], scope, {k: typed(v) for k, v in payload.items()})
        return empty(200)

    def read_attributes(req: Request) -> Response:
        dev, refused = api.device(req.params["id"])
        scope = req.params.get("scope")
        if scope is not None and scope not in SCOPES:
            refused = refused or bad_request(f"Invalid scope: {scope}")
        if refused:
            return refused
        keys = keys_of(req)
        rows = srv.sql("SELECT scope, key, value, last_update_ts FROM attributes WHERE device_id=? ORDER BY key",
                       (dev["id"],))
        order = {name: i for i, name in enumerate(SCOPES)}  # without a scope: client, server, shared
        rows = sorted((r for r in rows if scope in (None, r["scope"]) and (not keys or r["key"] in keys)),
                      key=lambda r: order[r["scope"]])
        return json_response([{"key": r["key"], "value": json.loads(r["value"]), "lastUpdateTs": r["last_update_ts"]}
                              for r in rows])

    def delete_attributes(req: Request) -> Response:
        dev, refused = api.device(req.params["id"])
        scope, bad_scope = scope_of(req, SCOPES)
        if refused or bad_scope:
            return refused or bad_scope
        keys = keys_of(req)
        if not keys:
            return text_response(f"Empty keys: {keys}", 400)
        if scope == "SHARED_SCOPE":  # the device hears {"deleted": [...]}
            srv.delete_shared_attributes(dev["id"], keys)
        else:
            for key in keys:
                srv.sql("DELETE FROM attributes WHERE device_id=? AND scope=? AND key=?", (dev["id"], scope, key))
        return empty(200)

    scope = "{scope:[A-Z_]+_SCOPE}"
    for base in ("/api/plugins/telemetry/DEVICE/{id}", "/api/plugins/telemetry/{id}"):
        api.add("POST", f"{base}/{scope}", save_attributes, body_types=STRING_BODY)
        api.add("DELETE", f"{base}/{scope}", delete_attributes)
    entity = "/api/plugins/telemetry/DEVICE/{id}"
    api.add("GET", entity + "/values/timeseries", timeseries)
    api.add("GET", entity + "/values/timeseries/history", timeseries_history)
    api.add("POST", entity + "/timeseries/{scope}", save_timeseries, body_types=STRING_BODY)
    api.add("POST", entity + "/attributes/{scope}", save_attributes, body_types=STRING_BODY)
    api.add("GET", entity + "/values/attributes", read_attributes)
    api.add("GET", entity + "/values/attributes/{scope}", read_attributes)

