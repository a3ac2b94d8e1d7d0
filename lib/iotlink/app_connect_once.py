# What an App needs before its loop runs, in either loop (app_once.start, and each wake of a
# battery board, app_sleep.py): the user's sensors.py, and the platform client (a token first
# where config.json has none). Loaded for those calls and unloaded after them.
from iotlink import config, unload
from iotlink.thingsboard import ThingsBoard


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


def connect(app):
    # The App's platform client: first a token where config.json has none. On ThingsBoard the
    # first start task is then the OTA start-up report (app.report_boot): the OTA code comes and
    # goes before the other tasks leave objects around it in the heap.
    if not app.cfg.get("token"):
        app.ensure_wifi()
        obtain_token(app)
    app.client = make_client(app.cfg, app.timeout_s)
    if app.cfg["platform"] == "thingsboard":
        app.start_tasks.insert(0, app.report_boot)


def obtain_token(app):
    # Provisioning or activation (token_once.py), into app.cfg and config.json. A function of its
    # own: a frame that named the module would keep it in RAM while the client is made.
    from iotlink import token_once

    try:
        token_once.obtain(app.cfg, app.path, app.timeout_s)
    finally:
        unload("token_once")


def make_client(cfg, timeout):
    # The one place that creates the platform client.
    cadata = config.ca_data(cfg)
    if cfg["platform"] == "thethings":
        from iotlink.thethings_device import TTDevice  # imported here: ThingsBoard boards keep the RAM

        return TTDevice(cfg["server"], cfg["token"], timeout=timeout, keepalive=True, cadata=cadata)
    # One kept-alive connection: a TLS handshake per request would cost most of the throughput,
    # and seconds and battery on a board each time.
    return ThingsBoard(cfg["server"], cfg["token"], timeout=timeout, keepalive=True, cadata=cadata)
