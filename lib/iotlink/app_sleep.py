# A battery board's loop ("sleep": {"mode": "deep"} in config.json): each wake reads the sensors
# into the flash queue, talks to the server only now and then, and deep-sleeps until the next
# reading. The start-up (app_once.start) loads this module in deep mode only, and app.run() runs
# the Wake it makes; the App's own pieces do the work: the reading (values, outbox), Wi-Fi, the
# clock, the start tasks, attributes, batches, RPC answers.
#
# A wake talks to the server (Wi-Fi up, clock if needed, start tasks, shared attributes, the
# queue in batches, then the RPCs waiting on the server, polled with a short wait until none is
# left; Wi-Fi down) when it is the first since power-on, when send_every wakes have passed since
# the last one that tried, when an update is on trial (the new app's first wake: its start-up
# report keeps it, and boot.py rolls it back at the next boot if that wake did not reach the
# server), or, while the server answers, when the queue holds more than queue_max readings or a
# reading is outside its limits. A failed exchange waits for the next regular one: a server that
# is down costs no more radio time than one that is up.
#
# What one wake hands to the next (the state, a small JSON object) is in RTC memory where the
# port has it (an ESP32 keeps it in deep sleep), else in a file. It starts anew at power-on. The
# wakes since power-on share one boot id and one uptime, which counts their sleeps: to the
# timeline (outbox.py) they are one long boot, so readings taken before the clock was ever set
# are placed by it once it is. The clock carries over: an ESP32's RTC keeps time in deep sleep
# (the time is taken from it); a Pico W's deep sleep is a reset that starts its RTC again at 2021,
# so the time is counted on from the last wake's (its sleep plus this wake's ticks), and set from
# the server again once a day.
import json
import random
import sys
import time

import machine

from iotlink import clock, files, net, unload
from iotlink.errors import HTTPError, IotlinkError

STATE_FILE = "sleep.json"  # the state where the port has no RTC memory
MIN_SLEEP_MS = 1000
# At most this long at a time: MicroPython's rp2 light sleep (its deep sleep's first half) refuses
# more than about 71 minutes. A longer interval sleeps again without a reading.
MAX_SLEEP_MS = 3600 * 1000
RPC_WAIT_MS = 300  # per poll for the RPCs waiting on the server: they come at once, if any
MAX_RPCS = 20  # answered in one wake at most
MAX_BATCHES = 50  # sent in one wake at most
CLOCK_RESYNC_MS = 24 * 3600 * 1000  # of uptime: the clock is set from the server again
# The "sleep" section's defaults (config_once.py checks its keys; "mode": "light" is the
# always-on loop, app.py's).
DEFAULTS = {"send_every": 6, "queue_max": 50, "limits": {}}


class Wake:
    # This wake, as app.run() runs it: made by the start-up (app_once.start), run once that code
    # is unloaded. A wake never returns: code in the frames it runs from would stay in RAM.
    def __init__(self, App, cfg, feed, path, setup):
        self.args = (App, cfg, feed, path, setup)

    def run(self):
        wake(*self.args)


def wake(App, cfg, feed, path, setup=None):
    # This wake's work, then deep sleep; never returns. App: the device loop's class; feed: the
    # watchdog's (app_once.watchdog) or None; setup: as for app.run().
    start = time.ticks_ms()
    options = dict(DEFAULTS)
    options.update(cfg["sleep"])
    state = load_state()
    interval = state["interval"] or int(cfg["interval_s"] * 1000)
    if on_trial():
        # A new app (or image) on trial: boot.py rolls it back at the next boot unless it has
        # reached the server by then, so this wake sends before it sleeps, whatever is due.
        state["rest"] = 0
        state["tried"] = 0
    if state["rest"]:
        sleep(state, state["rest"], state["up"] + time.ticks_diff(time.ticks_ms(), start), start)
    try:
        app = App(cfg, feed, path, state["boot"])
        if setup:
            setup(app)
        app.up_ms = state["up"]
        app.interval_ms = interval  # a shared attribute's, from the last exchange
        set_clock(state, start)
        interval = run(app, state, options)
    except Exception as e:  # a bug or a broken flash: the next wake tries again
        sys.print_exception(e)
    sleep(state, interval, state["up"] + time.ticks_diff(time.ticks_ms(), start), start)


def run(app, state, options):
    # One wake: the reading, and the exchange when it is due. Returns the interval (ms).
    load_sensors(app)
    state["wake"] += 1
    values = app.values()
    app.outbox.add(values, clock.now_ms(), app.uptime_ms())
    outside = out_of_limits(values, options["limits"])
    due = not state["tried"] or state["wake"] - state["tried"] >= options["send_every"]
    urgent = state["ok"] and (outside or app.outbox.pending > options["queue_max"])
    print("wake %d: %d queued%s" % (state["wake"], app.outbox.pending,
                                    ", sending" if due or urgent else ""))
    if outside:
        print("sleep: '%s' is outside its limits" % outside)
    if due or urgent:
        state["tried"] = state["wake"]
        state["ok"] = False
        try:
            exchange(app, state)
            state["ok"] = True
        except Exception as e:
            failed(app, state, e)
        finally:
            radio_off(app)
        state["interval"] = app.interval_ms
    return app.interval_ms


def on_trial():
    # Whether an update waits for this app to reach the server (.ota/state.json holds a job).
    from iotlink import ota_swap

    try:
        return "job" in ota_swap.load_state()
    finally:
        unload("ota_swap")


