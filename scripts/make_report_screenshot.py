"""Regenerate the screenshot of `tlcli report`'s page in docs/images/report.png (fully offline):

    python scripts/make_report_screenshot.py

It trains the README's quickstart (VGG16, random weights, 32 px, default training settings) into
a temporary folder, evaluates it on the sample data's test split (which writes report.html beside
the reports), opens the page in headless Chromium (the system's chromium and chromium-driver, as
scripts/install-dev installs them; no network) at 1280 x 1000, scrolled to "How good it is", and
saves the screenshot. Nothing else is written.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from browser import headless_chromium, missing  # noqa: E402

SCREENSHOT = ROOT / "docs" / "images" / "report.png"
WIDTH, HEIGHT = 1280, 1000


def tlcli(*args) -> None:
    subprocess.run([sys.executable, "-m", "tlcli", *map(str, args)], check=True, cwd=ROOT)


def main() -> None:
    reason = missing()
    if reason:
        sys.exit(f"make_report_screenshot: no headless Chromium: {reason}")
    with tempfile.TemporaryDirectory() as scratch:
        run, evaluation = Path(scratch) / "quickstart", Path(scratch) / "evaluation"
        tlcli("train", "sample_data/", "--model", "vgg16", "--weights", "none", "--image-size", 32, "--quiet",
              "--out", run)
        tlcli("evaluate", run, "sample_data/", "--out", evaluation)
        with headless_chromium(WIDTH, HEIGHT) as browser:
            loaded = browser.load(evaluation / "report.html")
            if loaded.errors() or loaded.outside():
                sys.exit(f"make_report_screenshot: the page did not load cleanly: {loaded.errors() or loaded.outside()}")
            browser.driver.execute_script("document.getElementById('quality').scrollIntoView()")
            time.sleep(0.5)  # the parts scrolled into view are laid out and painted
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            SCREENSHOT.write_bytes(browser.screenshot())
    print(f"Wrote {SCREENSHOT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
