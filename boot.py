# Runs first at every boot. It is the update guard, and the one file of the firmware an update
# never replaces (the board refuses a package that holds a boot.py): the code that finishes,
# checks and undoes an app update lives here, so a package whose app cannot even be imported
# cannot take the way back with it. It imports nothing of lib/, which a package may replace.
# Then it brings Wi-Fi up from config.json in bounded time (two attempts of 10 s at most; not in
# deep-sleep mode, whose wakes bring it up only to talk to the server). It never blocks for
# longer and never raises: without config or Wi-Fi, main.py reports the problem and keeps
# retrying.
#
# The update journal, .ota/state.json (always replaced whole: a power cut leaves the old or the
# new one). The running app (lib/iotlink/ota_swap.py) writes a job into it; this file moves the
# files and keeps the job's phase:
#   {"run": what runs, "apps": the top-level entries each package owns, "job": the update in
#    flight, "report": states the app still has to send, "refused": packages rolled back}
#   .ota/stage/  the new app, unpacked and verified by the running app before it wrote the job
#   .ota/old/    the entries it replaces, kept until the new app has reached the server
# A job of a bundle goes:
#   "swap"      written by the app, which then resets the board. resume() renames each old
#               entry into old/ and each new one out of stage/; each rename is atomic and skipped
#               once done, so a power cut anywhere only means doing the rest at the next boot;
#   "trial"     the new app runs, here, under run_on_trial(): whatever escapes its import or
#               start is noted in the job ("error") and the board resets. Once the new app has
#               reached the server, ota.Updater ends the job and deletes old/;
#   "rollback"  a boot that finds the trial already counted (the new app failed, hung, or never
#               reached the server): the new entries go, the old ones come back, and the package
#               is refused, with FAILED and the reason for the restored app to report.
# An ESP32 image job (it has "image") is only run on trial here: the bootloader rolls back.
_BEFORE = list(globals())  # main.py runs next in this namespace: see the end of this file

import gc
import json
import os

DIR = ".ota"
STATE = DIR + "/state.json"
STAGE = DIR + "/stage"
OLD = DIR + "/old"
APP = "main.py"

# Called with a step name at each point an update can be cut; tests end the process there.
hook = None


def step(name):
    if hook:
        hook(name)


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def rmtree(path):
    # Remove a file or a folder with all it holds, whatever its depth: no recursion, and each
    # path is looked at twice at most, so it ends even where something cannot be removed.
    todo = [(path, False)]
    while todo:
        name, emptied = todo.pop()
        try:
            if emptied:
                os.rmdir(name)
                continue
            entries = [entry[0] for entry in os.ilistdir(name)]
        except OSError:  # a file (or nothing there), or a folder that would not go
            try:
                os.remove(name)
            except OSError:
                pass
            continue
        todo.append((name, True))
        for entry in entries:
            todo.append((name + "/" + entry, False))


def load_state():
    # A cut between the remove and the rename of save_state (FAT) leaves only the complete
    # temporary file: it becomes the state again.
    try:
        if not exists(STATE) and exists(STATE + ".tmp"):
            os.rename(STATE + ".tmp", STATE)
        with open(STATE) as f:
            state = json.load(f)
        if isinstance(state, dict):
            return state
    except (OSError, ValueError):
        pass
    return {}


def save_state(state):
    # As lib/iotlink/files.py's write_atomic, which this file may not import.
    tmp = STATE + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(state))
    try:
        os.rename(tmp, STATE)
    except OSError:  # FAT renames onto nothing
        os.remove(STATE)
        os.rename(tmp, STATE)


def roll_forward(state):
    job = state["job"]
    for name in job["old"]:
        replaced = name not in job["new"] or exists(STAGE + "/" + name)
        if replaced and exists(name) and not exists(OLD + "/" + name):
            os.rename(name, OLD + "/" + name)
            step("keep " + name)
    for name in job["new"]:
        if exists(STAGE + "/" + name):
            os.rename(STAGE + "/" + name, name)
            step("move " + name)
    job["phase"] = "trial"
    job["boots"] = 0
    save_state(state)
    step("trial")


