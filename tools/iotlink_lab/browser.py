"""Debian's headless Chromium driven by selenium: the page's tests and its screenshots use it."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def chromium(profile: Path, width: int = 1100, height: int = 700):
    """A new headless Chromium with its profile in the folder profile, its window width x height."""
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    try:
        return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    except WebDriverException:
        # chromedriver may exit as it starts (e.g. another process took the free port selenium
        # chose for it, on a busy machine): one more try, on a new port.
        return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
