# What runs on the board, the update in flight, and how a verified application bundle replaces
# the running app so that a power cut at ANY moment leaves the old or the new app whole.
# Import-light: boot.py calls resume() before anything else (os, json and files.py only).
#
# On the flash, under the board's root:
#   .ota/state.json  {"run": what runs, "apps": the top-level entries each bundle owns,
#                     "job": the update in flight (the journal), "report": states still to send,
#                     "refused": packages rolled back, not retried}; always replaced atomically
#   .ota/stage/      the new app, unpacked while downloading, then verified
#   .ota/old/        the previous app, kept until the new one has reached the server
#
# A bundle moves whole top-level entries (main.py, lib, ...):
#   1. unpacked into stage/ and its checksum verified (before this, nothing of the app moved);
#   2. the journal: job {"phase": "swap", "new": [...], "old": [...]} written atomically;
#   3. each old entry renamed into old/, each new one from stage/ to the root. Renames are atomic
#      and each is skipped once done, so resume() can repeat the whole step after a cut;
#   4. phase "trial": the board resets into the new app and resume() counts that boot;
#   5. the new app reaches the server (ota.Updater.report_boot): the job ends, old/ is deleted.
# A boot that finds the trial already counted means the new app never reached the server:
# phase "rollback" moves its entries out and the old ones back (idempotent as well), and the
# package is remembered as refused. ESP32 images use the bootloader's own rollback instead.
import json
import os

from iotlink.files import write_atomic

DIR = ".ota"
STATE = DIR + "/state.json"
STATE_TMP = STATE + ".tmp"  # what files.write_atomic writes before renaming it to STATE
STAGE = DIR + "/stage"
OLD = DIR + "/old"

# Called with a step name at each point an update can be cut; tests end the process there,
# an app may feed its watchdog. None: nothing is called.
hook = None


def step(name):
    if hook:
        hook(name)


def base_of(root):
    # Paths stay relative to the working directory, which is "/" on a board and the flash
    # folder on the unix port (where "/" would be the host's own root).
    if root in ("", "/", "."):
        return ""
    return root.rstrip("/") + "/"


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def rmtree(path):
    # Remove a file or a folder with everything in it; nothing there is fine.
    try:
        entries = list(os.ilistdir(path))
    except OSError:
        try:
            os.remove(path)
        except OSError:
            pass
        return
    for entry in entries:
        rmtree(path + "/" + entry[0])
    os.rmdir(path)


def load_state(base):
    # A cut inside a rename over the state (FAT removes the target first) leaves the complete
    # temporary file; a cut while writing that file leaves the previous state intact.
    for name in (STATE, STATE_TMP):
        try:
            with open(base + name) as f:
                state = json.load(f)
            if isinstance(state, dict):
                return state
        except (OSError, ValueError):
            pass
    return {}


def save_state(base, state):
    try:
        os.mkdir(base + DIR)
    except OSError:
        pass
    write_atomic(base + STATE, json.dumps(state).encode())


def begin(base, state, kind, to, new):
    # Journal a swap of the staged bundle (top-level entries `new`) for package `to` of `kind`.
    owned = state.get("apps", {}).get(kind, [])
    old = [n for n in owned + [n for n in new if n not in owned] if exists(base + n)]
    rmtree(base + OLD)
    os.mkdir(base + OLD)
    state["job"] = {"kind": kind, "to": to, "phase": "swap", "new": new, "old": old}
    save_state(base, state)
    step("journal")


def roll_forward(base, state):
    job = state["job"]
    for name in job["old"]:
        replaced = name not in job["new"] or exists(base + STAGE + "/" + name)
        if replaced and exists(base + name) and not exists(base + OLD + "/" + name):
            os.rename(base + name, base + OLD + "/" + name)
            step("keep " + name)
    for name in job["new"]:
        if exists(base + STAGE + "/" + name):
            os.rename(base + STAGE + "/" + name, base + name)
            step("move " + name)
    job["phase"] = "trial"
    job["boots"] = 0
    save_state(base, state)
    step("trial")


def roll_back(base, state, why):
    # Put the old app back and remember the package as refused, with a FAILED state to report.
    job = state["job"]
    if job["phase"] != "rollback":
        job["phase"] = "rollback"
        save_state(base, state)
        step("rollback")
    for name in job["new"]:
        if name not in job["old"]:
            rmtree(base + name)
    for name in job["old"]:
        kept = base + OLD + "/" + name
        if exists(kept):
            rmtree(base + name)
            os.rename(kept, base + name)
            step("restore " + name)
    finish(base, state, False, why)


def finish(base, state, updated, error=None):
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
    save_state(base, state)
    step("finished")
    rmtree(base + OLD)
    rmtree(base + STAGE)


def resume(root="/"):
    # First thing at boot: finish a swap a power cut interrupted, count the new app's trial
    # boot, or roll back a new app that booted before and never reached the server.
    base = base_of(root)
    state = load_state(base)
    job = state.get("job")
    if job is None or "image" in job:
        # No bundle in flight: a download or a finished job may have left files behind.
        if exists(base + STAGE) or exists(base + OLD):
            rmtree(base + STAGE)
            rmtree(base + OLD)
        return
    phase = job["phase"]
    if phase == "swap":
        roll_forward(base, state)
        phase = "trial"
    if phase == "trial" and not job["boots"]:
        job["boots"] = 1
        save_state(base, state)
    else:
        roll_back(base, state, "%s %s did not reach the server after a reboot: rolled back" % tuple(job["to"]))
