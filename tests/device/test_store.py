"""The flash queue (store.py) in micropython: order, restarts, torn records, a full queue."""

import os

OPEN = """
from iotlink.store import Store
s = Store(max_bytes={max_bytes}, segment_bytes={segment_bytes})
def rec(i):
    return {{"ts": 1700000000000 + i, "values": {{"n": i}}}}
def take(max_records=50, max_bytes=4096):
    records, cursor = s.batch(max_records, max_bytes)
    s.commit(cursor)
    return [r["values"]["n"] for r in records]
"""


def board(mp, code, max_bytes=65536, segment_bytes=4096, **kw):
    """Run code with the store opened on the board's flash (a fresh process: a reboot)."""
    return mp(OPEN.format(max_bytes=max_bytes, segment_bytes=segment_bytes) + code, **kw)


def segments(flash):
    return sorted(p.name for p in (flash / "queue").iterdir() if p.name.isdigit())


def test_records_come_back_oldest_first_across_restarts_and_go_only_when_committed(mp):
    board(mp, "for i in range(5):\n    s.append(rec(i))\nout(s.pending)")
    run = board(mp, """
out(s.pending)
records, cursor = s.batch(3)
out(records)
""")  # not committed: the server never said 2xx
    assert run.results[0] == 5
    assert run.results[1] == [{"ts": 1700000000000 + i, "values": {"n": i}} for i in range(3)]
    run = board(mp, "out(take(3))\nout(s.pending)\ns.append(rec(5))")
    assert run.results == [[0, 1, 2], 2]
    run = board(mp, "out(s.pending)\nout(take())\nout(s.pending)\nout(take())")
    assert run.results == [3, [3, 4, 5], 0, []]
    assert segments(mp.flash) == []  # drained: no segment left behind
    assert (mp.flash / "queue" / "head").exists()
    assert not (mp.flash / "queue" / "head.tmp").exists()


def test_batches_are_bounded_by_count_and_bytes(mp):
    run = board(mp, """
for i in range(30):
    s.append(rec(i))
out(take(10))
out(take(50, 200))
out(take(50, 1))
out(s.pending)
""", segment_bytes=512)
    first, second, third, left = run.results
    assert first == list(range(10))
    assert second[0] == 10 and 1 < len(second) < 10  # about 200 bytes of JSON
    assert third == [second[-1] + 1]  # at least one record, even if larger than the bound
    assert left == 30 - 10 - len(second) - 1
    # Records spanning several segments come back in order; finished segments are deleted.
    run = board(mp, "out(take())", segment_bytes=512)
    assert run.result == list(range(third[0] + 1, 30))
    assert segments(mp.flash) == []


def test_a_record_torn_by_a_power_cut_is_lost_alone(mp):
    board(mp, "for i in range(5):\n    s.append(rec(i))")
    (seg,) = segments(mp.flash)
    path = mp.flash / "queue" / seg
    size = path.stat().st_size
    os.truncate(path, size - 7)  # the last record was half written when the power went
    run = board(mp, "out(s.pending)\ns.append(rec(5))\ns.append(rec(6))\nout(s.pending)")
    assert run.results == [4, 6]
    assert len(segments(mp.flash)) == 2  # appending resumed in a new segment, not after the tear
    run = board(mp, "out(take())\nout(s.pending)")
    assert run.results == [[0, 1, 2, 3, 5, 6], 0]


def test_a_torn_header_and_a_bad_checksum_are_detected(mp):
    board(mp, "for i in range(3):\n    s.append(rec(i))")
    (seg,) = segments(mp.flash)
    path = mp.flash / "queue" / seg
    data = path.read_bytes()
    path.write_bytes(data + b"\xa5\x10")  # a header cut after two bytes
    assert board(mp, "out(s.pending)").result == 3
    # A flipped bit in the last record's payload: its CRC no longer matches.
    board(mp, "for i in range(3, 5):\n    s.append(rec(i))")
    second = segments(mp.flash)[-1]
    path = mp.flash / "queue" / second
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    assert board(mp, "out(take())").result == [0, 1, 2, 3]


def test_a_full_queue_drops_the_oldest_and_counts_them(mp):
    # 2 KiB in 512-byte segments: 4 segments, about 10 records each.
    run = board(mp, """
for i in range(100):
    s.append(rec(i))
out(s.pending)
out(s.dropped)
""", max_bytes=2048, segment_bytes=512)
    pending, dropped = run.results
    assert pending + dropped == 100
    assert dropped > 0
    assert len(segments(mp.flash)) == 4
    run = board(mp, "out(s.dropped)\nout(take())", max_bytes=2048, segment_bytes=512)
    kept_dropped, kept = run.results
    assert kept_dropped == dropped  # the count survives a restart
    assert kept == list(range(dropped, 100))  # the newest stayed, in order


