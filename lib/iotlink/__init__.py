# iotlink: ThingsBoard and thethings.iO device client for MicroPython.
#
# The modules, grouped by the start of their names. Imports go one way: no module imports,
# however indirectly, one that imports it (tests/device/test_module_graph.py checks).
#
#   (this package)    unload() below
#   errors            every exception iotlink raises
#   files             atomic file writes and reads (a power cut leaves the old file or the new one)
#   config            config.json: where it is, load() (checked once a boot), the CA file
#   config_values       its defaults and the number rules the loop applies too
#   config_once         reading, checking and saving it
#   net               the Wi-Fi station, and waiting without starving the watchdog
#   net_once            joining a network in bounded time (at boot, after a drop)
#   clock             wall-clock time a server has set (None until then)
#   clock_once          setting it: NTP, else the server's HTTP Date header
#   http              what both transports share: bounded reads, JSON, error mapping
#   http_transport      which transport a client gets
#   http_conn           iotlink's HTTP/1.1 connection: kept alive, chunked, verified TLS
#   http_tls_once       the TLS context of an https connection
#   http_oneshot        the port's frozen `requests`, a connection per request
#   http_stream         a never-ending reply read as JSON documents (thethings.iO)
#   thingsboard       the ThingsBoard device API: every URL of it
#   thingsboard_once    provisioning, claiming, client-side RPC
#   thethings         the thethings.iO REST API for one thing
#   thethings_device    thethings.iO in the calls the device loop makes
#   rpc               the RPC methods: GPIO on the config's allowed pins
#   store             the flash queue: framed records in segment files, a head file
#   store_once          opening it at boot (where the unsent records start and end), eviction
#   outbox            telemetry from reading to acknowledged: the store, and a Timeline that
#                     stamps records so their times only go forward, across boots
#   outbox_once         the timeline's once-a-boot work: resumed from the queue, started on
#                       the clock
#   app               the device loop: one supervisor, scheduling, RPC answers, OTA wiring
#   app_once            its start: a good config, the watchdog, the App started (or a wake)
#   app_connect_once    an App's sensors.py and platform client, in either loop
#   app_sleep           a battery board's loop: one wake's work, then deep sleep (deep mode)
#   token_once        a token for a board without one, or whose token was refused
#   ota               updates: what to install, what the server hears (the start-up report)
#   ota_swap            the app's side of the update journal: start a swap, end it
#   ota_once            one update: download, verify, apply
#   ota_tar             a tar package unpacked as it downloads, its names and .mpy files checked
#   ota_esp32           an ESP32 app image written to the next OTA partition
#   checksum          ThingsBoard's package checksums
#   checksum_blocks     a stream cut into whole blocks (pure-Python hashes, image writer)
#   checksum_murmur3    MurmurHash3, 32 and 128 bits
#   checksum_sha512     SHA-512 and SHA-384 for ports without them
#
# The update guard is not here: boot.py, which no update may replace, swaps a verified app in,
# runs it on trial and rolls it back, importing nothing of lib/.
#
# RAM: loaded from .mpy, a module's bytecode lives in the heap as long as the module is loaded.
# So one rule: a module whose name ends in `_once` is imported for one call and unloaded right
# after it (unload() below); every other module stays loaded once imported. The update code is
# the one group unloaded while it has no work: ota and ota_swap go after the start-up report,
# and come back when a package other than the running one is announced. The rest comes with
# use: the loop never imports the OTA modules, http_oneshot or thethings* unless it needs them,
# nor app_sleep unless config.json asks for deep sleep.
__version__ = "0.1.0"


def unload(*names):
    # Unload these iotlink modules (by their short names, e.g. "config_once"). A later import
    # loads them again. Only for modules no live object still uses.
    import sys

    for name in names:
        sys.modules.pop("iotlink." + name, None)
        globals().pop(name, None)

