# Firmware and software updates (OTA) from ThingsBoard, applied only once their checksum verifies.
#
#   ota.resume()                     first thing in boot.py (see swap.py for the flash journal)
#   up = ota.Updater(tb)
#   up.report_boot()                 at start: current_fw_*, confirm a new app, last outcome
#   shared = tb.request_attributes(shared_keys=up.KEYS)["shared"]
#   up.check(shared)                 downloads, verifies and applies a new package; may reset
#
# A package is downloaded chunk by chunk into one buffer, hashed as it comes and streamed to
# flash: a tar bundle is unpacked into a staging folder, an ESP32 app image (first byte 0xE9)
# goes to the next OTA partition. Only after the whole package hashed to the announced checksum
# is the staged app swapped in (swap.py) or the image made the boot partition. fw_state goes
# DOWNLOADING, DOWNLOADED, VERIFIED, UPDATING, then after the reset UPDATED once the new app has
# reached the server; or FAILED with fw_error, and the old app keeps running. A package that was
# rolled back is not tried again until another one is announced.
#
# Only swap is imported here, so that boot.py's resume() stays light; the rest comes with use.
import os

from iotlink import swap
from iotlink.swap import resume  # noqa: F401 (the contract's ota.resume)

PREFIXES = (("fw", "firmware"), ("sw", "software"))
FIELDS = ("title", "version", "size", "checksum", "checksum_algorithm", "url")
CHUNK_TRIES = 3  # per chunk: timeouts, dropped connections, 5xx
ATTEMPTS = 3  # downloads of one package per run; the next boot tries again
RESERVED = (swap.DIR, "config.json")  # what a bundle may never replace
ESP32_IMAGE_MAGIC = 0xE9  # first byte of an ESP32 app image; a tar starts with a file name


class UpdateFailed(Exception):
    pass


def _message(exc):
    from iotlink.errors import IotlinkError

    if isinstance(exc, (UpdateFailed, ValueError, IotlinkError)):
        return str(exc)
    return "%s: %s" % (type(exc).__name__, exc)


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


