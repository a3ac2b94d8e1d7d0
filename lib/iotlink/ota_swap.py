# The update journal, the running app's side of it: what runs, the update in flight, the states
# still to report. boot.py (the update guard, which no update replaces) describes the journal
# and moves the files; this module starts a job and ends it:
#   begin()   a package unpacked into .ota/stage/ and verified: the job that boot.py swaps in
#             at the next boot, then runs on trial;
#   finish()  the new app reached the server (it stays, the old one's copy goes), or an ESP32
#             image did not start (the bootloader went back).
# Paths are relative to the working directory: "/" on a board, the flash folder on the unix port.
import json
import os

from iotlink.files import read, write_atomic

DIR = ".ota"
STATE = DIR + "/state.json"
STAGE = DIR + "/stage"
OLD = DIR + "/old"

# Called with a step name at each point an update can be cut, and for each chunk of a download:
# tests end the process there, the app feeds its watchdog (ota.Updater's feed). None: nothing.
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
    # As boot.py's rmtree (the guard imports nothing of lib/): a file or a folder with all it
    # holds, whatever its depth, with no recursion; each path is looked at twice at most.
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
    try:
        state = json.loads(read(STATE))
        if isinstance(state, dict):
            return state
    except (OSError, ValueError):
        pass
    return {}


def save_state(state):
    try:
        os.mkdir(DIR)
    except OSError:
        pass
    write_atomic(STATE, json.dumps(state).encode())


def begin(state, kind, to, new):
    # Journal the swap of the staged package `to` of `kind` (top-level entries `new`): boot.py
    # makes it at the next boot. It replaces what the last package of that kind brought and
    # whatever has the same names.
    owned = state.get("apps", {}).get(kind, [])
    old = [n for n in owned + [n for n in new if n not in owned] if exists(n)]
    rmtree(OLD)
    os.mkdir(OLD)
    state["job"] = {"kind": kind, "to": to, "phase": "swap", "new": new, "old": old}
    save_state(state)
    step("journal")


def finish(state, updated, error=None):
    # End the job: the new package runs (updated) or the old one stays; the leftovers go.
    job = state.pop("job")
    kind = job["kind"]
    if updated:
        state.setdefault("run", {})[kind] = job["to"]
        if "new" in job:
            state.setdefault("apps", {})[kind] = job["new"]
        report = {"state": "UPDATED"}
    else:
        state.setdefault("refused", {})[kind] = job["to"]
        report = {"state": "FAILED", "error": error}
    state.setdefault("report", {})[kind] = report
    save_state(state)
    step("finished")
    rmtree(OLD)
    rmtree(STAGE)
