# The flash queue's rare work (store.py), loaded for one call: opening the queue at boot, which
# finds on flash where the unsent records start (the head file) and where they end (the segments,
# read to their last whole record), and evicting the oldest segment of a full queue.
import json
import os

from iotlink.files import read


def open_queue(s, root, max_bytes, segment_bytes):
    # The state of Store s (Store() set only its max_record): its parameters, and its queue in
    # directory root as a power cut or a reset left it: where the unsent records start, how many
    # there are, the segment the next record goes to.
    s.root = root
    s.segment_bytes = segment_bytes
    s.max_segments = max(2, max_bytes // segment_bytes)
    try:
        os.mkdir(root)
    except OSError:
        pass  # already there
    segments = sorted(int(name) for name in os.listdir(root) if name.isdigit())
    s.head_seg, s.head_off, s.dropped, s.mark = _load_head(root, segments[0] if segments else 1)
    for n in segments:
        if n < s.head_seg:  # sent, but the board stopped before deleting it
            s._remove(n)
    s.pending = 0
    end = s.head_off
    for n in segments:
        if n >= s.head_seg:
            count, end = _scan(s, n, s.head_off if n == s.head_seg else 0)
            s.pending += count
    s.write_seg = max(segments[-1] if segments else 0, s.head_seg)
    try:
        s.write_size = os.stat(s._path(s.write_seg))[6]
    except OSError:
        s.write_size = 0
    if end != s.write_size:
        # A torn record ends the last segment: never append after it. The next record starts a
        # segment, which a full queue makes room for.
        s.write_seg += 1
        s.write_size = 0
        evict(s)


def _load_head(root, first):
    # (segment, offset) of the first unsent record, the dropped count and the caller's mark.
    try:
        head = json.loads(read(root + "/head"))
        return int(head["seg"]), int(head["off"]), int(head["dropped"]), head.get("mark")
    except (OSError, ValueError, KeyError, TypeError):
        # No head yet (or unreadable): start at the oldest segment. At worst records that were
        # sent go again, with their own ts, which the server stores once.
        return first, 0, 0, None


def _scan(s, n, off):
    # (whole records from off, offset after the last of them) in segment n.
    count = 0
    try:
        with open(s._path(n), "rb") as f:
            f.seek(off)
            while s._read_frame(f) is not None:
                count += 1
                off = f.tell()
    except OSError:
        pass
    return count, off


def evict(s):
    # While the queue holds more segments than it may, the oldest goes, with what was still
    # unsent in it, counted in dropped.
    while s.write_seg - s.head_seg + 1 > s.max_segments:
        count, _ = _scan(s, s.head_seg, s.head_off)
        s.dropped += count
        s.pending -= count
        s._remove(s.head_seg)
        s.head_seg += 1
        s.head_off = 0
        s.save_head()
