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
from typing import Any, Callable, Iterable

from .web import READ_TIMEOUT_S, Exchange, Router, Server, exchange_log

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, token TEXT UNIQUE NOT NULL,
    type TEXT NOT NULL DEFAULT 'default', label TEXT, created_ms INTEGER NOT NULL,
    firmware_id TEXT, software_id TEXT);
CREATE TABLE IF NOT EXISTS device_profiles (
    id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, created_ms INTEGER NOT NULL, description TEXT,
    is_default INTEGER NOT NULL DEFAULT 0, provision_type TEXT NOT NULL DEFAULT 'DISABLED',
    provision_key TEXT UNIQUE, provision_secret TEXT, firmware_id TEXT, software_id TEXT);
CREATE TABLE IF NOT EXISTS telemetry (
    device_id TEXT NOT NULL, key TEXT NOT NULL, ts INTEGER NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (device_id, key, ts));
CREATE TABLE IF NOT EXISTS attributes (
    device_id TEXT NOT NULL, scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    last_update_ts INTEGER NOT NULL, PRIMARY KEY (device_id, scope, key));
CREATE TABLE IF NOT EXISTS rpc_requests (
    device_id TEXT NOT NULL, id INTEGER NOT NULL, uuid TEXT UNIQUE NOT NULL, method TEXT NOT NULL,
    params TEXT NOT NULL, oneway INTEGER NOT NULL, persistent INTEGER NOT NULL, status TEXT NOT NULL,
    response TEXT, created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL, additional_info TEXT,
    PRIMARY KEY (device_id, id));
