# The timeline's once-a-boot work (outbox.py), loaded for one call: resuming it from the queue at
# boot, and starting this boot on the clock when a server first sets it. Neither runs again in
# that boot, so the running loop does not keep this code in RAM.
import random

from micropython import const

_KEEP_CLOCKS = const(4)  # boots whose start on the clock is kept, for their readings still queued


def _ints(value, size):
    return isinstance(value, list) and len(value) == size and all(
        v is None or isinstance(v, int) for v in value)


def _queued(store):
    # Every queued record, oldest first, one batch in RAM at a time.
    cursor = None
    while True:
        records, cursor = store.batch(after=cursor)
        if not records:
            return
        for record in records:
            yield record


def resume(t, boot, store):
    # Timeline t's state at boot: boot is this boot's id (None: a new one); store is the queue,
    # whose mark is what t.mark() gave before, and whose records are read once, to know the
    # newest stamp among them.
    t.boot = random.getrandbits(24) if boot is None else boot
    t.start = None
    t.shift = 0
    mark = store.mark if isinstance(store.mark, dict) else {}
    sent = mark.get("sent")
    t.sent = tuple(sent) if _ints(sent, 3) and sent[2] is not None else (None, None, 0)
    clocks = mark.get("clocks")
    t.clocks = [c for c in clocks if _ints(c, 2)] if isinstance(clocks, list) else []
    # A boot that goes on: a deep-sleeping board's wakes share one id and count one uptime
    # (app_sleep.py), so a wake after the one that set the clock finds its start here.
    for clocked, start in t.clocks:
        if clocked == t.boot:
            t.start = start
    # Replayed: the state after the queued records, how long the records that nothing
    # places yet span when placed from 0, and the first time after them.
    state = t.sent
    head = (0, None, 0)
    first = None
    for record in _queued(store):
        ts, state = t.place(record, state)
        if ts is None:
            head = t.place(record, head)[1]
        elif first is None:
            first = ts
    t.head_span = head[0]
    if t.head_span and first is not None:
        _place_head(t, first)
    t.newest = state[0] or 0


def _place_head(t, before):
    # The unplaced records at the head of the queue end just before this time.
    t.sent = (before - 1 - t.head_span, None, 0)
    t.head_span = 0


def start(t, now, uptime):
    # The clock reads now (ms) at this uptime (ms), set for the first time in this boot (t.start
    # is None): put this boot's start after every stamp. Its mark must then go to flash.
    read_start = now - uptime  # as this boot's clock reads it
    t.shift = max(0, t.newest + 1 - read_start)
    t.start = read_start + t.shift
    if t.shift:
        print("clock: %d ms behind the last stamp; this boot's stamps follow it" % t.shift)
    if t.head_span:
        _place_head(t, t.start)
    t.clocks = (t.clocks + [[t.boot, t.start]])[-_KEEP_CLOCKS:]
