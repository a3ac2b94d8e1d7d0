# Telemetry from the moment it is read until the server has it: each reading is stamped
# (timeline.py) and on flash (store.py) before anything is sent, so a power cut mid-request loses
# nothing; batches go oldest first and leave flash only once the server took them.
#
#   outbox.add(values, now, uptime)         a reading: on flash at once
#   body, receipt = outbox.batch(n)         the oldest queued records as one request body
#   outbox.sent(receipt)                    the server has them: they leave flash
#   outbox.count(receipt)                   how many records that batch holds
#
# sent() is the one step that changes what is on flash for a batch: the head file, replaced
# atomically, says where the unsent records start and carries the timeline's mark with it. A
# batch is sent again after a power cut until then, and never after.
import random

from iotlink.store import Store
from iotlink.timeline import Timeline


class Outbox:
    def __init__(self, max_bytes):
        self.store = Store(max_bytes=max_bytes)
        self.timeline = Timeline(random.getrandbits(24), self.store.mark, self._queued())

    def _queued(self):
        # Every queued record, oldest first, one batch in RAM at a time.
        cursor = None
        while True:
            records, cursor = self.store.batch(after=cursor)
            if not records:
                return
            for record in records:
                yield record

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
        # A server has set the clock: it reads now (ms) at this uptime (ms).
        if self.timeline.clock_set(now, uptime):
            self.store.mark = self.timeline.mark()
            self.store.save_head()

    def add(self, values, now, uptime):
        # Queue a reading taken now (the clock's ms, or None while it is not set). One small
        # append per reading; littlefs spreads the wear.
        if now is not None:
            self.clock_set(now, uptime)
        try:
            self.store.append(self.timeline.record(values, now, uptime))
        except (OSError, ValueError) as e:
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
