# thethings.iO for the device loop: the calls App makes on its client (ThingsBoard's shape),
# mapped onto TheThings.
#
#   telemetry          -> values, each with the record's client time as `datetime`
#   send_attributes    -> one `$settings.<key>` write per attribute
#   shared attributes  <- the thing's `$settings` (e.g. interval_s)
#   RPC                <- a value another client writes to a command key: the key is the
#                         method, the value its params (setGpio = {"pin": "23", "value": 1})
#   RPC reply          -> a write of the result to `<method>.result` (setGpio.result)
import json

from iotlink.rpc import GPIO_METHODS
from iotlink.thethings import TheThings, check_key, stamp

KEEP_ALIVE_MS = 60000
MAX_VALUES = 50  # per write: the reference's advice, and its echo fits the 4 KB stream buffer
RESULT = ".result"


def _usable(key, value):
    # What thethings.iO stores: no null values, keys of [A-Za-z0-9._-] (no magic resources).
    if value is None or not isinstance(key, str) or key[:1] == "$":
        return False
    try:
        check_key(key)
    except ValueError:
        return False
    return True


def _pick(settings, keys):
    return {k: settings[k] for k in keys if k in settings}


class TTDevice:
    def __init__(self, server, token, timeout=10, keepalive=False, cadata=None):
        self.tt = TheThings(server, token, timeout=timeout, keepalive=keepalive, cadata=cadata)
        self.transport = self.tt.transport
        # The loop owns retries: it queues the data and backs off without blocking the
        # watchdog, so a write fails at once instead of sleeping through TheThings' retries.
        self.tt.retries = 0
        self.commands = list(GPIO_METHODS)  # keys read as commands; add a registered method's name
        self.keep_alive_ms = KEEP_ALIVE_MS
        self._last_id = 0
        self._asked = None  # the command handed out and not answered yet
        self._done = None  # (first record, records written) of a batch that failed part-way
        self._refused = []  # value keys already reported as left out

    # ---- telemetry ---------------------------------------------------------------------
    def send_telemetry(self, data):
        # A dict of values (server time), a {"ts": ms, "values": {...}} record, or a list of
        # either, oldest first (also as JSON bytes); written MAX_VALUES values at most at a time
        # (whole records). Raises when a write fails: the loop keeps the batch and sends it
        # again, and the records already written then are skipped, so none is stored twice.
        if isinstance(data, bytes):
            data = json.loads(data) if data else []
        records = data if isinstance(data, list) else [data]
        if not records:
            return
        first = records[0]
        start = self._done[1] if self._done is not None and self._done[0] == first else 0
        chunk = []
        for i in range(start, len(records)):
            values = self._values(records[i])
            if chunk and len(chunk) + len(values) > MAX_VALUES:
                self.tt.write(chunk)
                self._done = (first, i)
                chunk = []
            chunk += values
        self.tt.write(chunk)  # nothing to write: no request
        self._done = None

    def _values(self, record):
        values, when = record, None
        if "ts" in record and isinstance(record.get("values"), dict):
            values = record["values"]
            try:
                when = stamp(record["ts"] // 1000)
            except (TypeError, ValueError):  # not a time a set clock gave: the server's time
                pass
        out = []
        for key in values:
            if not _usable(key, values[key]):
                if key not in self._refused and len(self._refused) < 8:
                    self._refused.append(key)
                    print("thethings: value %r left out (null, or a key not of [A-Za-z0-9._-])" % (key,))
                continue
            item = {"key": key, "value": values[key]}
            if when is not None:
                item["datetime"] = when
            out.append(item)
        return out

    # ---- attributes ----------------------------------------------------------------------
    def send_attributes(self, attributes):
        # One field per request: whether a whole-object $settings write merges is undocumented.
        for key in attributes:
            self.tt.set_setting(key, attributes[key])

    def request_attributes(self, client_keys=None, shared_keys=None):
        # Both from $settings; all of them as shared when no keys are asked for.
        settings = self.tt.settings()
        if not isinstance(settings, dict):
            settings = {}
        return {
            "client": _pick(settings, client_keys) if client_keys else {},
            "shared": settings if shared_keys is None else _pick(settings, shared_keys),
        }

    # ---- commands ------------------------------------------------------------------------
    def wait_rpc(self, timeout_ms=20000):
        # The next command as {"id", "method", "params"}, or None when none came in time. Until
        # it is answered, the same request comes back (the loop then replays its reply).
        if self._asked is None:
            self.tt.subscribe(self._take, self.keep_alive_ms, duration_ms=timeout_ms, keys=self.commands)
        return self._asked

    def _take(self, key, value):
        if key not in self.commands:
            return False  # telemetry echoes, replies, values the board does not act on
        self._last_id += 1
        self._asked = {"id": self._last_id, "method": key, "params": value}
        return True

    def reply_rpc(self, request_id, result):
        asked = self._asked
        if asked is None or asked["id"] != request_id:
            raise ValueError("no command %r waits for a reply" % (request_id,))
        self.tt.write([{"key": asked["method"] + RESULT, "value": {} if result is None else result}])
        self._asked = None

    def close(self):
        self.tt.close()
