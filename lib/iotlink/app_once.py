# What app.run() does only at start: wait for a good config.json, start the watchdog, make the
# App and start it (app_connect_once.py: sensors.py, the platform client), or on a battery board
# make this wake (app_sleep.py). app.run() loads this module for that and unloads it before the
# loop runs.
import gc
import time

import machine

from iotlink import config, net, unload
from iotlink.config_values import valid_wdt_ms
from iotlink.errors import ConfigError

CONFIG_RETRY_S = 10  # a missing or broken config.json is read again this often


def start(App, path, setup):
    # What app.run() runs for ever: the App, started; on a battery board, this wake (run once
    # this module is unloaded). App: the device loop's class; setup(app), if given: an app's own
    # additions.
    cfg, feed = load_config(path)
    if cfg.get("sleep", {}).get("mode") == "deep":
        from iotlink import app_sleep  # a battery board: this wake's work, then deep sleep

        return app_sleep.Wake(App, cfg, feed, path, setup)
    app = App(cfg, feed, path)
    if setup:
        setup(app)
    from iotlink import app_connect_once

    try:
        app.sensors, app.sensor_error = app_connect_once.load_sensors()
        while app.client is None:
            app.feed()
            try:
                app_connect_once.connect(app)
            except Exception as e:  # app.recover() says when to try again
                app.recover(e)
                net.pause(time.ticks_diff(app.retry_at, time.ticks_ms()), app.feed)
    finally:
        unload("app_connect_once")
    app.healthy()
    print("server: %s, %d pins, every %s s" % (cfg["server"], len(cfg["pins"]), cfg["interval_s"]))
    gc.threshold(-1)  # boot.py's start-up setting: from here the loop collects where it needs to
    return app


def load_config(path):
    # (the checked config, the watchdog's feed or None). While the file is missing or broken,
    # say why once and look again later; a broken file's wdt_ms still starts the watchdog.
    feed = None
    said = None
    while True:
        try:
            cfg = config.load(path)
            break
        except ConfigError as e:
            if str(e) != said:
                said = str(e)
                print("config: %s; waiting for a fixed config (checked every %d s)" % (e, CONFIG_RETRY_S))
        if feed is None:
            wdt_ms = _raw_wdt_ms(path)
            if valid_wdt_ms(wdt_ms):
                feed = watchdog(wdt_ms)
        net.pause(CONFIG_RETRY_S * 1000, feed)
    if feed is None and cfg.get("wdt_ms"):
        feed = watchdog(cfg["wdt_ms"])
    return cfg, feed


def _raw_wdt_ms(path):
    # wdt_ms as a broken file has it, if it is still JSON.
    from iotlink import config_once

    try:
        raw = config_once.read(path)
    except ConfigError:
        return None
    finally:
        unload("config_once")
    return raw.get("wdt_ms") if isinstance(raw, dict) else None


def watchdog(wdt_ms):
    # A machine.WDT started now, for good (no port can stop one): its feed.
    wdt = machine.WDT(timeout=wdt_ms)
    print("watchdog: %d ms" % wdt_ms)
    return wdt.feed