def roll_back(state, why):
    # Put the old app back and refuse the package, with a FAILED state to report.
    job = state["job"]
    if job["phase"] != "rollback":
        job["phase"] = "rollback"
        save_state(state)
        step("rollback")
    for name in job["new"]:
        if name not in job["old"]:
            rmtree(name)
    for name in job["old"]:
        if exists(OLD + "/" + name):
            rmtree(name)
            os.rename(OLD + "/" + name, name)
            step("restore " + name)
    kind = state.pop("job")["kind"]
    state.setdefault("refused", {})[kind] = job["to"]
    state.setdefault("report", {})[kind] = {"state": "FAILED", "error": why}
    save_state(state)
    step("finished")
    rmtree(OLD)
    rmtree(STAGE)


def resume():
    # First thing at boot: finish a swap, count the new app's trial boot, or roll back a new app
    # whose trial boot came and went. True when an app is on trial in this boot.
    state = load_state()
    job = state.get("job")
    if job is None or "image" in job:
        # No bundle in flight: a download or a finished job may have left files behind.
        if exists(STAGE) or exists(OLD):
            rmtree(STAGE)
            rmtree(OLD)
        # A new image that failed here once is not run on trial again: the bootloader has gone
        # back to the old one by now, which ota.Updater finds and reports.
        return job is not None and "error" not in job
    if job["phase"] == "swap":
        roll_forward(state)
    if job["phase"] == "trial" and not job["boots"]:
        job["boots"] = 1
        save_state(state)
        return True
    why = job.get("error") or "did not reach the server after a reboot"
    roll_back(state, "%s %s %s: rolled back" % (job["to"][0], job["to"][1], why))
    return False


def run_on_trial():
    # The new app, run as the board would run main.py, but under guard until it has reached
    # the server: an exception escaping it, or its end, resets the board into the rollback.
    import sys

    try:
        with open(APP) as f:
            code = compile(f.read(), APP, "exec")
        exec(code, {"__name__": "__main__"})
        why = "ended before it reached the server"
    except Exception as e:  # not KeyboardInterrupt: Ctrl-C at the console still stops it
        sys.print_exception(e)
        why = "did not start (%s: %s)" % (type(e).__name__, e)
    state = load_state()
    job = state.get("job")
    if job and job["phase"] == "trial":
        job["error"] = why[:200]
        save_state(state)
        print("boot: the new app %s: resetting" % why)
    import machine

    machine.reset()


def _resume_update():
    try:
        return resume()
    except Exception as e:  # the journal stays for the next boot; the app that is there runs
        print("boot: update: %s" % e)
        return False


def _wifi_up():
    try:
        from iotlink import config, unload

        cfg = config.load()
        wifi = cfg.get("wifi")
        # A board in deep-sleep mode brings Wi-Fi up only on the wakes that talk to the server.
        if wifi and cfg.get("sleep", {}).get("mode") != "deep":
            from iotlink import net_once

            try:
                print("boot: wifi up, %s" % net_once.up(wifi, attempts=2, timeout_ms=10000))
            finally:
                unload("net_once")
    except Exception as e:  # boot.py must end; main.py says what is wrong and retries
        print("boot: %s" % e)


if __name__ == "__main__":
    _trial = _resume_update()
    _wifi_up()
    gc.collect()
    if _trial:
        run_on_trial()  # never returns
    # main.py runs next in this same namespace: nothing defined above may stay in its heap.
    # Before it imports the loop, what the steps above left behind goes, so the loop's modules
    # fill the heap from the bottom instead of around it.
    for _name in [name for name in globals() if name not in _BEFORE]:
        del globals()[_name]
    del _name
    import gc

    gc.collect()
    # Until the loop has started (app_once.py ends this), collect every few KB: the modules main.py
    # loads then leave their temporaries as holes all over the heap otherwise, and a heap in
    # pieces fails on a small request long before it is full.
    gc.threshold(4096)
    del gc