def test_a_full_queue_with_a_torn_end_makes_room_when_it_is_opened(mp):
    # Appending never resumes after a torn record: the next record starts a segment, and a full
    # queue's oldest segment goes for it as the queue is opened.
    board(mp, "for i in range(100):\n    s.append(rec(i))", max_bytes=2048, segment_bytes=512)
    oldest, *_, last = segments(mp.flash)
    in_oldest = frames((mp.flash / "queue" / oldest).read_bytes())
    dropped = board(mp, "out(s.dropped)", max_bytes=2048, segment_bytes=512).result
    path = mp.flash / "queue" / last
    os.truncate(path, path.stat().st_size - 7)
    run = board(mp, "out([s.dropped, s.pending])\ns.append(rec(100))", max_bytes=2048, segment_bytes=512)
    assert run.result[0] == dropped + in_oldest
    assert oldest not in segments(mp.flash) and len(segments(mp.flash)) == 4
    # The oldest segment's records and the torn one are gone; the rest and the new one, in order.
    taken = board(mp, "out(take(200))", max_bytes=2048, segment_bytes=512).result
    assert taken == list(range(dropped + in_oldest, 99)) + [100]
    assert run.result[1] == len(taken) - 1


def frames(data):
    """How many records a segment file holds: magic byte, 2-byte length, CRC32, payload."""
    count = off = 0
    while off < len(data):
        off += 7 + int.from_bytes(data[off + 1:off + 3], "little")
        count += 1
    return count


def test_opening_the_queue_and_evicting_leave_no_code_loaded(mp):
    run = board(mp, """
import sys
once = lambda: [m for m in sys.modules if m.endswith("_once")]
out(once())
for i in range(60):
    s.append(rec(i))
out([once(), s.dropped > 0])
""", max_bytes=2048, segment_bytes=512)
    assert run.results == [[], [[], True]]


def test_a_huge_record_is_refused_without_harm(mp):
    run = board(mp, """
s.append(rec(0))
try:
    s.append({"ts": 1, "values": {"blob": "x" * 600}})
except ValueError as e:
    out(str(e))
s.append(rec(1))
out(take())
""", segment_bytes=512)
    assert "exceeds 505" in run.results[0]
    assert run.results[1] == [0, 1]


def test_a_lost_head_file_means_records_are_sent_again_not_lost(mp):
    board(mp, "for i in range(4):\n    s.append(rec(i))\nout(take(2))")
    (mp.flash / "queue" / "head").write_text("{not json")
    assert board(mp, "out(take())").result == [0, 1, 2, 3]


def test_a_big_queue_is_read_in_a_small_heap(mp):
    # 66 KiB of records on flash, read back with a 48 KiB heap: never the whole file at once.
    # (48, not less: the paths of the checkout also live in that heap.)
    board(mp, """
for i in range(600):
    s.append({"ts": 1700000000000 + i, "values": {"n": i, "pad": "p" * 60}})
out(s.pending)
""", max_bytes=131072)
    run = board(mp, """
import gc
seen = []
while s.pending:
    seen.append(take(50, 2048))
    gc.collect()
out([sum(len(b) for b in seen), seen[0][0], seen[-1][-1]])
""", max_bytes=131072, heapsize="48K")
    assert run.result == [600, 0, 599]


def test_batches_read_on_from_a_cursor_and_the_mark_is_kept_with_the_head(mp):
    board(mp, "for i in range(7):\n    s.append(rec(i))")
    run = board(mp, """
seen = []
cursor = None
while True:
    records, cursor = s.batch(3, after=cursor)
    if not records:
        break
    seen.append([r["values"]["n"] for r in records])
out(seen)
out(s.pending)
out(s.mark)
records, cursor = s.batch(2)
s.mark = [1700000000001, 77, 5]
s.commit(cursor)
""")
    assert run.results == [[[0, 1, 2], [3, 4, 5], [6]], 7, None]  # reading on commits nothing
    run = board(mp, "out(s.mark)\nout(take())")
    assert run.results == [[1700000000001, 77, 5], [2, 3, 4, 5, 6]]
