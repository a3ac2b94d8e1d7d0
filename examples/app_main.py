# An app on top of the iotlink loop. It adds an RPC method, "getTarget", and follows a shared
# attribute, "target_c" (a set point that a dashboard sets on the server); telemetry, the pins,
# the offline queue and updates work as with the stock main.py.
#
# Put it on the board as main.py, after `iotlink deploy` (which writes the stock main.py):
#     mpremote connect /dev/ttyUSB0 cp examples/app_main.py :main.py + reset
from iotlink.app import run

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


def setup(app):
    # Called by run() with the loop before it starts.
    app.rpc.register("getTarget", get_target)
    app.follow(["target_c"], on_shared)
    if app.cfg["platform"] == "thethings":
        # thethings.iO: listen for this command too, once the client exists.
        app.start_tasks.append(lambda: app.client.commands.append("getTarget"))


run(setup=setup)  # the stock loop, with the additions above; restarts the board on a fatal error
