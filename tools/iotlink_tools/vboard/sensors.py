"""sensors.py files for virtual boards: readings that are numbered, so a run can count what was lost,
and a simulated room, so the web page's charts have something to show."""

from __future__ import annotations

from pathlib import Path

SEQ_FILE = "reading_seq"  # on the board's flash: how many readings were taken

# A room whose temperature and humidity drift over minutes, with a little noise (`iotlink demo`).
ROOM_SENSORS = """\
import math
import random
import time


def read():
    minutes = time.time() / 60
    noise = random.getrandbits(8) / 255 - 0.5
    return {
        "temperature": round(21.5 + 1.5 * math.sin(minutes / 2) + 0.3 * noise, 2),
        "humidity": round(45 + 6 * math.sin(minutes / 5 + 1) + noise, 1),
    }
"""


def numbered_sensors(keys: int) -> str:
    """A sensors.py whose readings have `keys` keys (s00, s01, ...), all carrying the reading's
    number. The count is on flash before the reading is returned, so a reading is never
    numbered twice, whatever the power does."""
    return f"""
import os
try:
    with open("{SEQ_FILE}") as f:
        seq = int(f.read())
except (OSError, ValueError):
    seq = 0

def read():
    global seq
    seq += 1
    with open("{SEQ_FILE}.tmp", "w") as f:
        f.write(str(seq))
    os.rename("{SEQ_FILE}.tmp", "{SEQ_FILE}")
    return {{"s%02d" % i: seq for i in range({keys})}}
"""


def readings(flash: Path) -> int:
    """How many readings a board with numbered_sensors() has taken."""
    seq = flash / SEQ_FILE
    return int(seq.read_text()) if seq.exists() else 0
