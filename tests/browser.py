"""Headless Chromium, from the system's packages (Debian's `chromium` and `chromium-driver`, which
scripts/install-dev installs), driven by Selenium, for the tests and scripts that look at tlcli's
HTML report in a real browser.

The browser downloads nothing and reaches nothing: Selenium is given the system's chromedriver
(its own driver manager stays offline), Chromium's background services are off, every host name
resolves to nothing and every connection goes to a proxy on a closed port. Whatever the page
still asks for is recorded from the DevTools network events, so that a test can say it asked for
nothing beyond its own file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

CHROMIUM = Path(os.environ.get("TLCLI_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("TLCLI_CHROMEDRIVER", "/usr/bin/chromedriver"))
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
    "--hide-scrollbars", "--force-device-scale-factor=1",
    # No network for the page: no name resolves, and any connection goes to a closed port.
    "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
)
LOCAL_SCHEMES = ("file:", "data:")  # what a self-contained page may load: itself, and its inlined pictures


def missing() -> str | None:
    """Why the browser cannot start here (what to install), or None when it can."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        return f"{CHROMIUM} and {CHROMEDRIVER} are needed (scripts/install-dev installs chromium and chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is needed (python -m pip install -e '.[dev]')"
    return None


@dataclass(frozen=True)
class Loaded:
    """A page as the browser loaded it."""

    url: str
    seconds: float  # from asking for the page to its load event and the first paint after it
    console: list[dict]  # the console's messages (level, message, source)
    requests: list[str]  # every URL the page asked for, itself included

    def errors(self) -> list[str]:
        return [entry["message"] for entry in self.console if entry.get("level") in ("SEVERE", "ERROR")]

    def outside(self) -> list[str]:
        """What the page asked for beyond its own file and its data: URIs."""
        return [url for url in self.requests if not url.startswith(LOCAL_SCHEMES)]


class Browser:
    def __init__(self, driver):
        self.driver = driver

    def viewport(self, width: int, height: int, mobile: bool = False) -> None:
        """Make the page's viewport exactly `width` x `height` CSS pixels (a phone's with `mobile`)."""
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})

    def load(self, path: Path) -> Loaded:
        """Open the file at `path`, wait for its load event and a paint, and say what it asked for."""
        self.driver.get_log("performance"), self.driver.get_log("browser")  # forget what came before
        url = Path(path).resolve().as_uri()
        started = time.perf_counter()
        self.driver.get(url)  # returns after the load event
        self.driver.execute_async_script("requestAnimationFrame(() => requestAnimationFrame(arguments[0]))")
        seconds = time.perf_counter() - started
        requests = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            # The browser's own pages (a new tab's) load too: only this page's requests count.
            if message["method"] == "Network.requestWillBeSent" and message["params"].get("documentURL") == url:
                requests.append(message["params"]["request"]["url"])
        return Loaded(url, seconds, self.driver.get_log("browser"), requests)

    def screenshot(self) -> bytes:
        """The viewport as a PNG image."""
        return self.driver.get_screenshot_as_png()

    def alert_text(self) -> str | None:
        """The text of an open alert, prompt or confirm dialog; None when there is none."""
        from selenium.common.exceptions import NoAlertPresentException

        try:
            return self.driver.switch_to.alert.text
        except NoAlertPresentException:
            return None


@contextlib.contextmanager
def headless_chromium(width: int = 1280, height: int = 900) -> Iterator[Browser]:
    """A headless Chromium with a fresh profile and no network, its viewport `width` x `height`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium's driver manager: never download a driver
    profile = tempfile.mkdtemp(prefix="tlcli-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        browser = Browser(driver)
        browser.viewport(width, height)
        yield browser
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
