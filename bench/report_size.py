"""How heavy and how slow is `tlcli report`'s page? Its size, the time to write it and the time a
browser takes to show it, for the shipped sample data and for 2,000 test images.

    python bench/report_size.py                      # both (about 5 minutes on 2 cores)
    python bench/report_size.py --datasets sample    # the shipped sample data only

sample: the README's quickstart (sample_data/, VGG16 with random weights at 32 px, default
training), evaluated on its 100 test images. synthetic: 10 classes of 256 x 256 JPEG colour
textures whose class is a faint tint (so the model gets many wrong: the misclassified gallery is
full), 20 training, 10 validation and 200 test images per class; the same backbone and settings.

For each: `tlcli report RUN --evaluation EVAL` as a fresh process (what a user waits, Python's
start and imports included), the page's bytes and thumbnails, then headless Chromium (the
system's, no network, as the browser tests start it) at 1280 x 900: the load (from asking for the
file to its load event and the next paint; thumbnails below the fold load lazily) and every
thumbnail decoded (all of them made eager, then decoded). Browser times are the median of
--rounds loads in one browser.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))
from browser import headless_chromium  # noqa: E402
from common import checkout_commit, machine, save  # noqa: E402

TRAIN = ("--model", "vgg16", "--weights", "none", "--image-size", 32, "--quiet")
SYNTHETIC = {"train": 20, "val": 10, "test": 200}  # images per class
CLASSES = 10
SIDE = 256  # pixels of a synthetic image


def tlcli(*args) -> float:
    """Run `python -m tlcli ARGS` from this checkout; its wall time in seconds."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tlcli", *map(str, args)], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def write_synthetic(root: Path, seed: int = 0) -> Path:
    """CLASSES folders of textured JPEGs, each class a faint tint of its own, in train/val/test."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    tints = rng.uniform(-12, 12, (CLASSES, 3))
    rows, columns = np.mgrid[0:SIDE, 0:SIDE]
    for split, count in SYNTHETIC.items():
        for label in range(CLASSES):
            folder = root / split / f"class_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for number in range(count):
                phase = rng.uniform(0, 2 * np.pi, 3)
                base = np.stack([128 + 70 * np.sin(columns / rng.uniform(8, 40) + phase[0]),
                                 128 + 70 * np.cos(rows / rng.uniform(8, 40) + phase[1]),
                                 128 + 70 * np.sin((rows + columns) / rng.uniform(8, 40) + phase[2])], -1)
                pixels = np.clip(base + tints[label] + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{number:04d}.jpg", quality=85)
    return root


def measure(data: Path, scratch: Path, rounds: int) -> dict:
    run, evaluation, page = scratch / "run", scratch / "evaluation", scratch / "page.html"
    train_seconds = tlcli("train", data, *TRAIN, "--out", run)
    evaluate_seconds = tlcli("evaluate", run, data, "--out", evaluation, "--no-report")
    report_seconds = tlcli("report", run, "--evaluation", evaluation, "--out", page)
    document = json.loads((evaluation / "evaluation.json").read_text())
    html = page.read_text()
    loads, decodes = [], []
    with headless_chromium(1280, 900) as browser:
        for _ in range(rounds):
            loaded = browser.load(page)
            assert not loaded.errors() and not loaded.outside(), (loaded.errors(), loaded.outside())
            started = time.perf_counter()
            browser.driver.execute_script(
                "const images = Array.from(document.images); images.forEach(image => image.loading = 'eager');"
                "return Promise.all(images.map(image => image.decode()))")
            decodes.append(loaded.seconds + time.perf_counter() - started)
            loads.append(loaded.seconds)
    return {
        "test_images": document["samples"], "misclassified": document["misclassified"],
        "accuracy": document["accuracy"], "thumbnails": html.count('class="thumbnail"'),
        "bytes": len(html.encode()), "train_seconds": round(train_seconds, 1),
        "evaluate_seconds": round(evaluate_seconds, 1), "report_seconds": round(report_seconds, 2),
        "load_seconds": round(statistics.median(loads), 3), "decoded_seconds": round(statistics.median(decodes), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="sample,synthetic")
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    commit = checkout_commit()
    results = {}
    for name in arguments.datasets.split(","):
        with tempfile.TemporaryDirectory() as scratch:
            scratch = Path(scratch)
            data = ROOT / "sample_data" if name == "sample" else write_synthetic(scratch / "data")
            results[name] = measure(data, scratch, arguments.rounds)
        print(json.dumps({name: results[name]}), flush=True)
    print(f"\ncommit {commit}")
    print("| data | test images | misclassified | thumbnails | page | tlcli report | browser load | every thumbnail decoded |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in results.items():
        print(f"| {name} | {row['test_images']:,} | {row['misclassified']:,} | {row['thumbnails']} | "
              f"{row['bytes'] / 2**20:.2f} MB | {row['report_seconds']:.1f} s | {row['load_seconds']:.2f} s | "
              f"{row['decoded_seconds']:.2f} s |")
    save("report_size", {"machine": machine(), "commit": commit, "results": results})


if __name__ == "__main__":
    main()
