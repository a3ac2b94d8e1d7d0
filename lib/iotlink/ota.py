# Firmware and software updates (OTA) from ThingsBoard, applied only once their checksum verifies.
#
#   up = ota.Updater(tb, feed=wdt.feed)
#   up.report_boot()                 at start: current_fw_*, confirm a new app, last outcome
#   shared = tb.request_attributes(shared_keys=up.KEYS)["shared"]
#   up.check(shared)                 downloads, verifies and applies a new package; may reset
#
# A package is downloaded chunk by chunk into one buffer, hashed as it comes and streamed to
# flash: a tar bundle is unpacked into a staging folder, an ESP32 app image (first byte 0xE9)
# goes to the next OTA partition. Only after the whole package hashed to the announced checksum
# (and a bundle's .mpy files suit this MicroPython) is the update journaled and the board reset:
# boot.py, the update guard, swaps the staged app in and runs it on trial (an image: the
# bootloader boots it). fw_state goes DOWNLOADING, DOWNLOADED, VERIFIED, UPDATING, then after
# the reset UPDATED once the new app has reached the server; or FAILED with fw_error, and the
# old app keeps running or comes back. A package that was rolled back is not tried again until
# another one is announced.
#
# This module decides and reports; ota_once.py downloads, verifies and applies, loaded for one
# update and unloaded after it, so the device loop keeps in RAM only what follows the
# announcements. Only ota_swap is imported here; the rest comes with use.
from micropython import const

from iotlink import ota_swap, unload

_PREFIXES = const((("fw", "firmware"), ("sw", "software")))
_FIELDS = const(("title", "version", "size", "checksum", "checksum_algorithm", "url"))
_ATTEMPTS = const(3)  # downloads of one package per run; the next boot tries again


def _esp32_partition(job):
    # On an ESP32 always (esp32 is built in); elsewhere only for an image job (the tests' fake).
    import sys

    if sys.platform != "esp32" and not (job and "image" in job):
        return None
    try:
        from esp32 import Partition
    except ImportError:
        return None
    return Partition


def follow(app):
    # The device loop's start-up report (app.App.report_boot): what runs, a new app kept. Once
    # the server took it, the app follows the fw_*/sw_* attributes with app.check_updates, which
    # compares them with app.running and loads this module again only for another package.
    # Raises why the server did not take the report.
    up = Updater(app.client, feed=app.feed)
    if not up.report_boot():
        raise up.error
    app.running = up.running()
    app.follow(Updater.KEYS, app.check_updates)


