"""The radio bench (`make bench`): each of its four boards sends its readings, and the radio log
the fake Wi-Fi keeps gives each case its radio-on time."""

import pytest
from iotlink_lab import bench_radio

pytestmark = pytest.mark.slow  # four virtual boards, half a minute


def test_the_radio_bench_measures_four_ways_to_send_a_reading():
    figures = bench_radio.run(n=6)
    assert [name for name in figures if name in bench_radio.CASES] == list(bench_radio.CASES)
    assert figures["deep sleep, N=6"]["sending_wakes"] == 1 and figures["deep sleep, N=1"]["sending_wakes"] == 3
    loop = figures["always-on loop"]
    assert loop["readings"] >= 3 and loop["radio_on_share"] > 0.9  # its radio never goes down
    per_reading = {name: figures[name]["ms_per_reading"] for name in bench_radio.CASES}
    # A join (JOIN_MS) is most of an exchange: six readings share one.
    assert per_reading["deep sleep, N=1"] >= bench_radio.JOIN_MS > per_reading["deep sleep, N=6"] > 0
    assert per_reading["naive loop"] >= bench_radio.JOIN_MS
    report = bench_radio.report(figures)
    assert all(name in report for name in bench_radio.CASES)
