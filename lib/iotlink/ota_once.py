# One update, once ota.Updater has decided to take an announced package: download it chunk by
# chunk into one buffer, hash it as it comes, stream it to flash (a tar bundle into the staging
# folder, an ESP32 app image to the next OTA partition), and only once the checksum verifies,
# journal the staged app for boot.py to swap in (ota_swap.begin) or make the image the boot
# partition, then reset.
# ota.Updater.check loads this module for one update and unloads it after a failed one: the
# device loop does not keep this code in RAM.
import gc
import os

from iotlink import http, ota_swap
from iotlink.errors import IotlinkError, UpdateFailed

CHUNK_TRIES = 3  # per chunk: timeouts, dropped connections, 5xx
# What a bundle may never hold, as top-level names: the update guard (boot.py) and its journal,
# and what each board keeps for itself: its config (token, Wi-Fi password), the offline queue,
# a token chosen while provisioning; and the CA file config.json names (reserved_names()).
RESERVED = ("boot.py", ota_swap.DIR, "config.json", "queue", "token.chosen")
ESP32_IMAGE_MAGIC = 0xE9  # first byte of an ESP32 app image; a tar starts with a file name


def reserved_names():
    # RESERVED, and the top-level entry that holds the CA file config.json names ("ca"). The
    # file is read here, not by config_once.py: its checks would take RAM a download needs.
    import json

    from iotlink import config
    from iotlink.files import read

    try:
        ca = json.loads(read(config.PATH)).get("ca")
    except (OSError, ValueError, AttributeError):
        ca = None
    if isinstance(ca, str) and ca.strip("/"):
        return RESERVED + (ca.strip("/").split("/")[0],)
    return RESERVED


def _message(exc):
    if isinstance(exc, (ValueError, IotlinkError)):
        return str(exc)
    return "%s: %s" % (type(exc).__name__, exc)


class Install:
    def __init__(self, updater, prefix, state):
        self.up = updater
        self.prefix = prefix
        self.state = state
        self._sink = None

    def _step(self, name):
        # Between two steps of the update, each bounded (a request ends by its deadline).
        if self.up.feed:
            self.up.feed()
        ota_swap.step(name)

    def _report(self, state, error=None):
        return self.up.report(self.prefix, state, error)

    def run(self, path, offer):
        from iotlink import checksum

        to, size, expected, hasher = offer
        self._report("DOWNLOADING")
        try:
            import machine  # noqa: F401 (now: nothing may fail for want of RAM after the journal)

            self._download(path, to, size, hasher)
            self._report("DOWNLOADED")
            got = checksum.hexdigest(hasher)
            if got != expected:
                raise UpdateFailed("checksum mismatch: %s expected, %s computed" % (expected, got))
            self._step("verified")
            self._report("VERIFIED")
            self._report("UPDATING")
            if hasattr(self._sink, "boot"):
                self._apply_image(to)
            else:
                self._apply_bundle(to)
        except Exception as e:
            self._give_up(_message(e))

    def _give_up(self, error):
        # The old app stays, whole; the server hears why.
        if self._sink:
            self._sink.abort()
            self._sink = None
        if "image" in self.state.get("job", ()):
            ota_swap.finish(self.state, False, error)
            self.up.send_reports(self.state)
            return
        if self.state.pop("job", None):  # journaled, not swapped yet: boot.py would swap it
            ota_swap.save_state(self.state)
        ota_swap.rmtree(ota_swap.STAGE)
        self._report("FAILED", error)

    def _download(self, path, to, size, hasher):
        # Chunk N = bytes [N*S, (N+1)*S) of the package, into one buffer, hashed and written out.
        # The buffer needs chunk_size bytes in one piece. Allocated only now, it costs the loop
        # nothing; in a heap too fragmented after long uptime the update fails (FAILED, a
        # MemoryError) and the next boot, with a young heap, tries the package again.
        gc.collect()
        view = memoryview(bytearray(self.up.chunk_size))
        s = len(view)
        for n in range((size + s - 1) // s):
            part = view[: min(s, size - n * s)]
            self._fetch(path, to, n, part)
            if self._sink is None:
                self._sink = self._open_sink(part[0], size)
            hasher.update(part)
            self._sink.write(part)
            self._step("chunk %d" % n)
        self._sink.close()

    def _fetch(self, path, to, n, part):
        import time

        from iotlink.errors import ConnectionFailed, HTTPError, ProtocolError, Timeout

        want = len(part)
        error = None
        for attempt in range(CHUNK_TRIES):
            if attempt:
                time.sleep_ms(self.up.retry_ms * attempt)
                if self.up.feed:
                    self.up.feed()
            try:
                resp = self.up.tb.open_package(path, to[0], to[1], n, self.up.chunk_size)
                try:
                    length = http.length(resp.headers)
                    if length is not None and length != want:
                        raise UpdateFailed(
                            "chunk %d is %d bytes, %d expected: the announced size does not match "
                            "the package" % (n, length, want)
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

    def _open_sink(self, first_byte, size):
        if first_byte == ESP32_IMAGE_MAGIC:
            if self.prefix != "fw":
                raise UpdateFailed("an ESP32 app image can only be a firmware package")
            from iotlink.ota_esp32 import ImageWriter

            return ImageWriter(size)
        from iotlink import ota_tar

        self._check_space(size)
        ota_swap.rmtree(ota_swap.STAGE)
        try:
            os.mkdir(ota_swap.DIR)
        except OSError:
            pass
        os.mkdir(ota_swap.STAGE)
        return ota_tar.Unpacker(ota_swap.STAGE + "/", reserved_names())

    def _check_space(self, size):
        try:
            st = os.statvfs(".")
        except (OSError, AttributeError):
            return
        free = st[1] * st[4]
        if size > free:
            raise UpdateFailed("package of %d bytes does not fit in %d bytes of free flash" % (size, free))

    def _apply_bundle(self, to):
        import machine

        ota_swap.begin(self.state, self.prefix, to, self._sink.top)
        self._sink = None
        self._step("reset")
        machine.reset()  # boot.py swaps the new app in

    def _apply_image(self, to):
        import machine

        self.state["job"] = {"kind": self.prefix, "to": to, "phase": "trial", "image": self._sink.label}
        ota_swap.save_state(self.state)
        self._step("journal")
        self._sink.boot()
        self._sink = None
        self._step("reset")
        machine.reset()
