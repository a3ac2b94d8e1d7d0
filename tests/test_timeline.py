"""Timestamps that only go forward across boots (timeline.py), on a real flash queue, in micropython."""

SETUP = """
from iotlink.store import Store
from iotlink.timeline import Timeline
store = Store()
"""


def test_dead_boots_are_placed_after_the_record_before_them_and_this_boot_after_all(mp):
    run = mp(SETUP + """
for r in ({"ts": 1000, "values": {}}, {"boot": 1, "up": 100, "values": {}}, {"boot": 1, "up": 200, "values": {}},
          {"boot": 2, "up": 50, "values": {}}, {"boot": 2, "up": 80, "values": {}}):
    store.append(r)
t = Timeline(3, store)
out(t.newest)
state = t.sent
placed = []
for r in store.batch()[0]:
    ts, state = t.place(r, state)
    placed.append(ts)
out(placed)
out(t.place({"boot": 3, "up": 300, "values": {}}, state)[0])  # no clock yet: the server stamps it
t.clock_set(1100, 500)  # a clock 0.7 s behind what the queue already holds
out([t.start, t.stamp(1200, 600), t.stamp(1150, 650)])
out(t.place({"boot": 3, "up": 300, "values": {}}, state)[0])
""")
    newest, placed, unclocked, stamps, read_before_the_clock = run.results
    assert placed == [1000, 1100, 1200, 1250, 1280] and newest == 1280
    assert unclocked is None
    # This boot starts after the newest stamp; a clock moved back never repeats a stamp.
    assert stamps == [1281, 1281 + 600, 1281 + 601]
    assert read_before_the_clock == 1281 + 300


def test_with_no_stamp_ever_a_dead_boot_is_left_for_the_server_and_the_mark_survives(mp):
    run = mp(SETUP + """
t = Timeline(9, store)
out(t.newest)
out(t.place({"boot": 4, "up": 10, "values": {}}, t.sent)[0])
store.mark = [5000, 4, 4000]
t = Timeline(9, store)
out([t.newest, t.place({"boot": 4, "up": 10, "values": {}}, t.sent)[0]])
store.mark = ["garbage", None]
out(Timeline(9, store).newest)
""")
    assert run.results == [0, None, [5000, 5001], 0]