class Updater:
    KEYS = tuple(p + "_" + f for p, _ in _PREFIXES for f in _FIELDS)

    def __init__(self, tb, chunk_size=4096, feed=None):
        # feed: called between the steps of an update, each short (a chunk, a request): the
        # app's watchdog feed, which nothing else calls while an update downloads.
        self.tb = tb
        self.feed = feed
        self.chunk_size = chunk_size  # the download buffer, allocated when an update starts
        self.retry_ms = 500  # pause before a chunk's 2nd try, twice that before the 3rd
        self._tries = {}
        self._last_ts = 0
        self.error = None  # why the last report did not reach the server

    # ---- what runs, and telling the server ---------------------------------------------
    def _running(self, state, prefix):
        # [title, version] of what runs: a new app on trial counts as running.
        job = state.get("job")
        if job and job["kind"] == prefix and job["phase"] == "trial":
            return job["to"]
        run = state.get("run", {}).get(prefix)
        if run:
            return run
        if prefix == "fw":
            from iotlink import __version__

            return ["iotlink", __version__]
        return None

    def _telemetry(self, values):
        # True when the server took it. States get distinct, increasing timestamps: the client's
        # once a server has set the clock (clock.py), the server's until then.
        import time

        from iotlink import clock
        from iotlink.errors import IotlinkError

        now = clock.now_ms()
        try:
            if now is None:
                time.sleep_ms(2)  # server-side timestamps: keep successive states apart
                self.tb.send_telemetry(values)
            else:
                self._last_ts = max(now, self._last_ts + 1)
                self.tb.send_telemetry(values, ts=self._last_ts)
        except (IotlinkError, OSError) as e:
            self.error = e
            return False
        return True

    def report(self, prefix, state, error=None):
        # Tell the server the update's state (fw_state/sw_state, and why it FAILED); True when
        # the server took it, else self.error says why not.
        values = {prefix + "_state": state}
        if error is not None:
            values[prefix + "_error"] = error
        return self._telemetry(values)

    def send_reports(self, state):
        # The states still to report (a finished or rolled-back job's), each kept until sent.
        reports = state.get("report")
        if not reports:
            return
        for prefix in list(reports):
            r = reports[prefix]
            if self.report(prefix, r["state"], r.get("error")):
                del reports[prefix]
        ota_swap.save_state(state)

    def report_boot(self):
        # At every start. Returns whether the server was reached; only then is a new app or
        # image kept (ESP32: marked valid, which cancels the bootloader's rollback).
        state = ota_swap.load_state()
        job = state.get("job")
        part = _esp32_partition(job)
        if job and "image" in job:
            running = part(part.RUNNING).info()[4] if part else None
            if running != job["image"]:
                ota_swap.finish(state, False, "firmware %s %s %s: rolled back to %s"
                                % (job["to"][0], job["to"][1], job.get("error", "did not start"), running))
                job = None
        current = {}
        for prefix, _ in _PREFIXES:
            run = self._running(state, prefix)
            if run:
                current["current_%s_title" % prefix] = run[0]
                current["current_%s_version" % prefix] = run[1]
        if not self._telemetry(current):
            return False
        if part:
            try:
                part.mark_app_valid_cancel_rollback()
            except OSError:
                pass  # a build without rollback support
        if job and job["phase"] == "trial":
            ota_swap.finish(state, True)
        self.send_reports(state)
        return True

    def running(self):
        # {prefix: [title, version] or None}: what runs now, for each kind of package.
        state = ota_swap.load_state()
        return {prefix: self._running(state, prefix) for prefix, _ in _PREFIXES}

    # ---- deciding --------------------------------------------------------------------
    def check(self, shared):
        # shared: the fw_*/sw_* shared attributes. Updates what differs from what runs.
        state = ota_swap.load_state()
        if state.get("job"):
            return  # the last update still waits for its new app to reach the server
        for prefix, path in _PREFIXES:
            offer = self._offer(prefix, shared, state)
            if offer:
                from iotlink import ota_once

                try:
                    ota_once.Install(self, prefix, state).run(path, offer)  # resets the board when applied
                finally:
                    unload("ota_once")

    def _offer(self, prefix, shared, state):
        title = shared.get(prefix + "_title")
        version = shared.get(prefix + "_version")
        if title is None or version is None:
            return None
        to = [str(title), str(version)]  # a version set through the REST API may be a number
        if to == self._running(state, prefix) or to == state.get("refused", {}).get(prefix):
            return None
        key = (prefix, to[0], to[1])
        tries = self._tries.get(key, 0)
        if tries >= _ATTEMPTS:
            return None
        self._tries[key] = tries + 1
        size = shared.get(prefix + "_size")
        expected = shared.get(prefix + "_checksum")
        algorithm = shared.get(prefix + "_checksum_algorithm")
        from iotlink.errors import UpdateFailed

        try:
            if size is None or not expected or not algorithm:
                if shared.get(prefix + "_url"):
                    raise UpdateFailed("URL packages are not supported")
                raise UpdateFailed("package announced without size and checksum: not applied")
            if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
                raise UpdateFailed("bad %s_size: %s" % (prefix, size))
            from iotlink import checksum

            hasher = checksum.new(algorithm)
        except (UpdateFailed, ValueError) as e:
            self.report(prefix, "FAILED", str(e))
            return None
        return to, size, str(expected).lower(), hasher
