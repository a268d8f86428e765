"""How `tlcli predict` streams a folder: speed against Keras's own loop, and flat memory.

Measured side by side in one process, on random PNGs and an untrained VGG16 classifier:
  - images/s of `predict_files` (Pillow check of each file, then the tf.data pipeline, chunk by
    chunk, rows in file order) against `model.predict` over the same pipeline without checks;
  - how much the resident memory grows while predicting N and then 4N images (flat memory
    means the growth does not scale with the number of images).

    python bench/predict_stream.py [--images 500] [--image-size 32] [--batch-size 32]

(from the checkout root, with tlcli installed: `pip install -e .`)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from tlcli.models.backbones import get_backbone
from tlcli.data.dataset import Sample
from tlcli.inference.predict import Prediction, predict_files
from tlcli.models.build import build_classifier, build_head
from tlcli.data.pipeline import image_dataset
from tlcli.runtime import set_seed
from tlcli.models.weights import WeightsSource, build_base

PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_megabytes() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / 2**20


def write_images(folder: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        path = folder / f"{index:06d}.png"
        Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def stream(model, paths, image_size, batch_size) -> tuple[float, float, int]:
    """(seconds, peak resident growth in MB, predictions) for predict_files over `paths`."""
    start_memory = peak = resident_megabytes()
    started = time.perf_counter()
    predicted = 0
    for result in predict_files(model, paths, image_size, batch_size):
        predicted += isinstance(result, Prediction)
        peak = max(peak, resident_megabytes())
    return time.perf_counter() - started, peak - start_memory, predicted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    options = parser.parse_args()

    set_seed(0)
    spec = get_backbone("vgg16")
    base = build_base(spec, options.image_size, WeightsSource("none"))
    model = build_classifier(spec, options.image_size, base, build_head((spec.feature_size,), 10), "avg")

    with tempfile.TemporaryDirectory() as folder:
        paths = write_images(Path(folder), 4 * options.images)
        stream(model, paths[: options.batch_size * 2], options.image_size, options.batch_size)  # warm-up

        small = stream(model, paths[: options.images], options.image_size, options.batch_size)
        large = stream(model, paths, options.image_size, options.batch_size)

        samples = [Sample(path, 0) for path in paths]
        started = time.perf_counter()
        model.predict(image_dataset(samples, options.image_size, options.batch_size), verbose=0)
        keras_seconds = time.perf_counter() - started

    count = len(paths)
    print(f"{count} PNGs of 128x96, VGG16 at {options.image_size}x{options.image_size}, "
          f"batch {options.batch_size}, {os.cpu_count()} CPU(s)")
    print(f"{'':34} {'images':>7} {'seconds':>8} {'images/s':>9} {'RSS growth MB':>14}")
    print(f"{'predict_files (tlcli predict)':34} {options.images:>7} {small[0]:>8.2f} "
          f"{options.images / small[0]:>9.1f} {small[1]:>14.1f}")
    print(f"{'predict_files (tlcli predict)':34} {count:>7} {large[0]:>8.2f} "
          f"{count / large[0]:>9.1f} {large[1]:>14.1f}")
    print(f"{'model.predict, same pipeline':34} {count:>7} {keras_seconds:>8.2f} {count / keras_seconds:>9.1f}")
    assert small[2] == options.images and large[2] == count
    print(f"speed of tlcli predict relative to model.predict: {keras_seconds / large[0]:.2f}x")
    print(f"memory growth for 4x the images: {large[1]:.1f} MB vs {small[1]:.1f} MB")


if __name__ == "__main__":
    main()
