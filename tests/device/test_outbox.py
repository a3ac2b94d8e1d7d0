"""The outbox (outbox.py) in micropython: a reading is on flash before anything is sent, a batch
leaves flash only once sent() says the server has it, and a power cut in between sends it again,
never a sent one."""

import json

OPEN = """
import json
from iotlink.outbox import Outbox
o = Outbox(65536)
def batch(max_bytes=4096):
    body, receipt = o.batch(max_bytes)
    return (json.loads(body) if body else []), receipt
def seq(records):
    return [r["values"]["n"] for r in records]
"""


def boot(mp, code):
    """Run code with the outbox opened on the board's flash (a fresh process: a reboot)."""
    return mp(OPEN + code)


def test_a_batch_is_sent_again_after_a_power_cut_until_the_server_has_it(mp):
    boot(mp, """
for n in range(5):
    o.add({"n": n}, 1_700_000_000_000 + n * 1000, n * 1000)
records, receipt = batch()
out([o.pending, seq(records)])
""")  # and the power goes before the server answered
    run = boot(mp, """
records, receipt = batch(200)
out([o.pending, seq(records), [r["ts"] for r in records]])
out(o.sent(receipt))
""")  # now the server took the first batch
    (pending, first, stamps), count = run.results
    assert pending == 5 and first == list(range(len(first))) and 1 < len(first) < 5
    assert stamps == [1_700_000_000_000 + n * 1000 for n in first]  # as read, not as sent
    assert count == len(first)
    run = boot(mp, """
records, receipt = batch()
out([o.pending, seq(records)])
o.sent(receipt)
out([o.pending, batch()[0], o.dropped])
""")
    assert run.results == [[5 - count, list(range(count, 5))], [0, [], 0]]


def test_stamps_only_go_forward_across_boots_and_a_clock_set_behind(mp):
    boot(mp, """
o.add({"n": 0}, 1_700_000_010_000, 5_000)
o.sent(o.batch(4096)[1])
""")
    run = boot(mp, """
o.add({"n": 1}, None, 100)  # before this boot's clock is set
o.clock_set(1_700_000_000_000, 1_000)  # set 10 s behind the last stamp sent
o.add({"n": 2}, 1_700_000_000_500, 1_500)
records, receipt = batch()
out([[r["ts"] for r in records], seq(records)])
""")
    stamps, order = run.result
    assert order == [1, 2]
    assert stamps == sorted(set(stamps)) and stamps[0] > 1_700_000_010_000


def test_a_batch_the_server_refuses_for_good_is_dropped_and_the_rest_goes_on(mp):
    run = boot(mp, """
for n in range(3):
    o.add({"n": n}, 1_700_000_000_000 + n, n)
o.add({"blob": "x" * 5000}, 1_700_000_000_100, 100)  # larger than a segment: never on flash
out(o.dropped)
records, receipt = batch(40)
out([seq(records), o.sent(receipt, refused=True), o.dropped, o.pending])
out(seq(batch()[0]))
""")
    assert run.results == [1, [[0], 1, 2, 2], [1, 2]]
    assert "queue: record lost (record of" in run.stdout


def test_a_reading_the_heap_cannot_queue_is_counted_as_dropped_and_the_next_one_is_queued(mp):
    run = boot(mp, """
append = o.store.append
def short(frame):
    raise MemoryError("memory allocation failed, allocating 4096 bytes")
o.store.append = short
o.add({"n": 0}, 1_700_000_000_000, 0)
o.store.append = append
o.add({"n": 1}, 1_700_000_000_001, 1)
out([o.dropped, o.pending, seq(batch()[0])])
""")
    assert run.result == [1, 1, [1]]
    assert "queue: record lost (memory allocation failed" in run.stdout


def test_the_once_a_boot_code_is_not_kept_loaded(mp):
    # Opening the queue, resuming the timeline and starting it on the clock load their code
    # (store_once, outbox_once) for that call only.
    run = boot(mp, """
import sys
once = lambda: [m for m in sys.modules if m.endswith("_once")]
out([once(), o.timeline.start])
o.add({"n": 0}, 1_700_000_000_000, 1_000)
out([once(), o.timeline.start])
""")
    assert run.results == [[[], None], [[], 1_700_000_000_000 - 1_000]]


def test_the_body_is_what_thingsboard_takes(mp):
    run = boot(mp, """
o.add({"t": 21.5}, 1_700_000_000_000, 0)
out(o.batch(4096)[0].decode())
""")
    assert json.loads(run.result) == [{"ts": 1_700_000_000_000, "values": {"t": 21.5}}]


# ---- the loop's sending (App.send_batch) against a server that refuses -------------------------

SEND = """
import json
from iotlink import app
from iotlink.errors import HTTPError
a = app.App(app.config.load())

class Server:  # what send_telemetry meets: STATUS for the first FAILING requests, then 200, but
    # 400 for any batch that holds the record with "bad"
    def __init__(self):
        self.stored, self.requests, self.statuses = [], 0, []
    def send_telemetry(self, body):
        records = json.loads(body)
        self.requests += 1
        status = STATUS if self.requests <= FAILING else 200
        if any(r["values"].get("bad") for r in records):
            status = 400
        self.statuses.append([len(records), status])
        if status != 200:
            raise HTTPError(status, "refused")
        self.stored += [r["values"]["n"] for r in records]

a.client = server = Server()
for n in range(10):
    a.outbox.add({"n": n, "bad": n == BAD}, 1_700_000_000_000 + n, n)
for _ in range(30):  # steps of the loop, each a batch: on any error, recover() decides
    if not a.outbox.pending:
        break
    try:
        a.send_batch()
    except Exception as e:
        a.recover(e)
out([server.stored, a.outbox.dropped, a.outbox.pending, server.statuses])
"""


def send(mp, status=200, failing=0, bad=None):
    (mp.flash / "config.json").write_text(json.dumps({"server": "http://127.0.0.1:1", "token": "T"}))
    return mp(f"STATUS, FAILING, BAD = {status}, {failing}, {bad}\n" + SEND).result


def test_a_server_answering_404_for_a_while_loses_nothing(mp):
    stored, dropped, pending, statuses = send(mp, status=404, failing=3)
    assert stored == list(range(10)) and dropped == 0 and pending == 0
    assert statuses == [[10, 404]] * 3 + [[10, 200]]


def test_other_4xx_keep_the_queue_too(mp):
    for status in (405, 409, 410, 408, 429):
        assert send(mp, status=status, failing=2)[:3] == [list(range(10)), 0, 0]
        (mp.flash / "queue").rename(mp.flash / f"queue-{status}")


def test_a_batch_with_a_record_the_server_refuses_loses_only_that_record(mp):
    stored, dropped, pending, statuses = send(mp, bad=6)
    assert stored == [0, 1, 2, 3, 4, 5, 7, 8, 9] and dropped == 1 and pending == 0
    # Halved until the refused record is alone: 10 refused; 5 taken, 5 refused; 2 refused; 1 taken,
    # 1 refused and dropped; then the rest as one batch again.
    assert statuses == [[10, 400], [5, 200], [5, 400], [2, 400], [1, 200], [1, 400], [3, 200]]
