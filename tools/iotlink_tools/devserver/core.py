"""DevServer: the state behind the emulated APIs, and the Python API tests and tools use.

All state lives in one SQLite database guarded by one condition variable: every change
notifies it, and long-polls wait on it, so a poll never blocks other requests.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import string
import threading
import time
import uuid
from typing import Any

from .web import Exchange, Router, Server

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, token TEXT UNIQUE NOT NULL,
    type TEXT NOT NULL DEFAULT 'default', label TEXT, created_ms INTEGER NOT NULL,
    firmware_id TEXT, software_id TEXT);
CREATE TABLE IF NOT EXISTS telemetry (
    device_id TEXT NOT NULL, key TEXT NOT NULL, ts INTEGER NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (device_id, key, ts));
CREATE TABLE IF NOT EXISTS attributes (
    device_id TEXT NOT NULL, scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    last_update_ts INTEGER NOT NULL, PRIMARY KEY (device_id, scope, key));
CREATE TABLE IF NOT EXISTS rpc (
    device_id TEXT NOT NULL, id INTEGER NOT NULL, method TEXT NOT NULL, params TEXT NOT NULL,
    oneway INTEGER NOT NULL, status TEXT NOT NULL, response TEXT, expires_ms INTEGER NOT NULL,
    PRIMARY KEY (device_id, id));
CREATE TABLE IF NOT EXISTS provision_profiles (
    key TEXT PRIMARY KEY, secret TEXT NOT NULL, policy TEXT NOT NULL, type TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS claims (
    device_id TEXT PRIMARY KEY, secret TEXT NOT NULL, expires_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS packages (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, version TEXT NOT NULL, kind TEXT NOT NULL,
    data BLOB NOT NULL, algorithm TEXT NOT NULL, checksum TEXT NOT NULL,
    content_type TEXT NOT NULL, file_name TEXT NOT NULL, UNIQUE (title, version, kind));
"""

TOKEN_ALPHABET = string.ascii_letters + string.digits


def now_ms() -> int:
    return int(time.time() * 1000)


def new_token() -> str:
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(20))


class DeviceNotFound(KeyError):
    pass


class _Waiter:
    """One open /attributes/updates long-poll: receives at most one message."""

    __slots__ = ("message",)

    def __init__(self):
        self.message: dict | None = None


