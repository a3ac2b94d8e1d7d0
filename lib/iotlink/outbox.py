# Telemetry from the moment it is read until the server has it: each reading is stamped (the
# Timeline below) and on flash (store.py) before anything is sent, so a power cut mid-request
# loses nothing; batches go oldest first and leave flash only once the server took them.
#
#   outbox.add(values, now, uptime)         a reading: on flash at once
#   body, receipt = outbox.batch(n)         the oldest queued records as one request body
#   outbox.sent(receipt)                    the server has them: they leave flash
#   outbox.count(receipt)                   how many records that batch holds
#
# sent() is the one step that changes what is on flash for a batch: the head file, replaced
# atomically, says where the unsent records start and carries the timeline's mark with it. A
# batch is sent again after a power cut until then, and never after.
import json

from iotlink.store import Store


class Outbox:
    def __init__(self, max_bytes, boot=None):
        # boot: this boot's id for the timeline (a deep-sleeping board keeps one across wakes);
        # a new one by default. The timeline resumes from the queue at boot only: that code
        # (outbox_once.py) is loaded for this call.
        self.store = Store(max_bytes=max_bytes)
        self.timeline = Timeline()
        from iotlink import unload

        try:
            from iotlink.outbox_once import resume

            resume(self.timeline, boot, self.store)
        finally:
            unload("outbox_once")

    @property
    def pending(self):
        # Records on flash, not yet acknowledged by the server.
        return self.store.pending

    @property
    def dropped(self):
        # Records lost since the queue began: evicted from a full queue, refused by the server,
        # or not written.
        return self.store.dropped

    def clock_set(self, now, uptime):
        # A server has set the clock: it reads now (ms) at this uptime (ms). The first time in a
        # boot, the timeline starts on it (outbox_once.py, loaded for that call) and its mark goes
        # to flash, for this boot's readings that a power cut would leave queued.
        if self.timeline.start is None:
            from iotlink import unload

            try:
                from iotlink.outbox_once import start

                start(self.timeline, now, uptime)
            finally:
                unload("outbox_once")
            self.store.mark = self.timeline.mark()
            self.store.save_head()

    def add(self, values, now, uptime):
        # Queue a reading taken now (the clock's ms, or None while it is not set). One small
        # append per reading; littlefs spreads the wear.
        if now is not None:
            self.clock_set(now, uptime)
        try:
            self.store.append(self.timeline.record(values, now, uptime))
        except (OSError, ValueError, MemoryError) as e:
            # Lost, and counted: the loop reads on. (A MemoryError escaping here would reset the
            # board: a full queue's eviction loads its code, and a reading can be large.)
            self.store.dropped += 1
            print("queue: record lost (%s)" % e)

    def batch(self, max_bytes, max_records=None):
        # (the request body of the oldest queued records, about max_bytes of JSON, max_records at
        # most; the receipt for sent()). Nothing leaves flash until then.
        frames, cursor = self.store.batch(max_records or 50, max_bytes, parse=False)
        body, state = self.timeline.body(frames)
        return body, (cursor, state)

    @staticmethod
    def count(receipt):
        # How many records the batch of that receipt holds.
        return receipt[0][2]

    def sent(self, receipt, refused=False):
        # The server took the batch of that receipt (or refused it for good: refused=True counts
        # its records as dropped, so that they do not block the rest). Returns how many it held.
        cursor, state = receipt
        if refused:
            self.store.dropped += cursor[2]
        self.timeline.sent_through(state)
        self.store.mark = self.timeline.mark()
        self.store.commit(cursor)  # the head, with the mark: the batch is gone from flash
        return cursor[2]


