# Client timestamps that only go forward, for every record of the flash queue, across reboots.
#
# A reading is stamped as it is read once the clock is set ({"ts": ms, ...}); before that it
# carries its boot's id and uptime ({"boot": id, "up": ms, ...}) and is placed when it is sent.
# Three things would otherwise put a key's points out of order on the server:
# - a clock set from the server's Date header can land behind the previous boot's last stamp;
# - a resync can move the clock back;
# - a boot that lost power before its clock was set leaves readings no clock of its own places.
# So the newest stamp is remembered (the queue's head keeps it for sent records, the queued
# records themselves for the rest), this boot's clock is shifted forward when it would start
# behind it, and a dead boot's readings go after the record before them by their uptime: a
# lower bound of their real time, since that boot started after that record was read.


def _valid(mark):
    return (isinstance(mark, list) and len(mark) == 3 and isinstance(mark[0], int)
            and isinstance(mark[2], int))


class Timeline:
    def __init__(self, boot, store):
        self.boot = boot
        self.start = None  # this boot's start on the (shifted) clock, once the clock is set
        self.shift = 0
        # Placing goes in queue order; its state is (last ts, last dead boot, that boot's base).
        self.sent = tuple(store.mark) if _valid(store.mark) else (0, None, 0)
        state = self.sent
        cursor = None
        while True:  # the queued records, read once at boot to learn the newest stamp
            records, cursor = store.batch(after=cursor)
            if not records:
                break
            for record in records:
                state = self.place(record, state)[1]
        self.newest = state[0]

    def clock_set(self, now, uptime):
        # The clock reads now (ms) at this uptime (ms): put this boot's start after every stamp.
        if self.start is None:
            start = now - uptime
            self.shift = max(0, self.newest + 1 - start)
            self.start = start + self.shift
            if self.shift:
                print("clock: %d ms behind the last stamp; this boot's stamps follow it" % self.shift)

    def stamp(self, now, uptime):
        # The time of a reading taken now: after every other.
        self.clock_set(now, uptime)
        self.newest = max(now + self.shift, self.newest + 1)
        return self.newest

    def place(self, record, state):
        # (ts, state after it) of a queued record, state being the one after the record before;
        # ts is None for a record only the server can stamp (on arrival).
        last, run, base = state
        boot = record.get("boot")
        if "ts" in record:
            ts = record["ts"]
        elif boot == self.boot:  # read before this boot's clock was set
            if self.start is None:
                return None, state
            ts = self.start + record["up"]
        elif last:  # from a boot that lost power before its clock was set
            if boot != run:
                run, base = boot, last
            ts = max(base + record["up"], last + 1)
        else:  # no stamp ever: nothing to place it after
            return None, state
        return ts, (ts, run, base)