def out_of_limits(values, limits):
    # The first key whose value is outside its [low, high] (None: no bound), or None.
    for key in limits:
        value = values.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = limits[key]
            if (low is not None and value < low) or (high is not None and value > high):
                return key
    return None


def exchange(app, state):
    # Everything the server has for this board, and the queue: the always-on loop's steps, each
    # once, in the order its step() takes them.
    app.ensure_wifi()
    if app.client is None:
        connect(app)
    if state["renew"]:
        app.renew_token()
        state["renew"] = False
    if not clock.synced() or app.uptime_ms() - (state["synced"] or 0) >= CLOCK_RESYNC_MS:
        app.sync_clock()
        if clock.synced():
            state["synced"] = app.uptime_ms()
    while app.start_tasks:
        app.feed()
        app.start_tasks[0]()
        app.start_tasks.pop(0)
    app.read_attributes()
    for _ in range(MAX_BATCHES):
        if not app.outbox.pending:
            break
        app.feed()
        app.send_batch()
    for _ in range(MAX_RPCS):
        app.feed()
        request = app.client.wait_rpc(RPC_WAIT_MS)
        if request is None:
            break
        app.answer(request)


# The start-up code this module uses, each loaded for its call in a function of its own: a
# module a frame of the wake still named would stay in RAM through the wake.
def load_sensors(app):
    from iotlink import app_connect_once

    try:
        app.sensors, app.sensor_error = app_connect_once.load_sensors()
    finally:
        unload("app_connect_once")


def connect(app):
    # The client (a token first where config.json has none), and OTA's start task.
    from iotlink import app_connect_once

    try:
        app_connect_once.connect(app)
    finally:
        unload("app_connect_once")


def failed(app, state, e):
    # The exchange stopped at e: the queue stays on flash for the next one.
    if isinstance(e, HTTPError) and e.status in (401, 403):
        # An unknown token, or a deleted device: with provisioning keys, a new token next time.
        state["renew"] = app.cfg["platform"] == "thingsboard" and bool(app.cfg.get("provision"))
    elif not isinstance(e, (IotlinkError, OSError, MemoryError)):
        sys.print_exception(e)  # a bug, not the network: show where
    print("sleep: %s %s; %d queued for the next exchange" % (type(e).__name__, e, app.outbox.pending))


def radio_off(app):
    # The connections closed and the radio off: deep sleep would cut them, a clean close tells
    # the server now. (A thethings.iO client's close() ends its subscription channel; its
    # requests' kept-alive connection is the transport's.)
    client = app.client
    for holder in (client, getattr(client, "transport", None)):
        close = getattr(holder, "close", None)
        if close is not None:
            try:
                close()
            except OSError:
                pass
    wlan = net.station()
    if wlan is not None and wlan.active():
        wlan.disconnect()
        wlan.active(False)


def set_clock(state, start):
    # The time, where the last wake knew it: the RTC's if it kept running, else counted on.
    saved = state["clock"]
    if saved is None:
        return
    offset, slept_at = saved
    now = clock.local_ms() + offset
    if now < slept_at:  # the RTC started again (a Pico W): the sleep and this wake's ticks
        now = slept_at + state["sleep"] + time.ticks_diff(time.ticks_ms(), start)
    clock.set_unix_ms(now)


# ---- the state across deep sleep -------------------------------------------------------
def new_state():
    # boot: the wakes' shared id; up: the uptime (ms) this wake starts at; wake: readings since
    # power-on; tried: the wake of the last exchange (0: none yet), ok: whether it worked;
    # clock: [offset from the local clock, the time at sleep] when the time was known; synced:
    # the uptime of the last clock sync; interval: ms, from the shared attribute; sleep: the
    # last sleep (ms); rest: sleep still due before the next reading (long intervals); renew:
    # the token was refused.
    return {"boot": random.getrandbits(24), "up": 0, "wake": 0, "tried": 0, "ok": False, "clock": None,
            "synced": None, "interval": None, "sleep": 0, "rest": 0, "renew": False}


def load_state():
    # The last wake's state, unless the board was powered on since.
    state = new_state()
    if machine.reset_cause() == machine.PWRON_RESET:
        return state
    for read in (read_rtc, read_file):
        kept = read()
        if isinstance(kept, dict) and isinstance(kept.get("boot"), int) and isinstance(kept.get("up"), int):
            state.update(kept)
            return state
    return state


def read_rtc():
    try:
        data = bytes(machine.RTC().memory())
    except (AttributeError, OSError):  # a port without RTC memory
        return None
    return parse(data)


def read_file():
    try:
        return parse(files.read(STATE_FILE))
    except OSError:
        return None


def parse(data):
    try:
        return json.loads(data)
    except ValueError:
        return None


def save_state(state):
    data = json.dumps(state).encode()
    try:
        machine.RTC().memory(data)
        return
    except (AttributeError, ValueError, OSError):  # no RTC memory, or too little of it
        pass
    files.write_atomic(STATE_FILE, data)


def sleep(state, ms, uptime, start):
    # Deep sleep for ms (in pieces of MAX_SLEEP_MS at most), less the time this wake took.
    ms = max(MIN_SLEEP_MS, ms - time.ticks_diff(time.ticks_ms(), start))
    piece = min(ms, MAX_SLEEP_MS)
    state["rest"] = ms - piece
    state["sleep"] = piece
    state["up"] = uptime + piece
    now = clock.now_ms()
    state["clock"] = None if now is None else [now - clock.local_ms(), now]
    save_state(state)
    print("sleep: %d ms" % piece)
    machine.deepsleep(piece)
