"""Screenshots of the web page for the manual, from a real demo run.

    .venv/bin/python tests/page_screenshots.py [--minutes 5] [--out docs/images]

Runs `iotlink demo` (the local server and a virtual board with its simulated room sensor,
a record every 2 s) for a few minutes, sets the board's `interval_s` shared attribute and
switches a pin, then saves the page in headless Chromium at desktop width (page.png) and at a
phone's 390 px (page-phone.png), each as tall as the page.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from test_page import chromium
from test_sim import IOTLINK

from iotlink_tools import REPO
from iotlink_tools.rest import ThingsBoardREST

SIZES = {"page.png": (1280, 900, 1, False), "page-phone.png": (390, 844, 2, True)}


def start_demo(folder: Path) -> tuple[subprocess.Popen, str]:
    demo = subprocess.Popen([IOTLINK, "demo", "--port", "0", "--interval", "2", "--dir", str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in demo.stdout:
        found = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        if found:
            # Keep reading its output so that the demo never blocks on a full pipe.
            threading.Thread(target=demo.stdout.read, daemon=True).start()
            return demo, found[1]
    raise SystemExit("the demo did not print its address")


def save(url: str, out: Path, name: str, profile: Path) -> None:
    width, height, scale, mobile = SIZES[name]
    driver = chromium(profile, width, height)
    try:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile})
        driver.get(url + "/")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # charts drawn, pins read from the board
            ready = driver.execute_script(
                "return [...document.querySelectorAll('.chart')].every(c => Number(c.dataset.points) > 2)"
                " && document.querySelectorAll('.chart').length > 0"
                " && [...document.querySelectorAll('.switch')].every(s => !s.disabled)")
            if ready:
                break
            time.sleep(0.5)
        time.sleep(1)
        full = driver.execute_script("return document.documentElement.scrollHeight")
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": width, "height": full, "deviceScaleFactor": scale, "mobile": mobile})
        time.sleep(1)
        driver.save_screenshot(str(out / name))
    finally:
        driver.quit()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5, help="how long the board reports first")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="iotlink-shots-") as tmp:
        demo, url = start_demo(Path(tmp) / "demo")
        try:
            rest = ThingsBoardREST(url, "tenant@thingsboard.org", "tenant", retries=0)
            device_id = next(iter(rest.devices()))["id"]["id"]
            time.sleep(args.minutes * 60)
            rest.request("POST", f"/api/plugins/telemetry/DEVICE/{device_id}/SHARED_SCOPE", body={"interval_s": 2})
            rest.rpc(device_id, "setGpio", {"pin": "led", "value": 1})
            for name in SIZES:
                save(url, args.out, name, Path(tmp) / f"chromium-{name}")
                print(args.out / name)
        finally:
            demo.send_signal(signal.SIGINT)
            demo.wait(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
