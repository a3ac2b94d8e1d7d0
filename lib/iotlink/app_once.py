# What the device loop (app.py) does only at start: wait for a good config.json, then load the
# user's sensors.py and make the platform client. The app loads this module for each of the two
# calls and unloads it after.
import time

from iotlink import config, net
from iotlink.config_values import valid_wdt_ms
from iotlink.errors import ConfigError
from iotlink.thingsboard import ThingsBoard

CONFIG_RETRY_S = 10  # a missing or broken config.json is read again this often


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


def start(app):
    # The App's sensors and client; a token first where config.json has none. Failures go to
    # app.recover(), which says when to try again.
    app.sensors, app.sensor_error = load_sensors()
    while app.client is None:
        app.wdt.feed()
        try:
            if not app.cfg.get("token"):
                app.ensure_wifi()
                app.provision()
            app.client = make_client(app.cfg, app.timeout_s)
        except Exception as e:
            app.recover(e)
            net.pause(time.ticks_diff(app.retry_at, time.ticks_ms()), app.wdt.feed)


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
