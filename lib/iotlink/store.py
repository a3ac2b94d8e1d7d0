# A bounded queue on flash for telemetry that could not be sent, read back oldest first.
#
# Records go to numbered segment files (root/00000001, 00000002, ...) that are only ever
# appended to, then deleted whole once sent: no file is rewritten per record. Each record is
# framed as magic byte, length, CRC32, JSON payload, so a record torn by a power cut is
# recognised and lost alone: reading stops at it, and appending resumes in a new segment. A
# small `head` file (replaced atomically) says where the unsent records start and how many were
# dropped; it is written only when a batch was acknowledged or a segment evicted, and carries the
# caller's `mark` (a small JSON value about what was sent) with it. When the queue is full the
# oldest segment goes and its records are counted in `dropped`. RAM use is one batch.
import binascii
import json
import os
import struct

from micropython import const

from iotlink.files import write_atomic

_FRAME = const("<BHI")  # magic, payload length, CRC32 of the payload
_HEADER = const(7)  # struct.calcsize(_FRAME)
_MAGIC = const(0xA5)


class Store:
    def __init__(self, root="queue", max_bytes=65536, segment_bytes=4096):
        # root: the queue's directory; max_bytes: about the most it holds on flash, in segments
        # of segment_bytes. Where the queued records start and end is found on flash once, at
        # boot: that code (store_once.py), which sets up the rest of the store's state, is loaded
        # for this call only.
        self.max_record = segment_bytes - _HEADER
        from iotlink import unload

        try:
            from iotlink.store_once import open_queue

            open_queue(self, root, max_bytes, segment_bytes)
        finally:
            unload("store_once")

    # ---- files -------------------------------------------------------------------------
    def _path(self, n):
        return "%s/%08d" % (self.root, n)

    def _remove(self, n):
        try:
            os.remove(self._path(n))
        except OSError:
            pass  # never written, or already gone

    def save_head(self):
        head = {"seg": self.head_seg, "off": self.head_off, "dropped": self.dropped, "mark": self.mark}
        write_atomic(self.root + "/head", json.dumps(head).encode())

    def _read_frame(self, f):
        # The next record's payload, or None at the end of the segment or at a torn record.
        header = f.read(_HEADER)
        if len(header) < _HEADER:
            return None
        magic, length, crc = struct.unpack(_FRAME, header)
        if magic != _MAGIC or length > self.max_record:
            return None
        data = f.read(length)
        if len(data) < length or binascii.crc32(data) != crc:
            return None
        return data

    def _next_segment(self):
        self.write_seg += 1
        self.write_size = 0
        if self.write_seg - self.head_seg + 1 > self.max_segments:
            # Full, which only a long outage makes: the oldest segment goes (store_once.py).
            from iotlink import unload

            try:
                from iotlink.store_once import evict

                evict(self)
            finally:
                unload("store_once")

    # ---- the queue -----------------------------------------------------------------------
    def append(self, record):
        # Queue one record (a dict, e.g. {"ts": ms, "values": {...}}).
        data = json.dumps(record).encode()
        if len(data) > self.max_record:
            raise ValueError("record of %d bytes exceeds %d" % (len(data), self.max_record))
        frame = struct.pack(_FRAME, _MAGIC, len(data), binascii.crc32(data)) + data
        if self.write_size + len(frame) > self.segment_bytes:
            self._next_segment()
        try:
            with open(self._path(self.write_seg), "ab") as f:
                f.write(frame)
        except OSError:
            self._next_segment()  # part of the frame may be there: continue in a new segment
            raise
        self.write_size += len(frame)
        self.pending += 1

    def batch(self, max_records=50, max_bytes=4096, after=None, parse=True):
        # The oldest unsent records (at most max_records, about max_bytes of JSON) and a cursor
        # for commit(). Nothing is removed until commit(cursor), after the server took them.
        # after: the cursor of a batch read before, to read the records that follow it.
        # parse=False: each record as its JSON bytes, as it lies on flash.
        records = []
        size = 0
        seg, off = after[:2] if after else (self.head_seg, self.head_off)
        while len(records) < max_records:
            full = False
            try:
                with open(self._path(seg), "rb") as f:
                    f.seek(off)
                    while len(records) < max_records:
                        data = self._read_frame(f)
                        if data is None:
                            break
                        if records and size + len(data) > max_bytes:
                            full = True
                            break
                        records.append(json.loads(data) if parse else data)
                        size += len(data)
                        off = f.tell()
            except OSError:
                pass  # a segment that was never written
            if full or len(records) >= max_records or seg >= self.write_seg:
                break
            seg += 1
            off = 0
        return records, (seg, off, len(records))

    def commit(self, cursor):
        # The records of that batch were delivered: forget them, delete finished segments.
        seg, off, count = cursor
        if not count or (seg, off) < (self.head_seg, self.head_off):
            return
        first = self.head_seg
        self.head_seg, self.head_off = seg, off
        self.pending -= count
        if not self.pending and seg == self.write_seg and off >= self.write_size:
            # Drained: the next record starts a fresh segment.
            self.write_seg += 1
            self.write_size = 0
            self.head_seg, self.head_off = self.write_seg, 0
        self.save_head()
        for n in range(first, self.head_seg):
            self._remove(n)
