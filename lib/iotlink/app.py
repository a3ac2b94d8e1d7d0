# The device loop: config, Wi-Fi, token, then for months: telemetry every interval, RPC
# long-polls in between, shared attributes read every few cycles.
#
# One thread, one supervisor: every piece of server work runs from App.step(), and any failure
# ends in App.recover(), the one place that decides what happens next (keep the telemetry
# queued, back off with jitter, or wait long after the server refused the device). Taking a
# reading never waits for the server: the outbox (outbox.py) has it on flash at once, and sends
# its queue in batches, oldest first.
#
# Integrations hook in without touching the loop:
#   app.rpc.register("reboot", fn)            more RPC methods
#   app.follow(["fw_title", ...], handler)    handler(shared_attributes_dict) every read
#   app.start_tasks.append(fn)                fn() once the server is reachable (retried)
import gc
import random
import sys
import time

import machine
from micropython import const

from iotlink import __version__, clock, config, net, unload
from iotlink.config_values import positive_number
from iotlink.errors import ConfigError, HTTPError, IotlinkError, ProvisionError, WifiError
from iotlink.http import DEADLINE
from iotlink.outbox import Outbox
from iotlink.rpc import GPIO_METHODS, Dispatcher
from iotlink.thingsboard import MAX_POLL_MS

_RESTART_DELAY_S = const(30)  # after an error nothing else caught: reset the board this much later
_REFUSED_RETRY_S = const(300)  # after 401/403 or refused provisioning: ask again this rarely
_HTTP_TIMEOUT_S = const(10)
_ATTRIBUTES_EVERY_MS = const(60000)  # at most; sooner (3 cycles) with a short interval
_ATTRIBUTE_CYCLES = const(3)
_MIN_POLL_MS = const(50)  # less time than this until the next job: sleep instead of polling
CLOCK_RESYNC_MS = const(24 * 3600 * 1000)  # set the clock again this often (drift)
# Not set though the server answers (no NTP, a Date lost to a bad network): try again this
# often. Short: until then records carry only their uptime, and a power cut leaves them unplaced.
_CLOCK_RETRY_MS = const(15 * 1000)
_UNSTAMPED_AFTER_MS = const(60 * 1000)  # no clock after this long: send records placed without one
# Out of memory this many times with no success between: the heap stays too fragmented for the
# loop's requests, and only a reset makes it whole again (the queue is on flash: nothing is lost).
_MEMORY_ERRORS_BEFORE_RESET = const(10)
_BATCH_BYTES = const(4096)  # of queued JSON per request at most; less when the heap is short
_REFUSED = const((401, 403))  # the device itself: recover() waits long (or provisions again)
# The records themselves: the batch is halved until the one record refused is alone, and that
# one is dropped. Any other 4xx (a proxy's 404, 405, 409, 410...) says nothing about the
# records: they stay queued and recover() backs off as after a network error.
_BAD_RECORDS = const((400, 413))


def _unwatched():
    pass  # the feed of a board without a watchdog (no wdt_ms in config.json)


def _ms(seconds):
    return int(seconds * 1000)


def _plain(value, depth=0):
    # A value the server can store. MicroPython's json.dumps writes nan, inf and unknown objects
    # as text that is not JSON, which would make the server refuse the whole request.
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return value - value == 0  # false for nan and inf
    if depth < 3 and isinstance(value, list):
        return all(_plain(v, depth + 1) for v in value)
    if depth < 3 and isinstance(value, dict):
        return all(isinstance(k, str) and _plain(value[k], depth + 1) for k in value)
    return False


def describe(e):
    if isinstance(e, HTTPError):
        return "HTTP %d %s" % (e.status, e.message)
    return "%s %s" % (type(e).__name__, e)


