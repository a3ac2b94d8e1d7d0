"""Timestamps that only go forward across boots (outbox.Timeline, resumed and started by
outbox_once), on a real flash queue, in micropython."""

SETUP = """
import json
from iotlink.store import Store
from iotlink.outbox import Timeline
from iotlink.outbox_once import resume, start
store = Store()

def timeline(boot):
    # As the outbox makes it at boot: from the head's mark and the records still queued.
    t = Timeline()
    resume(t, boot, store)
    return t

def place_all(t):
    # The ts each queued record gets as the batch is sent (None: left for the server to stamp)
    # and the placing state after them.
    body, state = t.body(store.batch(parse=False)[0])
    return [r["ts"] if "values" in r else None for r in json.loads(body)], state
"""


def test_dead_boots_are_placed_after_the_record_before_them_and_this_boot_after_all(mp):
    run = mp(SETUP + """
for r in ({"ts": 1000, "values": {}}, {"boot": 1, "up": 100, "values": {}}, {"boot": 1, "up": 200, "values": {}},
          {"boot": 2, "up": 50, "values": {}}, {"boot": 2, "up": 80, "values": {}}):
    store.append(r)
t = timeline(3)
out(t.newest)
placed, state = place_all(t)
out(placed)
out(t.place({"boot": 3, "up": 300, "values": {}}, state)[0])  # no clock yet: after the last, by uptime
start(t, 1100, 500)  # a clock 0.7 s behind what the queue already holds
out([t.start, t.stamp(1200, 600), t.stamp(1150, 650)])
out(t.place({"boot": 3, "up": 300, "values": {}}, state)[0])
""")
    newest, placed, unclocked, stamps, read_before_the_clock = run.results
    assert placed == [1000, 1100, 1200, 1250, 1280] and newest == 1280
    assert unclocked == 1280 + 300
    # This boot starts after the newest stamp; a clock moved back never repeats a stamp.
    assert stamps == [1281, 1281 + 600, 1281 + 601]
    assert read_before_the_clock == 1281 + 300


def test_with_no_stamp_ever_a_clockless_boot_is_left_for_the_server_and_a_bad_mark_is_ignored(mp):
    run = mp(SETUP + """
t = timeline(9)
out(t.newest)
out(t.place({"boot": 4, "up": 10, "values": {}}, t.sent)[0])
store.mark = {"sent": [5000, 4, 4000], "clocks": []}
t = timeline(9)
out([t.newest, t.place({"boot": 4, "up": 10, "values": {}}, t.sent)[0]])
for bad in (["garbage", None], {"sent": [None, 1, 2], "clocks": [[1]]}, {"sent": "x", "clocks": 7}):
    store.mark = bad
    out(timeline(9).newest)
""")
    assert run.results == [0, None, [5000, 5001], 0, 0, 0]


def test_early_readings_of_a_boot_that_had_a_clock_keep_their_time_after_a_power_cut(mp):
    boot = mp("""
from iotlink.outbox import Outbox
o = Outbox(65536)
o.add({}, None, 700)  # read before the clock was set
o.add({}, 1_700_000_002_000, 2_000)
out(o.timeline.boot)
""").result  # and the power goes before anything was sent
    run = mp(SETUP + """
out(store.mark)
t = timeline(6)
out(place_all(t)[0])
""")
    mark, placed = run.results
    assert mark == {"sent": [None, None, 0], "clocks": [[boot, 1_700_000_000_000]]}
    assert placed == [1_700_000_000_700, 1_700_000_002_000]


def test_readings_with_no_time_before_them_end_just_before_the_first_time_after_them(mp):
    run = mp(SETUP + """
for r in ({"boot": 1, "up": 100, "values": {}}, {"boot": 1, "up": 200, "values": {}},
          {"boot": 2, "up": 50, "values": {}}, {"ts": 10_000, "values": {}}):
    store.append(r)
t = timeline(3)
out([t.newest, place_all(t)[0]])
""")
    assert run.result == [10_000, [9_849, 9_949, 9_999, 10_000]]


def test_a_queue_with_no_time_at_all_is_placed_before_this_boot_once_its_clock_is_set(mp):
    run = mp(SETUP + """
for up in (100, 200):
    store.append({"boot": 1, "up": up, "values": {}})
t = timeline(2)
out(place_all(t)[0])  # nothing to place them by: the server would stamp them on arrival
start(t, 50_000, 1_000)
store.append({"boot": 2, "up": 1_500, "values": {}})
out(place_all(t)[0])
""")
    assert run.results == [[None, None], [48_899, 48_999, 50_500]]


def test_a_batch_body_sends_stamped_records_as_they_lie_on_flash(mp):
    # The first frame is JSON as json.dumps would not write it (no spaces): encoded again, it
    # would change, so the body shows whether it went as it lay.
    run = mp(SETUP + """
t = timeline(8)
frames = [b'{"ts":1000,"values":{"t":21.5}}', b'{"boot":7,"up":40,"values":{"t":22}}']
body, state = t.body(frames)
out([body.decode(), state[0], t.body([])[0].decode()])
""")
    body, last, empty = run.result
    # The stamped record's bytes as they were; the other one placed after it by its uptime.
    assert body == '[{"ts":1000,"values":{"t":21.5}},{"ts": 1040, "values": {"t": 22}}]'
    assert last == 1040
    assert empty == ""  # nothing to send: ThingsBoard never answers a POST of []
