# An app on top of the iotlink loop. It adds an RPC method, "getTarget", and follows a shared
# attribute, "target_c" (a set point that a dashboard sets on the server); telemetry, the pins,
# the offline queue and updates work as with the stock main.py.
#
# Put it on the board as main.py, after `iotlink deploy` (which writes the stock main.py):
#     mpremote connect /dev/ttyUSB0 cp examples/app_main.py :main.py + reset
import sys
import time

import machine

from iotlink import app as loop
from iotlink import config

target = {"c": 20.0}  # the set point until the server gives one


def on_shared(shared):
    # Called with the shared attributes the loop asked for, each time it reads them (every
    # few intervals). A key the server does not have is missing from the dict.
    value = shared.get("target_c")
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        print("app: target_c ignored (not a number)")
        return
    if value != target["c"]:
        target["c"] = value
        print("app: target %s C" % value)


def get_target(params):
    # RPC getTarget: params {} or {"unit": "F"}; the reply is the returned dict. A ValueError
    # becomes the reply {"error": "getTarget: ..."}; the board goes on either way.
    unit = params.get("unit", "C") if isinstance(params, dict) else "C"
    if unit == "C":
        return {"target": target["c"], "unit": "C"}
    if unit == "F":
        return {"target": target["c"] * 9 / 5 + 32, "unit": "F"}
    raise ValueError("unit must be C or F")


def main():
    # What the stock main.py does (iotlink.app.run), with the app's additions before the start.
    wdt = loop.Watchdog()
    cfg = loop.wait_for_config(config.PATH, wdt)
    wdt.start(cfg.get("wdt_ms"))
    app = loop.App(cfg, wdt)
    app.rpc.register("getTarget", get_target)
    app.follow(["target_c"], on_shared)
    app.start()
    if cfg["platform"] == "thethings":
        app.client.commands.append("getTarget")  # thethings.iO: listen for this command too
    app.run()


try:
    main()
except Exception as e:
    # As the stock loop does: print what happened and start over clean a while later.
    sys.print_exception(e)
    time.sleep(loop.RESTART_DELAY_S)
    machine.reset()
