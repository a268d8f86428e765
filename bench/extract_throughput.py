"""Feature extraction from JPEG files on disk against the raw forward pass, side by side.

For each backbone at its native size, batch 32, in one process and interleaved:
  raw      the feature extractor (preprocessing + frozen backbone + pooling) as a tf.function
           on in-memory float32 tensors: the ceiling for anything that reads files;
  tlcli    `tlcli extract`'s library call on a generated folder of photo-like JPEGs: the
           tf.data pipeline (parallel decode, reduced-size DCT decoding, prefetch) feeding the
           same extractor, and the .npz written; the Pillow check of every file before it
           (`plan`) is shown in its own column;
  keras    what a user would otherwise write: `keras.utils.image_dataset_from_directory` +
           `model.predict` on the same folder and the same extractor.
Each route runs --repeats times in turn and the best run counts (the machine is shared, so
the best run is the one least disturbed). FLOPs per image are published multiply-add counts
x 2 (VGG16 15.5 G multiply-adds at 224, ResNet50 4.1 at 224, InceptionV3 5.7 at 299,
Xception 8.4 at 299), against a float32 peak of --peak-gflops (about 500 GFLOP/s here).
Next to images/s of wall time, each route's CPU milliseconds per image (all threads of the
process) show what decoding costs in compute even when other work on the machine makes wall
times erratic: "raw CPU/CPU" is the share of the CPU that went to the model.

    python bench/extract_throughput.py [--models resnet50,vgg16] [--images 160] [--sizes 320x240,1024x768]

Goals: tlcli >= 0.90 x raw for every backbone, and tlcli faster than keras.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import machine, save  # noqa: E402

from tlcli.models.backbones import MODEL_NAMES, get_backbone  # noqa: E402
from tlcli.inference.extract import ExtractConfig, extract, plan_extraction  # noqa: E402
from tlcli.models.build import build_feature_extractor  # noqa: E402
from tlcli.data.pipeline import tf  # noqa: E402
from tlcli.models.weights import WeightsSource  # noqa: E402

import keras  # noqa: E402  (after tlcli.data.pipeline imported TensorFlow quietly)

# Published multiply-adds per image at the native size: the Keras Applications table for the
# classic four; the EfficientNetV2 (B0 0.72 G, S 8.8 G at 384), ConvNeXt (T 4.5 G) and
# MobileNetV3 (Small 56 M, Large 219 M) papers for the newer rows.
MULTIPLY_ADDS = {
    "vgg16": 15.5e9, "resnet50": 4.1e9, "inceptionv3": 5.7e9, "xception": 8.4e9,
    "efficientnetv2b0": 0.72e9, "efficientnetv2s": 8.8e9, "convnexttiny": 4.5e9,
    "mobilenetv3small": 0.056e9, "mobilenetv3large": 0.219e9,
}


def write_photos(folder: Path, count: int, width: int, height: int) -> Path:
    """Photo-like JPEGs (smooth shapes plus fine texture, quality 90) in two class folders."""
    rng = np.random.default_rng(width * height)
    for index in range(count):
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
        pixels = np.asarray(image, np.int16) + rng.integers(-24, 25, (height, width, 3), dtype=np.int16)
        path = folder / f"class_{index % 2}" / f"photo_{index:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
    return folder


class Timer:
    """Images per second of wall time, and CPU milliseconds per image (all threads): the CPU
    figure shows what decoding costs even when other work on the machine disturbs wall time."""

    def __init__(self, images: int = 0):
        self.images = images

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    @property
    def result(self) -> tuple[float, float]:
        return self.images / self.wall, 1000 * self.cpu / self.images


def time_raw(extractor, image_size: int, images: int, batch_size: int) -> float:
    forward = tf.function(lambda batch: extractor(batch, training=False), reduce_retracing=True)
    batch = tf.random.uniform((batch_size, image_size, image_size, 3), 0, 255, tf.float32)
    forward(batch).numpy()  # trace
    steps = math.ceil(images / batch_size)
    with Timer(steps * batch_size) as timer:
        for _ in range(steps):
            forward(batch).numpy()
    return timer.result


def time_tlcli(extractor, name: str, folder: Path, image_size: int, batch_size: int, scratch: Path):
    """((images/s, CPU ms per image) of extraction, seconds of the Pillow check before it)."""
    config = ExtractConfig(data=folder, model=name, out=scratch / "features.npz", weights="none",
                           image_size=image_size, batch_size=batch_size, val_split=0.0, overwrite=True)
    started = time.perf_counter()
    plan = plan_extraction(config)
    checked = time.perf_counter() - started
    with Timer() as timer:
        timer.images = extract(plan, extractor=extractor).images
    return timer.result, checked


def time_keras(extractor, folder: Path, image_size: int, batch_size: int):
    """(images/s, CPU ms per image) of the Keras route, from listing the folder to the last batch,
    as tlcli's figure runs from building its pipeline to the file written."""

    def features():
        dataset = keras.utils.image_dataset_from_directory(
            folder, labels=None, image_size=(image_size, image_size), batch_size=batch_size, shuffle=False,
            verbose=False,
        )
        return extractor.predict(dataset, verbose=0)

    with Timer() as timer:
        timer.images = len(features())
    return timer.result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODEL_NAMES))
    parser.add_argument("--images", type=int, default=160, help="Images per folder (and per raw run).")
    parser.add_argument("--sizes", default="320x240,1024x768", help="JPEG sizes WIDTHxHEIGHT, one folder each.")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--peak-gflops", type=float, default=500.0)
    args = parser.parse_args()
    models = [get_backbone(name).name for name in args.models.split(",")]
    sizes = [tuple(int(side) for side in size.split("x")) for size in args.sizes.split(",")]

    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        warm_up = write_photos(scratch / "warm-up", 4, *sizes[0])
        folders = {size: write_photos(scratch / f"{size[0]}x{size[1]}", args.images, *size) for size in sizes}
        for name in models:
            spec = get_backbone(name)
            extractor = build_feature_extractor(spec, spec.default_size, WeightsSource("none"), "avg")
            time_tlcli(extractor, name, warm_up, spec.default_size, args.batch_size, scratch)  # trace both
            time_keras(extractor, warm_up, spec.default_size, args.batch_size)
            runs: dict[str, list[tuple[float, float]]] = {}
            checks: dict[str, float] = {}
            for _ in range(args.repeats):
                runs.setdefault("raw", []).append(time_raw(extractor, spec.default_size, args.images, args.batch_size))
                for size, folder in folders.items():
                    label = f"{size[0]}x{size[1]}"
                    speed, checked = time_tlcli(extractor, name, folder, spec.default_size, args.batch_size, scratch)
                    runs.setdefault(f"tlcli {label}", []).append(speed)
                    checks[label] = checked
                    runs.setdefault(f"keras {label}", []).append(
                        time_keras(extractor, folder, spec.default_size, args.batch_size)
                    )
            best = {route: max(speed for speed, _ in results) for route, results in runs.items()}
            cpu = {route: min(cpu for _, cpu in results) for route, results in runs.items()}
            flops = 2 * MULTIPLY_ADDS[name]
            for route, speed in best.items():
                rows.append({
                    "model": name, "image_size": spec.default_size, "route": route,
                    "images_per_second": round(speed, 2), "runs": [round(s, 2) for s, _ in runs[route]],
                    "ratio_to_raw": round(speed / best["raw"], 3),
                    "cpu_ms_per_image": round(cpu[route], 1),
                    "cpu_ratio_to_raw": round(cpu["raw"] / cpu[route], 3),
                    "fraction_of_flop_ceiling": round(speed * flops / (args.peak_gflops * 1e9), 3),
                    "check_seconds": round(checks[route.split()[1]], 2) if route.startswith("tlcli") else None,
                })
            print_rows([row for row in rows if row["model"] == name], args.images)
    load_after = os.getloadavg()

    print("\nsummary (images/s ratios; in brackets the same from CPU time per image):")
    print("  tlcli / raw (goal >= 0.90), keras / raw, tlcli / keras (goal > 1)")
    for name in models:
        mine = {row["route"]: row for row in rows if row["model"] == name}
        for size in sizes:
            label = f"{size[0]}x{size[1]}"

            def ratio(top: str, bottom: str) -> str:
                speed = mine[top]["images_per_second"] / mine[bottom]["images_per_second"]
                work = mine[bottom]["cpu_ms_per_image"] / mine[top]["cpu_ms_per_image"]
                return f"{speed:.2f} ({work:.2f})"

            print(f"  {name:<12} {label:>9}  tlcli/raw {ratio(f'tlcli {label}', 'raw')}  "
                  f"keras/raw {ratio(f'keras {label}', 'raw')}  tlcli/keras {ratio(f'tlcli {label}', f'keras {label}')}")
    conditions = f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after, on {os.cpu_count()} CPUs"
    print(f"conditions: {conditions}")
    document = {
        "images": args.images, "sizes": args.sizes, "batch_size": args.batch_size, "repeats": args.repeats,
        "peak_gflops": args.peak_gflops, "flops_convention": "2 x published multiply-adds per image",
        "rows": rows, "load_average_before": load_before, "load_average_after": load_after, "machine": machine(),
    }
    print(f"written: {save('extract_throughput', document)}")


def print_rows(rows: list[dict], images: int) -> None:
    print(f"\n{rows[0]['model']} at {rows[0]['image_size']}px, {images} images per run")
    print(f"  {'route':<20}{'images/s':>10}{'x raw':>8}{'of FLOP peak':>14}{'CPU ms/img':>12}"
          f"{'raw CPU/CPU':>13}{'check s':>9}  runs (images/s)")
    for row in rows:
        check = "" if row["check_seconds"] is None else f"{row['check_seconds']:.2f}"
        print(f"  {row['route']:<20}{row['images_per_second']:>10.1f}{row['ratio_to_raw']:>8.2f}"
              f"{row['fraction_of_flop_ceiling']:>14.0%}{row['cpu_ms_per_image']:>12.1f}"
              f"{row['cpu_ratio_to_raw']:>13.2f}{check:>9}  {row['runs']}")


if __name__ == "__main__":
    main()
