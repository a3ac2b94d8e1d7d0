# What the device loop (app.py) does only at start, or when the server refuses its token: wait
# for a good config.json, load the user's sensors.py, make the platform client, obtain a token.
# The app loads this module for each of these calls and unloads it after.
import binascii
import os

from iotlink import config, net
from iotlink.config_values import valid_wdt_ms
from iotlink.errors import ConfigError, HTTPError, ProvisionError
from iotlink.files import write_atomic
from iotlink.thingsboard import ThingsBoard

CONFIG_RETRY_S = 10  # a missing or broken config.json is read again this often
CHOSEN = "token.chosen"  # the token this board asks ThingsBoard for, kept until it is saved


def wait_for_config(path, wdt):
    # The checked config; while it is missing or broken, say why once and look again later.
    said = None
    while True:
        try:
            return config.load(path)
        except ConfigError as e:
            if str(e) != said:
                said = str(e)
                print("config: %s; waiting for a fixed config (checked every %d s)" % (e, CONFIG_RETRY_S))
        try:
            raw = config.read(path)  # a broken file may still enable the watchdog
            wdt_ms = raw.get("wdt_ms") if isinstance(raw, dict) else None
            if valid_wdt_ms(wdt_ms):
                wdt.start(wdt_ms)
        except ConfigError:
            pass
        net.pause(CONFIG_RETRY_S * 1000, wdt.feed)


def make_client(cfg, timeout):
    # The one place that creates the platform client.
    if cfg["platform"] == "thethings":
        from iotlink.thethings_device import TTDevice  # imported here: ThingsBoard boards keep the RAM

        return TTDevice(cfg["server"], cfg["token"], timeout=timeout, keepalive=True,
                        cadata=config.ca_data(cfg))
    # One kept-alive connection: a TLS handshake per request would cost most of the throughput,
    # and seconds and battery on a board each time.
    return ThingsBoard(cfg["server"], cfg["token"], timeout=timeout, keepalive=True,
                       cadata=config.ca_data(cfg))


def load_sensors():
    # The optional user module sensors.py: (module, None), (None, None) or (None, error).
    try:
        import sensors
    except ImportError as e:
        if "sensors" in str(e):
            return None, None
        return None, "sensors.py: %s" % e
    except Exception as e:  # a syntax error or a failing import inside sensors.py
        return None, "sensors.py: %s: %s" % (type(e).__name__, e)
    if not callable(getattr(sensors, "read", None)):
        return None, "sensors.py has no read()"
    return sensors, None


# ---- a token ---------------------------------------------------------------------------
# The board's access token when config.json has none, or the server refused it: ThingsBoard
# provisioning with the config's key and secret, or thethings.iO activation; saved into
# config.json at once (a server provisions a name only once).
#
# ThingsBoard is asked for a token the board chose and keeps on flash until it is saved: a
# retry after a lost reply is refused (the name now exists), and the chosen token then finds
# the device that earlier try created.
def obtain_token(cfg, path, timeout):
    # A new token, put into cfg and saved into the config file at path.
    token = _request(cfg, timeout)
    cfg["token"] = token
    try:
        config.save_token(token, path)
        print("provision: token saved to %s" % path)
    except (OSError, ConfigError) as e:
        print("provision: token NOT saved (%s); it lasts until the next reset" % e)
        return  # the chosen token stays on flash: the next boot finds its device with it
    try:
        os.remove(CHOSEN)
    except OSError:
        pass  # thethings.iO, or a token the server chose


def _request(cfg, timeout):
    cadata = config.ca_data(cfg)
    if cfg["platform"] == "thethings":
        from iotlink.thethings import TheThings

        print("provision: activating the thing with its activation code")
        return TheThings.activate(cfg["server"], cfg["activation_code"], timeout=timeout, cadata=cadata)
    prov = cfg["provision"]
    name = prov.get("device_name")
    chosen = _chosen()
    print("provision: asking the server for a token%s" % (" as '%s'" % name if name else ""))
    try:
        return ThingsBoard.provision(cfg["server"], name, prov["key"], prov["secret"], timeout=timeout,
                                     cadata=cadata, token=chosen)
    except ProvisionError:
        # Refused, perhaps because an earlier try created the device and only its reply was
        # lost: then the token that try chose works, and the device is ours.
        if not _works(cfg["server"], chosen, timeout, cadata):
            raise
        print("provision: the device was created by an earlier try")
        return chosen


def _chosen():
    # The token this board asks for, on flash before it is sent.
    try:
        with open(CHOSEN) as f:
            token = f.read().strip()
        if token:
            return token
    except OSError:
        pass  # none chosen yet
    token = binascii.hexlify(os.urandom(10)).decode()
    write_atomic(CHOSEN, token.encode())
    return token


def _works(server, token, timeout, cadata):
    try:
        ThingsBoard(server, token, timeout=timeout, cadata=cadata).request_attributes(client_keys=["iotlink_version"])
    except HTTPError as e:
        if e.status in (401, 403):
            return False
        raise
    return True
