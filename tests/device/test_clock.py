"""The clock: set from the server before any client timestamp, whatever the port's epoch."""

import calendar
import time

import pytest
from support import RawServer


def test_unset_clock_gives_no_timestamp_then_the_server_sets_it(server, mp):
    run = mp(f"""
from iotlink import clock, clock_once
out(clock.now_ms())
out(clock_once.sync_http({server.url!r}))
out(clock.now_ms())
""")
    before, synced, now = run.results
    assert before is None and synced is True
    # Date has whole seconds; watching it turn places the clock within a probe interval.
    assert abs(now - time.time() * 1000) < 300
    assert server.exchanges[0].method == "HEAD"


def test_the_server_time_wins_over_the_local_clock(mp):
    raw = RawServer(b"HTTP/1.1 200 OK\r\nDate: Tue, 01 Jan 2030 12:00:05 GMT\r\nContent-Length: 0\r\n\r\n")
    try:
        run = mp(f"""
from iotlink import clock, clock_once
clock_once.sync_http({raw.url!r})
out(clock.now_ms())
""")
        expected = calendar.timegm((2030, 1, 1, 12, 0, 5)) * 1000
        assert abs(run.result - expected) < 2000
    finally:
        raw.stop()


@pytest.mark.parametrize("reply", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",                        # no Date
    b"HTTP/1.1 200 OK\r\nDate: yesterday-ish\r\nContent-Length: 0\r\n\r\n",  # not a date
    None,                                                                   # never answers
])
def test_no_usable_date_leaves_the_clock_unset(mp, reply):
    raw = RawServer(reply)
    try:
        run = mp(f"""
from iotlink import clock, clock_once
out([clock_once.sync_http({raw.url!r}, timeout=1), clock.now_ms()])
""")
        assert run.result == [False, None]
    finally:
        raw.stop()


def test_civil_date_arithmetic_matches_cpython(mp):
    dates = [(1970, 1, 1), (2000, 1, 1), (2000, 2, 29), (2024, 12, 31), (2038, 1, 19), (2100, 3, 1)]
    run = mp(f"""
from iotlink import clock_once
out([clock_once.unix_seconds(y, m, d, 13, 14, 15) for y, m, d in {dates!r}])
out(clock_once.parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"))
""")
    assert run.results[0] == [calendar.timegm((y, m, d, 13, 14, 15)) for y, m, d in dates]
    assert run.results[1] == 784111777


def test_esp32_epoch_is_converted_when_setting_the_rtc(mp):
    # Emulate an ESP32: its time functions count from 2000; the RTC must get the server's date
    # and now_ms() must stay unix time.
    run = mp("""
import sys, time
stamps = []
class RTC:
    def datetime(self, t):
        stamps.append(list(t))
class machine:
    RTC = RTC
sys.modules["machine"] = machine
from iotlink import clock
class esp32_time:
    gmtime = staticmethod(lambda s: time.gmtime(s + 946684800))
    time_ns = staticmethod(lambda: time.time_ns() - 946684800 * 10**9)
clock.time = esp32_time
clock.EPOCH_OFFSET = 946684800
clock.set_unix_ms(1700000000000)
out(stamps)
out(abs(clock.now_ms() - 1700000000000) < 1000)
""")
    assert run.results == [[[2023, 11, 14, 1, 22, 13, 20, 0]], True]
