"""A 1 MiB package updates a virtual board whose heap is 68 KiB (the update's peak stays under 64 KiB;
below 68 KiB the heap's fragments are too small for the download)."""

import pytest
from iotlink_lab import bench_ota

pytestmark = pytest.mark.slow  # a bench


def test_one_mib_update_in_a_68k_heap():
    figures = bench_ota.run(None, size=1 << 20, heapsize="68k")
    assert figures["package_bytes"] >= 1 << 20
    assert figures["chunks"] == -(-figures["package_bytes"] // 4096)  # every chunk, each once
    assert figures["fw_state"] == "UPDATED"
    assert figures["updated_to"] == figures["expected_version"]
    assert figures["app_swapped"]
    assert figures["heap_before_update_bytes"] < figures["heap_peak_bytes"] < 64 * 1024
