"""Screenshots of the web page for the manual, from a real demo run.

    .venv/bin/python -m iotlink_lab.page_shots [--minutes 5] [--out docs/images]

Runs `iotlink demo` (the local server and a virtual board with its simulated room sensor, a
record every 2 s) for a few minutes, sets the board's `interval_s` shared attribute and switches
its `led` pin, then saves the page in headless Chromium with the charts on their 5-minute range:
at desktop width (page.png) and at a phone's 390 px (page-phone.png), each as tall as the page's content.
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

from iotlink_tools.rest import ThingsBoardREST

from .browser import chromium

# name: (CSS width, height, device pixels per CSS pixel, a phone)
SIZES = {"page.png": (1280, 800, 1, False), "page-phone.png": (390, 844, 2, True)}
IOTLINK = str(Path(sys.executable).with_name("iotlink"))
READY = """return document.querySelectorAll('.chart').length > 0
  && [...document.querySelectorAll('.chart')].every((c) => Number(c.dataset.points) > 2)
  && [...document.querySelectorAll('.switch')].every((s) => !s.disabled)"""


def start_demo(folder: Path) -> tuple[subprocess.Popen, str]:
    demo = subprocess.Popen([IOTLINK, "demo", "--http-port", "0", "--interval", "2", "--dir", str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in demo.stdout:
        found = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        if found:
            threading.Thread(target=demo.stdout.read, daemon=True).start()  # never a full pipe
            return demo, found[1]
    raise SystemExit("the demo did not print its address")


def save(url: str, path: Path, size: tuple, profile: Path) -> None:
    width, height, scale, mobile = size
    driver = chromium(profile, width, height)
    try:
        def metrics(tall):
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                   {"width": width, "height": tall, "deviceScaleFactor": scale, "mobile": mobile})

        metrics(height)
        driver.get(url + "/")
        driver.find_element("css selector", '#ranges button[data-minutes="5"]').click()
        deadline = time.monotonic() + 30
        while not driver.execute_script(READY) and time.monotonic() < deadline:
            time.sleep(0.5)
        metrics(driver.execute_script("return Math.ceil(document.querySelector('main').getBoundingClientRect().bottom)"))
        time.sleep(1)  # the charts take their new width
        driver.save_screenshot(str(path))
    finally:
        driver.quit()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5, help="how long the board reports first (default: 5)")
    p.add_argument("--out", type=Path, default=Path("docs/images"), help="where the PNGs go (default: docs/images)")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="iotlink-shots-") as tmp:
        demo, url = start_demo(Path(tmp) / "demo")
        try:
            rest = ThingsBoardREST(url, "tenant@thingsboard.org", "tenant", retries=0)
            device_id = next(iter(rest.devices()))["id"]["id"]
            time.sleep(args.minutes * 60)
            rest.request("POST", f"/api/plugins/telemetry/DEVICE/{device_id}/SHARED_SCOPE", {"interval_s": 2})
            rest.rpc(device_id, "setGpio", {"pin": "led", "value": 1})
            for name, size in SIZES.items():
                save(url, args.out / name, size, Path(tmp) / f"chromium-{name}")
                print(args.out / name)
        finally:
            demo.send_signal(signal.SIGINT)
            demo.wait(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