class App:
    # app_once.start() makes and starts it: feed is its machine.WDT's (app_once.watchdog), or None.
    def __init__(self, cfg, feed=None, path=config.PATH, boot=None):
        self.cfg = cfg
        self.feed = feed or _unwatched
        self.path = path
        self.interval_ms = _ms(cfg["interval_s"])
        self.backoff_max_ms = _ms(cfg["backoff_max_s"])
        wdt_ms = cfg.get("wdt_ms")
        # A blocking call cannot feed the watchdog: requests and polls must end well before it.
        # A request ends within DEADLINE timeouts, whatever the server does (http.wait).
        self.timeout_s = max(1, min(_HTTP_TIMEOUT_S, wdt_ms // (1000 * (DEADLINE + 1)))) if wdt_ms else _HTTP_TIMEOUT_S
        self.poll_max_ms = min(MAX_POLL_MS, wdt_ms // 2) if wdt_ms else MAX_POLL_MS
        self.rpc = Dispatcher(cfg["pins"])
        self.outbox = Outbox(cfg["queue_kb"] * 1024, boot)
        self.batch_records = None  # records per batch while a refused batch is halved
        self.sensors = None  # the user's sensors.py, once start() loaded it
        self.sensor_error = None  # why it could not be used
        self.shared_keys = ["interval_s"]
        self.attribute_handlers = [self.apply_shared]
        self.start_tasks = [self.announce]
        self.client = None
        self.updater = None  # ota.Updater once a package other than the running one is announced
        self.running = {}  # what runs, for each kind of package, once reported
        self.last_rpc = None  # (request, reply): ThingsBoard delivers an unanswered RPC again
        self.failures = 0
        self.memory_errors = 0  # since the last success
        self.retry_at = None  # ticks before which the server is left alone
        self.token_refused = False  # a 401/403 with provisioning keys: ask for a new token
        now = time.ticks_ms()
        self.up_ms = 0
        self.up_ticks = now
        self.last_send = now
        self.next_send = now
        self.next_attributes = now
        self.next_clock = now
        self.clock_failed = False

    # ---- extension points ------------------------------------------------------------
    def follow(self, keys, handler):
        # Read these shared attributes with the others and pass them all to handler(dict).
        for key in keys:
            if key not in self.shared_keys:
                self.shared_keys.append(key)
        self.attribute_handlers.append(handler)

    # ---- updates (OTA) ---------------------------------------------------------------
    # fw_*/sw_* shared attributes start an update; the running versions and the last update's
    # outcome are reported once the server is reachable (which keeps a new app). The OTA code
    # (ota, ota_swap) is in RAM only while it has work: for that report, then from the first
    # announcement of a package other than the one that runs.
    def report_boot(self):
        # ThingsBoard's first start task (app_connect_once.connect): ota.follow() reports, then
        # has this App follow the announcements with check_updates().
        try:
            from iotlink import ota

            ota.follow(self)  # raises why the server did not take the report: recover() decides
        except MemoryError:
            # A board too full for updates still sends its telemetry. Retrying would hold the
            # OTA code in RAM and fail again, with the queue waiting behind this task.
            print("ota: not enough free memory: updates off until a reset")
        finally:
            ota = None  # so that gc.collect() can free the OTA code
            unload("ota", "ota_swap")  # before a retry too: the next try loads it again
            gc.collect()

    def check_updates(self, shared):
        # Every attribute read, once the report is in: the OTA code comes back only for a
        # package other than the one that runs (self.running, from ota.follow).
        if self.updater is None:
            for prefix in self.running:
                title = shared.get(prefix + "_title")
                version = shared.get(prefix + "_version")
                if None not in (title, version) and [str(title), str(version)] != self.running[prefix]:
                    break
            else:
                return  # nothing new announced
            from iotlink.ota import Updater

            # Kept: it counts the tries of each package. It feeds the watchdog while it downloads.
            self.updater = Updater(self.client, feed=self.feed)
        self.updater.check(shared)

    def renew_token(self):
        # After a 401/403 with provisioning keys (recover()): token_once.py asks for a new token.
        # A method of its own: a frame that named the module would keep it in RAM.
        from iotlink import token_once

        try:
            token_once.renew(self)
        finally:
            unload("token_once")

    # ---- the loop --------------------------------------------------------------------
    def run(self):
        while True:
            self.feed()
            now = time.ticks_ms()
            if time.ticks_diff(now, self.next_send) >= 0:
                self.take_reading(now)
            elif self.retry_at is not None and time.ticks_diff(self.retry_at, now) > 0:
                until = self.next_send
                if time.ticks_diff(self.retry_at, until) < 0:
                    until = self.retry_at
                net.pause(time.ticks_diff(until, now), self.feed)
            else:
                try:
                    answered = self.step()
                except Exception as e:
                    self.recover(e)
                else:
                    if answered:
                        self.healthy()

    def step(self):
        # One piece of work, most urgent first; True when the server answered.
        self.ensure_wifi()
        if self.token_refused:
            self.renew_token()
        if time.ticks_diff(time.ticks_ms(), self.next_clock) >= 0:
            self.sync_clock()
        if self.start_tasks:
            self.start_tasks[0]()
            self.start_tasks.pop(0)
        elif time.ticks_diff(time.ticks_ms(), self.next_attributes) >= 0:
            self.read_attributes()
        elif self.outbox.pending and (clock.synced() or self.uptime_ms() > _UNSTAMPED_AFTER_MS):
            # Records read before the clock was set get their time at sending (outbox.py):
            # hold them until it is set, unless the server never gives a time.
            self.send_batch()
        else:
            return self.poll_rpc()
        return True

    def ensure_wifi(self):
        wifi = self.cfg.get("wifi")
        if wifi and not net.isconnected():
            print("wifi: connecting to '%s'" % wifi["ssid"])
            from iotlink import net_once

            try:
                print("wifi: up, %s" % net_once.connect(wifi, idle=self.feed))
            finally:
                unload("net_once")

    def sync_clock(self):
        # Client timestamps need a clock a server has set (NTP, else the server's Date header).
        # Until then records carry their uptime, and every step tries again before its own
        # request, so the first answer after an outage sets the clock before the queue goes.
        # Setting it (clock_once.py) is loaded for that moment only.
        from iotlink import clock_once

        try:
            synced = clock_once.sync(self.cfg["server"], timeout=self.timeout_s, transport=self.client.transport)
        finally:
            unload("clock_once")
        self.clock_failed = not synced
        if synced:
            print("clock: set")
            self.outbox.clock_set(clock.now_ms(), self.uptime_ms())
            self.next_clock = time.ticks_add(time.ticks_ms(), CLOCK_RESYNC_MS)

    def healthy(self):
        if self.retry_at is not None:
            print("server: reachable again")
        self.failures = 0
        self.memory_errors = 0
        self.retry_at = None
        if self.clock_failed:
            # The server answers but the clock was not set (no NTP, no Date header): later.
            self.clock_failed = False
            self.next_clock = time.ticks_add(time.ticks_ms(), _CLOCK_RETRY_MS)

    def recover(self, e):
        # The one place that decides what a failure means and when to try again.
        if isinstance(e, MemoryError):
            gc.collect()
            self.memory_errors += 1
            if self.memory_errors >= _MEMORY_ERRORS_BEFORE_RESET:
                print("memory: short %d times since the last success" % self.memory_errors)
                raise e  # run() resets the board
        refused = isinstance(e, HTTPError) and e.status in _REFUSED
        # 401 (unknown token) or 403 (device deleted): with provisioning keys, a new device.
        if refused and self.cfg["platform"] == "thingsboard" and self.cfg.get("provision"):
            self.token_refused = True  # not final: the next step provisions again (renew_token)
            refused = False
        if refused or isinstance(e, (ProvisionError, ConfigError)):
            delay = _REFUSED_RETRY_S * 1000
            what = "refused: %s; fix config.json (token, provision) or the server" % describe(e)
        else:
            if not isinstance(e, (IotlinkError, OSError, MemoryError)):
                sys.print_exception(e)  # a bug, not the network: show where
            self.failures += 1
            ceiling = min(1000 << min(self.failures - 1, 16), self.backoff_max_ms)
            delay = ceiling // 2 + random.getrandbits(16) % (ceiling // 2 + 1)  # jitter
            what = describe(e)
        self.retry_at = time.ticks_add(time.ticks_ms(), delay)
        where = "wifi" if isinstance(e, WifiError) else "server"
        print("%s: %s; next try in %d s, %d queued" % (where, what, (delay + 500) // 1000, self.outbox.pending))

    # ---- telemetry -------------------------------------------------------------------
    def uptime_ms(self):
        # ticks wrap after days: add up the differences instead.
        now = time.ticks_ms()
        self.up_ms += time.ticks_diff(now, self.up_ticks)
        self.up_ticks = now
        return self.up_ms

    def values(self):
        # The sensors' values (sensors.py), and the board's own: uptime, free heap, drops.
        values = {}
        error = self.sensor_error
        if self.sensors is not None:
            try:
                read = self.sensors.read()
                if not isinstance(read, dict):
                    raise TypeError("read() returned %s, not a dict" % type(read).__name__)
                for key in read:
                    if isinstance(key, str) and key and _plain(read[key]):
                        values[key] = read[key]
                    else:
                        error = "read() returned %r: not a name and a JSON value" % (key,)
            except Exception as e:  # the user's code: report it, never stop the board
                error = "%s: %s" % (type(e).__name__, e)
        if error:
            values["sensor_error"] = error[:120]
        gc.collect()
        values["uptime_s"] = self.uptime_ms() // 1000
        values["mem_free"] = gc.mem_free()
        if self.outbox.dropped:
            values["dropped"] = self.outbox.dropped
        return values

    def take_reading(self, now):
        # Time for telemetry: read it now, whatever the server's state, into the outbox.
        values = self.values()
        self.outbox.add(values, clock.now_ms(), self.uptime_ms())
        self.last_send = now
        self.next_send = time.ticks_add(self.next_send, self.interval_ms)
        if time.ticks_diff(self.next_send, now) <= 0:  # fell behind: no burst to catch up
            self.next_send = time.ticks_add(now, self.interval_ms)

    def send_batch(self):
        # A batch takes about 3 times its JSON in RAM (the records, the body, the request): a
        # board with less free heap drains its queue in smaller requests instead of failing on them.
        gc.collect()
        body, receipt = self.outbox.batch(min(_BATCH_BYTES, gc.mem_free() // 4), self.batch_records)
        count = self.outbox.count(receipt)
        try:
            self.client.send_telemetry(body)
        except HTTPError as e:
            if e.status not in _BAD_RECORDS:
                raise
            if count > 1:
                self.batch_records = count // 2
                print("queue: server refused %d records (HTTP %d): sending %d at a time"
                      % (count, e.status, self.batch_records))
                return
            # Refused alone, for good: it leaves the queue as dropped, and must not block the rest.
            self.outbox.sent(receipt, True)
            self.batch_records = None
            print("queue: server refused a record (HTTP %d): dropped" % e.status)
            return
        self.outbox.sent(receipt)
        if not self.outbox.pending:
            self.batch_records = None
        print("queue: sent %d, %d left" % (count, self.outbox.pending))

    # ---- attributes ------------------------------------------------------------------
    def announce(self):
        self.client.send_attributes({"gpio_pins": self.rpc.names(), "iotlink_version": __version__})

    def read_attributes(self):
        every = min(_ATTRIBUTES_EVERY_MS, _ATTRIBUTE_CYCLES * self.interval_ms)
        self.next_attributes = time.ticks_add(time.ticks_ms(), every)
        shared = self.client.request_attributes(shared_keys=self.shared_keys)["shared"]
        for handler in self.attribute_handlers:
            try:
                handler(shared)
            except (IotlinkError, OSError):
                raise  # the network: recover() handles it
            except Exception as e:
                print("attributes: handler failed")
                sys.print_exception(e)

    def apply_shared(self, shared):
        # interval_s as a shared attribute overrides config.json; deleting it restores that.
        value = shared.get("interval_s", self.cfg["interval_s"])
        if not positive_number(value):
            print("attributes: interval_s ignored (not a positive number)")
            return
        if _ms(value) != self.interval_ms:
            self.interval_ms = _ms(value)
            self.next_send = time.ticks_add(self.last_send, self.interval_ms)
            print("interval: %s s" % value)

    # ---- RPC -------------------------------------------------------------------------
    def poll_rpc(self):
        # Wait for an RPC until the next job is due; True when the server answered.
        now = time.ticks_ms()
        wait = min(
            time.ticks_diff(self.next_send, now),
            time.ticks_diff(self.next_attributes, now),
            self.poll_max_ms,
        )
        if wait < _MIN_POLL_MS:
            net.pause(max(wait, 0), self.feed)
            return False
        request = self.client.wait_rpc(wait)
        if request is not None:
            self.answer(request)
        return True

    def answer(self, request):
        try:
            rpc_id = int(request["id"])
        except (TypeError, ValueError):
            print("rpc: request without a usable id ignored")
            return
        if self.last_rpc is not None and self.last_rpc[0] == request:
            reply = self.last_rpc[1]  # delivered again: our reply was lost, don't run it twice
            print("rpc %d: delivered again, same reply" % rpc_id)
        else:
            method = request["method"]
            params = request.get("params")
            reply = self.rpc.handle(method, params)
            self.last_rpc = (request, reply)
            # The console line: "rpc 5 setGpio pin=23 value=1 -> ok"; the params of a GPIO
            # method only (an application's own may carry secrets).
            line = "rpc %d %s" % (rpc_id, method)
            if method in GPIO_METHODS and isinstance(params, dict):
                for key in ("pin", "value", "enabled"):
                    if key in params:
                        line += " %s=%s" % (key, str(params[key])[:16])
            print(line, "->", "error" if isinstance(reply, dict) and "error" in reply else "ok")
        self.client.reply_rpc(rpc_id, reply)


def run(path=config.PATH, setup=None):
    # The firmware's loop, for ever. setup(app), if given, is an app's own additions (RPC methods,
    # followed attributes, start tasks), made before the loop starts.
    print("iotlink %s" % __version__)
    try:
        started(path, setup).run()
    except Exception as e:
        # Whatever escaped (a bug, memory gone for good): a board at the REPL serves nobody,
        # so say what happened and start over clean, a while later.
        sys.print_exception(e)
        print("iotlink: restarting in %d s" % _RESTART_DELAY_S)
        time.sleep(_RESTART_DELAY_S)
        machine.reset()


def started(path, setup):
    # The App, started by app_once.py (a battery board: this wake, app_sleep.py's). In a function
    # of its own: run() never returns, and a module it imported would stay in its frame.
    from iotlink import app_once

    try:
        return app_once.start(App, path, setup)
    finally:
        unload("app_once")