# ---- the timeline ----------------------------------------------------------------------------
# Client timestamps that only go forward, for every record of the flash queue, across reboots.
# The records' shapes are made here: as they are queued (record()) and as they are sent (body()).
#
# A reading is stamped as it is read once the clock is set ({"ts": ms, ...}); before that it
# carries its boot's id and uptime ({"boot": id, "up": ms, ...}) and is placed when it is sent.
# Three things would otherwise put a key's points out of order on the server:
# - a clock set from the server's Date header can land behind the previous boot's last stamp;
# - a resync can move the clock back;
# - a boot can lose power before its early readings were sent, or before it had a clock at all.
# So the newest stamp is remembered (mark(), which the queue's head keeps, for sent records; the
# queued records themselves for the rest), this boot's clock is shifted forward when it would start
# behind it, and the start of the last few boots that had a clock is kept in the head too, so
# their early readings are placed exactly whenever they are sent. Readings of a boot without a
# clock (yet) are placed after the record before them by their uptime: a lower bound of their
# real time, since that boot started after that record was read. Readings with no stamp before
# them at all (a new board whose first boots had no clock) are placed just before the first time
# known after them, spaced by their uptime; only until one is known, the server stamps them.
#
# What runs once a boot is in outbox_once.py: resuming from the head's mark and the queued records
# (resume()), and starting this boot on the clock once it is set (start()).


class Timeline:
    # Its state, made at boot by outbox_once.resume():
    #   boot       this boot's id
    #   start      this boot's start on the (shifted) clock, None until the clock is set
    #   shift      how far this boot's stamps are moved forward, to follow the newest stamp
    #   sent       the placing state after the records the server has: (last ts or None, last
    #              clockless boot, the ts that boot's readings count their uptime from)
    #   clocks     [boot, start] of the last few boots that had a clock
    #   head_span  how long the records at the head of the queue that nothing places yet span,
    #              placed from 0 (until a time after them is known)
    #   newest     the newest stamp, queued or sent

    def mark(self):
        # What a later boot needs to place the records still queued then (a JSON value).
        return {"sent": list(self.sent), "clocks": self.clocks}

    def stamp(self, now, uptime):
        # The time of a reading taken now: after every other (the clock was set before).
        self.newest = max(now + self.shift, self.newest + 1)
        return self.newest

    def record(self, values, now, uptime):
        # A reading as it is queued: stamped when the clock is set (now is its time, ms), else
        # with this boot's id and its uptime, for body() to place.
        if now is None:
            return {"boot": self.boot, "up": uptime, "values": values}
        return {"ts": self.stamp(now, uptime), "values": values}

    def _start_of(self, boot):
        if boot == self.boot:
            return self.start
        for clocked, start in self.clocks:
            if clocked == boot:
                return start
        return None

    def place(self, record, state):
        # (ts, state after it) of a queued record, state being the one after the record before;
        # ts is None for a record only the server can stamp (on arrival).
        last, run, base = state
        if "ts" in record:
            return record["ts"], (record["ts"], run, base)
        boot = record.get("boot")
        start = self._start_of(boot)
        if start is not None:  # read before its boot's clock was set
            ts = start + record["up"]
        elif last is not None:  # from a boot without a clock
            if boot != run:
                run, base = boot, last
            ts = base + record["up"]
        else:  # and no time before it either
            return None, state
        if last is not None:
            ts = max(ts, last + 1)
        return ts, (ts, run, base)

    def body(self, frames):
        # A batch as the server takes it, from its records' JSON as the queue holds it: (the
        # JSON array of {"ts", "values"} or, for the server to
        # stamp, the values alone; the state after them, for sent_through()). A record stamped
        # when it was read goes as it lies: one record is parsed at a time, and the batch is
        # joined once, instead of parsing the whole batch and encoding it again.
        state = self.sent
        for i, frame in enumerate(frames):
            record = json.loads(frame)
            ts, state = self.place(record, state)
            if "ts" not in record:
                placed = record["values"] if ts is None else {"ts": ts, "values": record["values"]}
                frames[i] = json.dumps(placed).encode()
        if not frames:
            return b"", state
        frames[0] = b"[" + frames[0]
        frames[-1] += b"]"
        return b",".join(frames), state

    def sent_through(self, state):
        # The records placed up to state are on the server (mark() then goes with the queue's
        # head, which forgets them).
        self.sent = state
        self.newest = max(self.newest, state[0] or 0)