class DevServer:
    """A local server speaking ThingsBoard's device and REST APIs and thethings.iO's API."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, db: str = ":memory:",
                 async_timeout_ms: int = 30000, tls: tuple[str, str] | None = None):
        """tls: (certfile, keyfile) to serve HTTPS instead of HTTP."""
        self.async_timeout_ms = async_timeout_ms  # ThingsBoard cuts every request here (503)
        self._db = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.executescript(SCHEMA)
        self.cond = threading.Condition(threading.RLock())
        self._attr_waiters: dict[str, list[_Waiter]] = {}
        self._rpc_counter: dict[str, int] = {}  # restarts at 0 with the server, as ThingsBoard's
        self.exchanges: list[Exchange] = []
        # Client-side RPC: method -> fn(device, params) -> reply (the tenant's rule chain).
        self.client_rpc_handlers: dict[str, Any] = {}
        self.stopping = False
        self.router = Router()
        from . import tb_device  # routes register themselves on the router

        tb_device.register(self)
        for name in ("tb_rest", "thethings", "ota", "page"):
            self._register_optional(name)
        self._server = Server((host, port), self.router, self._record)
        self.scheme = "http"
        if tls:
            self._server.use_tls(*tls)
            self.scheme = "https"
        self._thread: threading.Thread | None = None

    def _register_optional(self, name: str) -> None:
        import importlib

        try:
            module = importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{name}":
                raise
            return
        module.register(self)

    # ---- lifecycle -------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self._server.server_address[0]}:{self.port}"

    @property
    def clock_skew_s(self) -> float:
        """Seconds the server's Date header is off by (a server whose clock is wrong)."""
        return self._server.clock_skew_s

    @clock_skew_s.setter
    def clock_skew_s(self, seconds: float) -> None:
        self._server.clock_skew_s = seconds

    def start(self) -> "DevServer":
        self._thread = self._server.start()
        return self

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _record(self, exchange: Exchange) -> None:
        with self.cond:
            self.exchanges.append(exchange)

    def requests_to(self, path_part: str, method: str | None = None) -> list[Exchange]:
        """The exchanges whose path contains path_part (and method, if given), in order."""
        with self.cond:
            return [e for e in self.exchanges
                    if path_part in e.path and (method is None or e.method == method)]

    # ---- database --------------------------------------------------------------------
    def sql(self, query: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self.cond:
            return self._db.execute(query, args).fetchall()

    def changed(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, predicate, timeout_s: float):
        """Wait until predicate() is truthy, the timeout passes, or the server stops."""
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while True:
                result = predicate()
                if result or self.stopping:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    return result
                self.cond.wait(left)

    # ---- devices ---------------------------------------------------------------------
    def add_device(self, name: str, token: str | None = None, type: str = "default",
                   label: str | None = None) -> dict:
        """Create a device; raises ValueError for a taken name or token."""
        token = token or new_token()
        with self.cond:
            if self.sql("SELECT 1 FROM devices WHERE token=?", (token,)):
                raise ValueError("Device credentials are already assigned to another device!")
            if self.sql("SELECT 1 FROM devices WHERE name=?", (name,)):
                raise ValueError("Device with such name already exists!")
            dev_id = str(uuid.uuid4())
            self.sql("INSERT INTO devices (id, name, token, type, label, created_ms) VALUES (?,?,?,?,?,?)",
                     (dev_id, name, token, type, label, now_ms()))
        return self.device(name)

    def device(self, ref: str) -> dict:
        """A device by name, id or access token."""
        rows = self.sql("SELECT * FROM devices WHERE name=? OR id=? OR token=?", (ref, ref, ref))
        if not rows:
            raise DeviceNotFound(ref)
        return dict(rows[0])

    def device_by_token(self, token: str) -> dict | None:
        rows = self.sql("SELECT * FROM devices WHERE token=?", (token,))
        return dict(rows[0]) if rows else None

    def devices(self) -> list[dict]:
        return [dict(r) for r in self.sql("SELECT * FROM devices ORDER BY name")]

    def delete_device(self, ref: str) -> None:
        dev = self.device(ref)
        with self.cond:
            for table in ("devices", "telemetry", "attributes", "rpc", "claims"):
                col = "id" if table == "devices" else "device_id"
                self.sql(f"DELETE FROM {table} WHERE {col}=?", (dev["id"],))
            self.cond.notify_all()

    # ---- telemetry -------------------------------------------------------------------
    def store_telemetry(self, device_id: str, ts: int, values: dict[str, Any]) -> None:
        with self.cond:
            for key, value in values.items():
                if value is None:
                    continue  # ThingsBoard drops nulls silently
                self.sql("INSERT OR REPLACE INTO telemetry VALUES (?,?,?,?)",
                         (device_id, key, ts, json.dumps(value)))
            self.cond.notify_all()

    def telemetry(self, ref: str, key: str | None = None) -> list[tuple[int, str, Any]]:
        """Stored points of a device as (ts, key, value), oldest first."""
        dev = self.device(ref)
        q = "SELECT ts, key, value FROM telemetry WHERE device_id=?"
        args: tuple = (dev["id"],)
        if key is not None:
            q += " AND key=?"
            args += (key,)
        return [(r["ts"], r["key"], json.loads(r["value"])) for r in self.sql(q + " ORDER BY ts, key", args)]

    def latest_telemetry(self, ref: str) -> dict[str, tuple[int, Any]]:
        latest: dict[str, tuple[int, Any]] = {}
        for ts, key, value in self.telemetry(ref):
            latest[key] = (ts, value)
        return latest

    # ---- attributes ------------------------------------------------------------------
    def attributes(self, ref: str, scope: str) -> dict[str, Any]:
        dev = self.device(ref)
        rows = self.sql("SELECT key, value FROM attributes WHERE device_id=? AND scope=? ORDER BY key",
                        (dev["id"], scope))
        return {r["key"]: json.loads(r["value"]) for r in rows}

    def client_attributes(self, ref: str) -> dict[str, Any]:
        return self.attributes(ref, "CLIENT_SCOPE")

    def shared_attributes(self, ref: str) -> dict[str, Any]:
        return self.attributes(ref, "SHARED_SCOPE")

    def save_attributes(self, device_id: str, scope: str, values: dict[str, Any]) -> None:
        ts = now_ms()
        with self.cond:
            for key, value in values.items():
                self.sql("INSERT OR REPLACE INTO attributes VALUES (?,?,?,?,?)",
                         (device_id, scope, key, json.dumps(value), ts))
            if scope == "SHARED_SCOPE":
                self._push_attributes(device_id, dict(values))
            self.cond.notify_all()

    def set_shared_attributes(self, ref: str, values: dict[str, Any]) -> None:
        """Write shared attributes; a device long-polling /attributes/updates gets them."""
        self.save_attributes(self.device(ref)["id"], "SHARED_SCOPE", values)

    def delete_shared_attributes(self, ref: str, keys: list[str]) -> None:
        dev = self.device(ref)
        with self.cond:
            gone = [k for k in keys if self.sql(
                "DELETE FROM attributes WHERE device_id=? AND scope='SHARED_SCOPE' AND key=? RETURNING key",
                (dev["id"], k))]
            if gone:
                self._push_attributes(dev["id"], {"deleted": gone})
            self.cond.notify_all()

    def _push_attributes(self, device_id: str, message: dict) -> None:
        # Only polls open right now see the change, and each sees one message: ThingsBoard
        # buffers nothing between polls (thingsboard/thingsboard#14314).
        for waiter in self._attr_waiters.get(device_id, []):
            if waiter.message is None:
                waiter.message = message

    def wait_attribute_update(self, device_id: str, timeout_s: float) -> dict | None:
        waiter = _Waiter()
        with self.cond:
            self._attr_waiters.setdefault(device_id, []).append(waiter)
            try:
                self.wait_for(lambda: waiter.message is not None, timeout_s)
            finally:
                self._attr_waiters[device_id].remove(waiter)
        return waiter.message

    # ---- RPC -------------------------------------------------------------------------
    def queue_rpc(self, ref: str, method: str, params: Any = None, timeout_ms: int = 10000,
                  oneway: bool = False) -> int:
        """Queue a server-side RPC for the device; returns its id (0, 1, 2, ... per device)."""
        dev = self.device(ref)
        with self.cond:
            rpc_id = self._rpc_counter.get(dev["id"], 0)
            self._rpc_counter[dev["id"]] = rpc_id + 1
            self.sql("INSERT OR REPLACE INTO rpc VALUES (?,?,?,?,?,?,?,?)",
                     (dev["id"], rpc_id, method, json.dumps({} if params is None else params),
                      int(oneway), "QUEUED", None, now_ms() + timeout_ms))
            self.cond.notify_all()
        return rpc_id

    def next_rpc(self, device_id: str) -> dict | None:
        """The oldest RPC the device should get now; marks it delivered."""
        with self.cond:
            self.sql("UPDATE rpc SET status='TIMEOUT' WHERE device_id=? AND status IN ('QUEUED','SENT') "
                     "AND expires_ms<?", (device_id, now_ms()))
            rows = self.sql("SELECT * FROM rpc WHERE device_id=? AND status IN ('QUEUED','SENT') "
                            "ORDER BY id LIMIT 1", (device_id,))
            if not rows:
                return None
            row = rows[0]
            # A two-way RPC delivered but not answered is delivered again (BURST strategy).
            status = "DELIVERED" if row["oneway"] else "SENT"
            self.sql("UPDATE rpc SET status=? WHERE device_id=? AND id=?", (status, device_id, row["id"]))
            return {"id": row["id"], "method": row["method"], "params": json.loads(row["params"])}

    def answer_rpc(self, device_id: str, rpc_id: int, response: bytes) -> None:
        with self.cond:
            self.sql("UPDATE rpc SET status='SUCCESSFUL', response=? WHERE device_id=? AND id=? "
                     "AND status IN ('QUEUED','SENT')", (response.decode("utf-8", "replace"), device_id, rpc_id))
            self.cond.notify_all()

    def rpc_status(self, ref: str, rpc_id: int) -> dict:
        dev = self.device(ref)
        rows = self.sql("SELECT status, response FROM rpc WHERE device_id=? AND id=?", (dev["id"], rpc_id))
        if not rows:
            raise KeyError(rpc_id)
        return dict(rows[0])

    def wait_rpc_reply(self, ref: str, rpc_id: int, timeout_s: float = 10.0) -> Any:
        """The JSON the device replied with; raises TimeoutError when it did not answer in time."""
        def answered():
            row = self.rpc_status(ref, rpc_id)
            return row if row["status"] == "SUCCESSFUL" else None

        row = self.wait_for(answered, timeout_s)
        if row is None:
            raise TimeoutError(f"device did not answer RPC {rpc_id}")
        return json.loads(row["response"])

    def call_rpc(self, ref: str, method: str, params: Any = None, timeout_s: float = 10.0) -> Any:
        """Two-way RPC: queue it and wait for the device's reply."""
        rpc_id = self.queue_rpc(ref, method, params, int(timeout_s * 1000))
        return self.wait_rpc_reply(ref, rpc_id, timeout_s)

    # ---- provisioning, claiming ------------------------------------------------------
    def add_provision_profile(self, key: str, secret: str,
                              policy: str = "ALLOW_CREATE_NEW_DEVICES", type: str = "default") -> None:
        self.sql("INSERT OR REPLACE INTO provision_profiles VALUES (?,?,?,?)", (key, secret, policy, type))

    def claim_request(self, ref: str) -> dict | None:
        dev = self.device(ref)
        rows = self.sql("SELECT secret, expires_ms FROM claims WHERE device_id=?", (dev["id"],))
        return dict(rows[0]) if rows else None

    # ---- OTA packages ----------------------------------------------------------------
    def add_package(self, title: str, version: str, data: bytes, kind: str = "FIRMWARE",
                    algorithm: str = "SHA256", content_type: str = "application/octet-stream",
                    file_name: str | None = None) -> str:
        """Store a firmware/software package; returns its id. The checksum is ThingsBoard's."""
        from .checksums import checksum

        pkg_id = str(uuid.uuid4())
        self.sql("INSERT INTO packages VALUES (?,?,?,?,?,?,?,?,?)",
                 (pkg_id, title, version, kind, data, algorithm, checksum(algorithm, data),
                  content_type, file_name or f"{title}-{version}.bin"))
        return pkg_id

    def package(self, pkg_id: str) -> dict:
        rows = self.sql("SELECT * FROM packages WHERE id=?", (pkg_id,))
        if not rows:
            raise KeyError(pkg_id)
        return dict(rows[0])

    def assigned_package(self, device_id: str, kind: str) -> dict | None:
        col = "firmware_id" if kind == "FIRMWARE" else "software_id"
        rows = self.sql(f"SELECT {col} FROM devices WHERE id=?", (device_id,))
        return self.package(rows[0][col]) if rows and rows[0][col] else None

    def assign_package(self, ref: str, pkg_id: str) -> None:
        """Assign a package as ThingsBoard does: a deleted notice, then the fw_*/sw_* values."""
        dev = self.device(ref)
        pkg = self.package(pkg_id)
        prefix = "fw" if pkg["kind"] == "FIRMWARE" else "sw"
        col = "firmware_id" if pkg["kind"] == "FIRMWARE" else "software_id"
        with self.cond:
            self.sql(f"UPDATE devices SET {col}=? WHERE id=?", (pkg_id, dev["id"]))
            self.delete_shared_attributes(dev["id"], [f"{prefix}_tag", f"{prefix}_url"])
            self.set_shared_attributes(dev["id"], {
                f"{prefix}_title": pkg["title"], f"{prefix}_version": pkg["version"],
                f"{prefix}_size": len(pkg["data"]), f"{prefix}_checksum_algorithm": pkg["algorithm"],
                f"{prefix}_checksum": pkg["checksum"]})
