"""Regenerate the `tlcli explain` picture of the evaluation guide (docs/guides/evaluation.md) from the
README tour's run (fully offline):

    python scripts/make_explain_picture.py

It trains the tour's run (VGG16, random weights, 32 px, default training settings)
into a temporary folder, explains the first test image of every digit, and copies the contact
sheet to docs/images/explain_contact_sheet.png. Nothing else is written.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PICTURE = ROOT / "docs" / "images" / "explain_contact_sheet.png"


def tlcli(*args) -> None:
    subprocess.run(["tlcli", *map(str, args)], check=True, cwd=ROOT)


def main() -> None:
    test = ROOT / "sample_data" / "test"
    images = [sorted(folder.glob("*.png"))[0] for folder in sorted(test.iterdir())]
    with tempfile.TemporaryDirectory() as scratch:
        run, maps = Path(scratch) / "quickstart", Path(scratch) / "explain"
        tlcli("train", "sample_data/", "--model", "vgg16", "--weights", "none", "--image-size", 32, "--out", run,
              "--quiet")
        tlcli("explain", run, *images, "--out", maps)
        PICTURE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(maps / "contact_sheet.png", PICTURE)
    print(f"Wrote {PICTURE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
