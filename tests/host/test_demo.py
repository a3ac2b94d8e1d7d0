"""`iotlink demo` (what `make run` runs): server + virtual board + page, and a clean Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest
from support import IOTLINK, alive, children, ctrl_c_works, wait_until

from iotlink_tools.rest import ThingsBoardREST


@pytest.mark.slow
def test_demo_shows_telemetry_and_stops_cleanly_on_ctrl_c(tmp_path):
    demo = subprocess.Popen([IOTLINK, "demo", "--http-port", "0", "--interval", "1", "--dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"}, preexec_fn=ctrl_c_works)
    try:
        lines = []
        for line in demo.stdout:
            lines.append(line)
            if sum("telemetry" in seen and "uptime_s=" in seen for seen in lines) >= 2:
                break
        output = "".join(lines)
        url = re.search(r"(http://127\.0\.0\.1:\d+)/", output)
        assert url, output
        # The REST API (what the page shows) has what the board sent, so the printed lines are real.
        rest = ThingsBoardREST(url[1], "tenant@thingsboard.org", "tenant", retries=0)
        devices = list(rest.devices())
        assert [d["name"] for d in devices] == ["demo-board"]
        device_id = devices[0]["id"]["id"]
        keys = ["uptime_s", "mem_free", "temperature", "humidity"]  # the last two: its simulated room sensor
        assert set(rest.latest_telemetry(device_id, keys)) == set(keys)
        pins = rest.request("GET", f"/api/plugins/telemetry/DEVICE/{device_id}/values/attributes/CLIENT_SCOPE",
                            query={"keys": "gpio_pins"})
        assert pins[0]["value"] == ["23", "led"]
        assert json.loads((tmp_path / "demo-board" / "config.json").read_text())["pins"] == {"23": 23, "led": "LED"}

        boards = children(demo.pid)
        assert boards and all("micropython" in Path(f"/proc/{pid}/cmdline").read_text() for pid in boards)
        demo.send_signal(signal.SIGINT)
        assert demo.wait(15) == 130
        for pid in boards:
            wait_until(lambda: not alive(pid), 5, f"board process {pid} to end")
        with pytest.raises(OSError):
            urllib.request.urlopen(url[1] + "/", timeout=2)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