class Updater:
    KEYS = tuple(p + "_" + f for p, _ in PREFIXES for f in FIELDS)

    def __init__(self, tb, root="/", chunk_size=4096):
        self.tb = tb
        self.base = swap.base_of(root)
        self.chunk_size = chunk_size
        # Allocated now, while the heap is young: after days of uptime a fragmented heap may
        # have 15 KiB free and no 4 KiB in one piece.
        self._buf = memoryview(bytearray(chunk_size))
        self.retry_ms = 500  # pause before a chunk's 2nd try, twice that before the 3rd
        self._tries = {}
        self._last_ts = 0
        self._sink = None

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
        # True when the server took it. States get distinct, increasing timestamps.
        import sys
        import time

        from iotlink.errors import IotlinkError

        # Client timestamps only once the app has set the clock (it imported iotlink.clock then).
        clock = sys.modules.get("iotlink.clock")
        now = clock.now_ms() if clock else None
        try:
            if now is None:
                time.sleep_ms(2)  # server-side timestamps: keep successive states apart
                self.tb.send_telemetry(values)
            else:
                self._last_ts = max(now, self._last_ts + 1)
                self.tb.send_telemetry(values, ts=self._last_ts)
        except (IotlinkError, OSError):
            return False
        return True

    def _report(self, prefix, state, error=None):
        values = {prefix + "_state": state}
        if error is not None:
            values[prefix + "_error"] = error
        return self._telemetry(values)

    def _send_reports(self, state):
        reports = state.get("report")
        if not reports:
            return
        for prefix in list(reports):
            r = reports[prefix]
            if self._report(prefix, r["state"], r.get("error")):
                del reports[prefix]
        swap.save_state(self.base, state)

    def report_boot(self):
        # At every start. Returns whether the server was reached; only then is a new app or
        # image kept (ESP32: marked valid, which cancels the bootloader's rollback).
        state = swap.load_state(self.base)
        job = state.get("job")
        part = _esp32_partition(job)
        if job and "image" in job:
            running = part(part.RUNNING).info()[4] if part else None
            if running != job["image"]:
                swap.finish(self.base, state, False, "firmware %s %s did not start: rolled back to %s"
                            % (job["to"][0], job["to"][1], running))
                job = None
        current = {}
        for prefix, _ in PREFIXES:
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
            swap.finish(self.base, state, True)
        self._send_reports(state)
        return True

    # ---- deciding --------------------------------------------------------------------
    def check(self, shared):
        # shared: the fw_*/sw_* shared attributes. Updates what differs from what runs.
        state = swap.load_state(self.base)
        if state.get("job"):
            return  # the last update still waits for its new app to reach the server
        for prefix, path in PREFIXES:
            offer = self._offer(prefix, shared, state)
            if offer:
                self._update(prefix, path, offer, state)

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
        if tries >= ATTEMPTS:
            return None
        self._tries[key] = tries + 1
        size = shared.get(prefix + "_size")
        expected = shared.get(prefix + "_checksum")
        algorithm = shared.get(prefix + "_checksum_algorithm")
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
            self._report(prefix, "FAILED", str(e))
            return None
        return to, size, str(expected).lower(), hasher

    # ---- doing -----------------------------------------------------------------------
    def _update(self, prefix, path, offer, state):
        from iotlink import checksum

        to, size, expected, hasher = offer
        self._report(prefix, "DOWNLOADING")
        try:
            import machine  # noqa: F401 (now: nothing may fail for want of RAM after the swap)

            self._download(prefix, path, to, size, hasher)
            self._report(prefix, "DOWNLOADED")
            got = checksum.hexdigest(hasher)
            if got != expected:
                raise UpdateFailed("checksum mismatch: %s expected, %s computed" % (expected, got))
            swap.step("verified")
            self._report(prefix, "VERIFIED")
            self._report(prefix, "UPDATING")
            if hasattr(self._sink, "boot"):
                self._apply_image(prefix, to, state)
            else:
                self._apply_bundle(prefix, to, state)
        except Exception as e:
            self._give_up(prefix, state, _message(e))

    def _give_up(self, prefix, state, error):
        # The old app stays (or comes back) whole; the server hears why.
        if self._sink:
            self._sink.abort()
            self._sink = None
        job = state.get("job")
        if job is None:
            swap.rmtree(self.base + swap.STAGE)
            self._report(prefix, "FAILED", error)
            return
        if "image" in job:
            swap.finish(self.base, state, False, error)
        else:
            swap.roll_back(self.base, state, error)
        self._send_reports(state)

    def _download(self, prefix, path, to, size, hasher):
        # Chunk N = bytes [N*S, (N+1)*S) of the package, into one buffer, hashed and written out.
        view = self._buf
        s = len(view)
        self._sink = None
        for n in range((size + s - 1) // s):
            part = view[: min(s, size - n * s)]
            self._fetch(path, to, n, part)
            if self._sink is None:
                self._sink = self._open_sink(prefix, part[0], size)
            hasher.update(part)
            self._sink.write(part)
            if swap.hook:
                swap.hook("chunk %d" % n)
        self._sink.close()

    def _fetch(self, path, to, n, part):
        import time

        from iotlink import http
        from iotlink.errors import ConnectionFailed, HTTPError, ProtocolError, Timeout

        want = len(part)
        error = None
        for attempt in range(CHUNK_TRIES):
            if attempt:
                time.sleep_ms(self.retry_ms * attempt)
            try:
                resp = self.tb.open_package(path, to[0], to[1], n, self.chunk_size)
                try:
                    length = resp.headers.get("content-length")
                    if length is not None and int(length) != want:
                        raise UpdateFailed(
                            "chunk %d is %d bytes, %d expected: the announced size does not match "
                            "the package" % (n, int(length), want)
                        )
                    got = http.read_into(resp, part)
                finally:
                    resp.close()
                if got == want:
                    return
                error = "truncated at %d of %d bytes" % (got, want)
            except HTTPError as e:
                if e.status < 500:
                    raise UpdateFailed("chunk %d refused: %s" % (n, e))
                error = str(e)
            except (Timeout, ConnectionFailed, ProtocolError) as e:
                error = _message(e)
        raise UpdateFailed("chunk %d failed %d times: %s" % (n, CHUNK_TRIES, error))

    def _open_sink(self, prefix, first_byte, size):
        if first_byte == ESP32_IMAGE_MAGIC:
            if prefix != "fw":
                raise UpdateFailed("an ESP32 app image can only be a firmware package")
            from iotlink.esp32img import ImageWriter

            return ImageWriter(size)
        from iotlink import tar

        self._check_space(size)
        stage = self.base + swap.STAGE
        swap.rmtree(stage)
        try:
            os.mkdir(self.base + swap.DIR)
        except OSError:
            pass
        os.mkdir(stage)
        return tar.Unpacker(stage + "/", RESERVED)

    def _check_space(self, size):
        try:
            st = os.statvfs(self.base or ".")
        except (OSError, AttributeError):
            return
        free = st[1] * st[4]
        if size > free:
            raise UpdateFailed("package of %d bytes does not fit in %d bytes of free flash" % (size, free))

    def _apply_bundle(self, prefix, to, state):
        import machine

        swap.begin(self.base, state, prefix, to, self._sink.top)
        self._sink = None
        swap.roll_forward(self.base, state)
        swap.step("reset")
        machine.reset()

    def _apply_image(self, prefix, to, state):
        import machine

        state["job"] = {"kind": prefix, "to": to, "phase": "trial", "image": self._sink.label}
        swap.save_state(self.base, state)
        swap.step("journal")
        self._sink.boot()
        self._sink = None
        swap.step("reset")
        machine.reset()