CREATE TABLE IF NOT EXISTS claims (
    device_id TEXT PRIMARY KEY, secret TEXT NOT NULL, expires_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ota_packages (
    id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL, title TEXT NOT NULL, version TEXT NOT NULL,
    tag TEXT, kind TEXT NOT NULL, device_profile_id TEXT, url TEXT, data BLOB, algorithm TEXT,
    checksum TEXT, content_type TEXT, file_name TEXT, additional_info TEXT,
    UNIQUE (title, version));
"""

TOKEN_ALPHABET = string.ascii_letters + string.digits
PACKAGE_COLUMNS = {"FIRMWARE": "firmware_id", "SOFTWARE": "software_id"}
PACKAGE_PREFIX = {"FIRMWARE": "fw", "SOFTWARE": "sw"}
# The shared attributes a package assignment sets and an unassignment deletes.
PACKAGE_KEYS = ("title", "version", "tag", "size", "checksum_algorithm", "checksum", "url")
PENDING_RPC = "(status='QUEUED' OR (status='DELIVERED' AND oneway=0))"  # not delivered, or not answered


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
                 async_timeout_ms: int = 30000, tls: tuple[str, str] | None = None,
                 allowed_hosts: Iterable[str] = (), read_timeout_s: float = READ_TIMEOUT_S):
        """tls: (certfile, keyfile) to serve HTTPS instead of HTTP. allowed_hosts: host names a
        browser may reach the page and REST API by, besides IP addresses and localhost.
        read_timeout_s: how long a client may stay silent mid-request or idle between requests."""
        self.async_timeout_ms = async_timeout_ms  # ThingsBoard cuts every request here (503)
        self._db = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.executescript(SCHEMA)
        self.cond = threading.Condition(threading.RLock())
        if not self.sql("SELECT 1 FROM device_profiles WHERE is_default=1"):
            self.add_device_profile("default", "Default device profile")
        for row in self.sql("SELECT DISTINCT type FROM devices WHERE type NOT IN (SELECT name FROM device_profiles)"):
            self.add_device_profile(row["type"])  # a database from before device profiles
        self._attr_waiters: dict[str, list[_Waiter]] = {}
        self._rpc_counter: dict[str, int] = {}  # restarts at 0 with the server, as ThingsBoard's
        self.exchanges = exchange_log()  # what tests assert on: the newest, within a memory budget
        # Called in the request's thread with each exchange once answered (before the reply goes).
        self.listeners: list[Callable[[Exchange], None]] = []
        # Client-side RPC: method -> fn(device, params) -> reply (the tenant's rule chain).
        self.client_rpc_handlers: dict[str, Any] = {}
        self.stopping = False
        self.router = Router()
        from . import tb_device  # routes register themselves on the router

        tb_device.register(self)
        for name in ("tb_rest", "tb_devices", "tb_telemetry", "tb_rpc", "tb_ota", "thethings", "ota", "page"):
            self._register_optional(name)
        self._server = Server((host, port), self.router, self._record, allowed_hosts, read_timeout_s,
                              self._answered)
        if tls:
            self._server.use_tls(*tls)
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
    def scheme(self) -> str:
        return self._server.scheme

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

    def _answered(self, exchange: Exchange) -> None:
        for listener in self.listeners:
            listener(exchange)

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

    # ---- device profiles -------------------------------------------------------------
    def add_device_profile(self, name: str, description: str | None = None) -> dict:
        """A device profile (ThingsBoard also makes one when a device names a new type)."""
        with self.cond:
            if self.sql("SELECT 1 FROM device_profiles WHERE name=?", (name,)):
                raise ValueError("Device profile with such name already exists!")
            is_default = not self.sql("SELECT 1 FROM device_profiles")
            self.sql("INSERT INTO device_profiles (id, name, created_ms, description, is_default) "
                     "VALUES (?,?,?,?,?)", (str(uuid.uuid4()), name, now_ms(), description, int(is_default)))
        return self.device_profile(name)

    def device_profile(self, ref: str) -> dict:
        """A device profile by id or name; KeyError if there is none."""
        rows = self.sql("SELECT * FROM device_profiles WHERE id=? OR name=?", (ref, ref))
        if not rows:
            raise KeyError(ref)
        return dict(rows[0])

    def default_profile(self) -> dict:
        return dict(self.sql("SELECT * FROM device_profiles WHERE is_default=1")[0])

    def _profile_named(self, name: str) -> dict:
        try:
            return self.device_profile(name)
        except KeyError:
            return self.add_device_profile(name)

    def update_device_profile(self, ref: str, **changes) -> dict:
        """Change a profile's columns (name, description, provision_*, firmware_id, software_id);
        devices without a package of their own follow the profile's, as ThingsBoard's do."""
        with self.cond:
            old = self.device_profile(ref)
            for column, value in changes.items():
                self.sql(f"UPDATE device_profiles SET {column}=? WHERE id=?", (value, old["id"]))
            if changes.get("name", old["name"]) != old["name"]:
                self.sql("UPDATE devices SET type=? WHERE type=?", (changes["name"], old["name"]))
            new = self.device_profile(old["id"])
            for kind, column in PACKAGE_COLUMNS.items():
                if new[column] != old[column]:
                    for dev in self.sql(f"SELECT id FROM devices WHERE type=? AND {column} IS NULL",
                                        (new["name"],)):
                        self._announce_package(dev["id"], kind, new[column])
        return new

    def make_default_profile(self, ref: str) -> None:
        profile = self.device_profile(ref)
        with self.cond:
            self.sql("UPDATE device_profiles SET is_default=(id=?)", (profile["id"],))

    def delete_device_profile(self, ref: str) -> None:
        """Delete a profile no device uses; ValueError for the default one or one in use."""
        profile = self.device_profile(ref)
        with self.cond:
            if profile["is_default"]:
                raise ValueError("Deletion of Default Device Profile is prohibited!")
            if self.sql("SELECT 1 FROM devices WHERE type=?", (profile["name"],)):
                raise ValueError("The device profile referenced by the devices cannot be deleted!")
            self.sql("DELETE FROM device_profiles WHERE id=?", (profile["id"],))

    # ---- devices ---------------------------------------------------------------------
    def add_device(self, name: str, token: str | None = None, type: str | None = None,
                   label: str | None = None, firmware_id: str | None = None,
                   software_id: str | None = None) -> dict:
        """Create a device of profile `type` (the default profile if None; a new name makes a
        new profile, as in ThingsBoard); raises ValueError for a taken name or token."""
        token = token or new_token()
        with self.cond:
            if self.sql("SELECT 1 FROM devices WHERE token=?", (token,)):
                raise ValueError("Device credentials are already assigned to another device!")
            if self.sql("SELECT 1 FROM devices WHERE name=?", (name,)):
                raise ValueError("Device with such name already exists!")
            profile = self.default_profile() if type is None else self._profile_named(type)
            dev_id = str(uuid.uuid4())
            self.sql("INSERT INTO devices VALUES (?,?,?,?,?,?,?,?)",
                     (dev_id, name, token, profile["name"], label, now_ms(), firmware_id, software_id))
            for kind, column in PACKAGE_COLUMNS.items():
                package_id = firmware_id if kind == "FIRMWARE" else software_id
                if package_id or profile[column]:
                    self._announce_package(dev_id, kind, package_id or profile[column])
        return self.device(dev_id)

    def update_device(self, ref: str, **changes) -> dict:
        """Change a device's name, type (profile), label, token, firmware_id or software_id; a
        new effective package is announced to the device as ThingsBoard announces it."""
        with self.cond:
            old = self.device(ref)
            if "token" in changes and self.sql("SELECT 1 FROM devices WHERE token=? AND id<>?",
                                               (changes["token"], old["id"])):
                raise ValueError("Device credentials are already assigned to another device!")
            if "name" in changes and self.sql("SELECT 1 FROM devices WHERE name=? AND id<>?",
                                              (changes["name"], old["id"])):
                raise ValueError("Device with such name already exists!")
            if "type" in changes:
                changes["type"] = self._profile_named(changes["type"])["name"]
            for column, value in changes.items():
                self.sql(f"UPDATE devices SET {column}=? WHERE id=?", (value, old["id"]))
            new = self.device(old["id"])
            for kind in PACKAGE_COLUMNS:
                before, after = self._effective_package(old, kind), self._effective_package(new, kind)
                if after is None or after != before:  # ThingsBoard clears fw_* on any save without one
                    self._announce_package(new["id"], kind, after)
            self.cond.notify_all()
        return new

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
            for table in ("devices", "telemetry", "attributes", "rpc_requests", "claims"):
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
                  oneway: bool = False, persistent: bool = False, expires_ms: int | None = None,
                  additional_info: Any = None) -> int:
        """Queue a server-side RPC for the device; returns its id (0, 1, 2, ... per device).
        It lives until expires_ms (default: now + timeout_ms); `rpc_uuid` gives its REST id."""
        dev = self.device(ref)
        created = now_ms()
        with self.cond:
            rpc_id = self._rpc_counter.get(dev["id"], 0)
            self._rpc_counter[dev["id"]] = rpc_id + 1
            self.sql("INSERT OR REPLACE INTO rpc_requests VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                     (dev["id"], rpc_id, str(uuid.uuid4()), method,
                      json.dumps({} if params is None else params, separators=(",", ":")), int(oneway), int(persistent),
                      "QUEUED", None, created, expires_ms or created + timeout_ms,
                      None if additional_info is None else json.dumps(additional_info)))
            self.cond.notify_all()
        return rpc_id

    def _expire_rpcs(self) -> None:
        self.sql(f"UPDATE rpc_requests SET status='EXPIRED' WHERE expires_ms<? AND {PENDING_RPC}", (now_ms(),))

    def expire_rpc(self, ref: str, rpc_id: int) -> None:
        """End a pending RPC now (its caller gave up): it is never delivered or answered after."""
        self.sql(f"UPDATE rpc_requests SET status='EXPIRED' WHERE device_id=? AND id=? AND {PENDING_RPC}",
                 (self.device(ref)["id"], rpc_id))

    def next_rpc(self, device_id: str) -> dict | None:
        """The oldest RPC the device should get now; marks it DELIVERED (the HTTP transport
        confirms delivery once the poll's reply is written)."""
        with self.cond:
            self._expire_rpcs()
            # A two-way RPC delivered but not answered is delivered again (BURST strategy).
            rows = self.sql(f"SELECT * FROM rpc_requests WHERE device_id=? AND {PENDING_RPC} "
                            "ORDER BY id LIMIT 1", (device_id,))
            if not rows:
                return None
            row = rows[0]
            self.sql("UPDATE rpc_requests SET status='DELIVERED' WHERE device_id=? AND id=?",
                     (device_id, row["id"]))
            self.cond.notify_all()
            return {"id": row["id"], "method": row["method"], "params": json.loads(row["params"])}

    def answer_rpc(self, device_id: str, rpc_id: int, response: bytes) -> None:
        with self.cond:
            self._expire_rpcs()
            self.sql("UPDATE rpc_requests SET status='SUCCESSFUL', response=? WHERE device_id=? AND id=? "
                     "AND oneway=0 AND status IN ('QUEUED','DELIVERED')",
                     (response.decode("utf-8", "replace"), device_id, rpc_id))
            self.cond.notify_all()

    def rpc_status(self, ref: str, rpc_id: int) -> dict:
        """{"status", "response"} of the device's RPC `rpc_id` (its number on the device API)."""
        dev = self.device(ref)
        with self.cond:
            self._expire_rpcs()
            rows = self.sql("SELECT status, response FROM rpc_requests WHERE device_id=? AND id=?",
                            (dev["id"], rpc_id))
        if not rows:
            raise KeyError(rpc_id)
        return dict(rows[0])

    def rpc_uuid(self, ref: str, rpc_id: int) -> str:
        """The id the REST API knows the device's RPC `rpc_id` by."""
        rows = self.sql("SELECT uuid FROM rpc_requests WHERE device_id=? AND id=?", (self.device(ref)["id"], rpc_id))
        if not rows:
            raise KeyError(rpc_id)
        return rows[0]["uuid"]

    def rpc_requests(self, where: str = "1=1", args: tuple = ()) -> list[dict]:
        """Stored RPC rows matching an SQL condition, oldest first, expiry applied."""
        with self.cond:
            self._expire_rpcs()
            return [dict(r) for r in self.sql(f"SELECT * FROM rpc_requests WHERE {where} ORDER BY created_ms, id",
                                              args)]

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
                              policy: str = "ALLOW_CREATE_NEW_DEVICES", type: str = "default") -> dict:
        """Let boards provision themselves into device profile `type` (made if missing) with this
        key and secret. CHECK_PRE_PROVISIONED_DEVICES admits only devices that already exist."""
        profile = self._profile_named(type)
        if self.sql("SELECT 1 FROM device_profiles WHERE provision_key=? AND id<>?", (key, profile["id"])):
            raise ValueError("Device profile with such provision device key already exists!")
        return self.update_device_profile(profile["id"], provision_type=policy, provision_key=key,
                                          provision_secret=secret)

    def claim_request(self, ref: str) -> dict | None:
        dev = self.device(ref)
        rows = self.sql("SELECT secret, expires_ms FROM claims WHERE device_id=?", (dev["id"],))
        return dict(rows[0]) if rows else None

    # ---- OTA packages ----------------------------------------------------------------
    def add_package(self, title: str, version: str, data: bytes | None = None, kind: str = "FIRMWARE",
                    algorithm: str = "SHA256", content_type: str = "application/octet-stream",
                    file_name: str | None = None, profile: str | None = None, tag: str | None = None,
                    url: str | None = None) -> str:
        """Store a firmware/software package of a device profile (default: the default one);
        returns its id. Without data it waits for set_package_data, as ThingsBoard's does."""
        profile_id = (self.device_profile(profile) if profile else self.default_profile())["id"]
        pkg_id = str(uuid.uuid4())
        with self.cond:
            if self.sql("SELECT 1 FROM ota_packages WHERE title=? AND version=?", (title, version)):
                raise ValueError("OtaPackage with such title and version already exists!")
            self.sql("INSERT INTO ota_packages (id, created_ms, title, version, tag, kind, device_profile_id, url) "
                     "VALUES (?,?,?,?,?,?,?,?)", (pkg_id, now_ms(), title, version, tag, kind, profile_id, url))
        if data is not None:
            self.set_package_data(pkg_id, data, algorithm, file_name=file_name or f"{title}-{version}.bin",
                                  content_type=content_type)
        return pkg_id

    def set_package_data(self, pkg_id: str, data: bytes, algorithm: str = "SHA256", checksum: str | None = None,
                         file_name: str = "package.bin", content_type: str = "application/octet-stream") -> dict:
        """The package's file; checksum (ThingsBoard's own when not given) as the device sees it."""
        from .checksums import checksum as compute

        self.package(pkg_id)
        self.sql("UPDATE ota_packages SET data=?, algorithm=?, checksum=?, file_name=?, content_type=? WHERE id=?",
                 (data, algorithm, checksum or compute(algorithm, data), file_name, content_type, pkg_id))
        return self.package(pkg_id)

    def package(self, pkg_id: str) -> dict:
        rows = self.sql("SELECT * FROM ota_packages WHERE id=?", (pkg_id,))
        if not rows:
            raise KeyError(pkg_id)
        return dict(rows[0])

    def delete_package(self, pkg_id: str) -> None:
        """Delete a package nothing uses; ValueError if a device or profile has it assigned."""
        self.package(pkg_id)
        with self.cond:
            for table in ("devices", "device_profiles"):
                if self.sql(f"SELECT 1 FROM {table} WHERE firmware_id=? OR software_id=?", (pkg_id, pkg_id)):
                    kind = "device" if table == "devices" else "device profile"
                    raise ValueError(f"The otaPackage referenced by the {kind} cannot be deleted!")
            self.sql("DELETE FROM ota_packages WHERE id=?", (pkg_id,))

    def _effective_package(self, dev: dict, kind: str) -> str | None:
        column = PACKAGE_COLUMNS[kind]
        return dev[column] or self.device_profile(dev["type"])[column]

    def assigned_package(self, device_id: str, kind: str) -> dict | None:
        """The package of that kind the device follows: its own, else its profile's."""
        pkg_id = self._effective_package(self.device(device_id), kind)
        return self.package(pkg_id) if pkg_id else None

    def assign_package(self, ref: str, pkg_id: str) -> None:
        """Set the device's firmware or software package (what a REST device update does)."""
        self.update_device(ref, **{PACKAGE_COLUMNS[self.package(pkg_id)["kind"]]: pkg_id})

    def _announce_package(self, device_id: str, kind: str, pkg_id: str | None) -> None:
        """What ThingsBoard's OTA state service does for a new target: target_* telemetry and
        the state QUEUED then INITIATED, then a deleted notice and the fw_*/sw_* values; for no
        target, every fw_*/sw_* attribute deleted."""
        prefix = PACKAGE_PREFIX[kind]
        keys = {name: f"{prefix}_{name}" for name in PACKAGE_KEYS}
        if pkg_id is None:
            self.delete_shared_attributes(device_id, list(keys.values()))
            return
        pkg = self.package(pkg_id)
        ts = now_ms()
        target = {f"target_{prefix}_title": pkg["title"], f"target_{prefix}_version": pkg["version"]}
        if pkg["tag"]:
            target[f"target_{prefix}_tag"] = pkg["tag"]
        self.store_telemetry(device_id, ts, {**target, f"target_{prefix}_ts": ts, f"{prefix}_state": "QUEUED"})
        self.store_telemetry(device_id, max(now_ms(), ts + 1), {f"{prefix}_state": "INITIATED"})
        values = {keys["title"]: pkg["title"], keys["version"]: pkg["version"]}
        if pkg["tag"]:
            values[keys["tag"]] = pkg["tag"]
        size = None if pkg["data"] is None else len(pkg["data"])
        for name, value in (("url", pkg["url"]), ("size", size), ("checksum_algorithm", pkg["algorithm"]),
                            ("checksum", pkg["checksum"])):
            if value is not None:
                values[keys[name]] = value
        self.delete_shared_attributes(device_id, [key for key in keys.values() if key not in values])
        self.set_shared_attributes(device_id, values)
