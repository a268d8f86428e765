"""Peak memory of `tlcli extract` on N and 8N images: features stream to disk, so it stays flat.

Each extraction runs as its own `tlcli extract` process; its peak resident memory (ru_maxrss)
comes from os.wait4. Goal: 8x the images raises peak RSS by less than 10 %.

    python bench/extract_memory.py [--images 200] [--model resnet50] [--image-size 64]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def write_jpegs(folder: Path, count: int, size=(96, 72)) -> Path:
    rng = np.random.default_rng(count)
    for index in range(count):
        path = folder / f"class_{index % 2}" / f"image_{index:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=90)
    return folder


def peak_rss_of_extract(folder: Path, out: Path, model: str, image_size: int, batch_size: int) -> tuple[float, float]:
    """(peak resident MB, seconds) of one `tlcli extract` process."""
    command = [sys.executable, "-m", "tlcli", "extract", str(folder), "--model", model, "--weights", "none",
               "--image-size", str(image_size), "--batch-size", str(batch_size), "--val-split", "0",
               "--out", str(out), "--overwrite", "--quiet"]
    environment = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    started = time.perf_counter()
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"tlcli extract failed on {folder} (exit {os.waitstatus_to_exitcode(status)})")
    return usage.ru_maxrss / 1024, seconds  # ru_maxrss is in kB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="N: the small run extracts N images, the large 8N.")
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for count in (args.images, 8 * args.images):
            folder = write_jpegs(scratch / f"n{count}", count)
            megabytes, seconds = peak_rss_of_extract(folder, scratch / f"n{count}.npz", args.model,
                                                     args.image_size, args.batch_size)
            feature_megabytes = (scratch / f"n{count}.npz").stat().st_size / 2**20
            results[count] = {"peak_rss_mb": round(megabytes, 1), "seconds": round(seconds, 1),
                              "features_file_mb": round(feature_megabytes, 1)}
    small, large = results[args.images], results[8 * args.images]
    growth = large["peak_rss_mb"] / small["peak_rss_mb"] - 1
    print(f"tlcli extract, {args.model} at {args.image_size}px, batch {args.batch_size}, 96x72 JPEGs")
    print(f"{'images':>8}{'peak RSS MB':>13}{'features file MB':>18}{'seconds':>9}")
    for count, figures in results.items():
        print(f"{count:>8}{figures['peak_rss_mb']:>13.1f}{figures['features_file_mb']:>18.1f}{figures['seconds']:>9.1f}")
    print(f"peak RSS growth for 8x the images: {growth:+.1%} (goal < 10 %)")
    document = {"model": args.model, "image_size": args.image_size, "batch_size": args.batch_size,
                "results": results, "growth": round(growth, 4), "machine": machine()}
    print(f"written: {save('extract_memory', document)}")


if __name__ == "__main__":
    main()
