"""Images per second through the input pipeline, without augmentation and with each preset,
the previous augmenter beside the current one.

    python bench/augment_throughput.py [--data sample_data] [--image-size 224] [--rounds 3]

The previous augmenter (Keras's layers one after another, each resampling the whole image) is
read from git at PREVIOUS_COMMIT when the script starts and kept only for this comparison.
Every pipeline is measured in turn within each round (so a busy neighbour slows them all
alike), after one warm-up pass that traces it; the median round is reported with its ratio to
no augmentation, and for each preset the current augmenter's speed-up over the previous one.
Then, to see whether augmentation starves training, epochs of end-to-end training (VGG16,
frozen, random weights) are timed in turn with no augmentation and with the heavy preset at
--fit-image-size. Everything is written to bench/augment_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
import types
from datetime import datetime, timezone
from pathlib import Path

import tlcli
from tlcli.augment.config import PRESETS
from tlcli.augment.augmenter import build_augmenter
from tlcli.data.dataset import load_dataset
from tlcli.data.pipeline import image_dataset

HERE = Path(__file__).resolve().parent
# The last commit whose augmenter applied Keras's preprocessing layers one by one.
PREVIOUS_COMMIT = "23c96c82c43cb84488f9eb2d0165a70962ab5adb"


def previous_augmenter_class():
    """The previous implementation's Augmenter class, read from git for comparison only."""
    path = f"{PREVIOUS_COMMIT}:tlcli/augmenter.py"
    shown = subprocess.run(["git", "show", path], cwd=HERE, capture_output=True, text=True, check=False)
    if shown.returncode != 0:
        raise SystemExit(f"Cannot read {path} from git ({shown.stderr.strip()}). "
                         "Run from a clone that has this commit (not a shallow one).")
    module = types.ModuleType("previous_augmenter")
    exec(compile(shown.stdout, path, "exec"), module.__dict__)  # noqa: S102  (this repository's own history)
    return module.Augmenter


def images_per_second(dataset, epochs: int) -> float:
    count, start = 0, time.perf_counter()
    for _ in range(epochs):
        for images, _ in dataset:
            count += int(images.shape[0])
    return count / (time.perf_counter() - start)


def training_epoch(samples, num_classes: int, image_size: int, batch_size: int, augment):
    """A function timing one epoch of model.fit through the pipeline (warmed up once here)."""
    from tlcli.models.backbones import get_backbone
    from tlcli.models.build import build_classifier, build_head
    from tlcli.runtime import set_seed
    from tlcli.models.weights import WeightsSource, build_base

    set_seed(0)
    spec = get_backbone("vgg16")
    base = build_base(spec, image_size, WeightsSource("none"))
    model = build_classifier(spec, image_size, base, build_head((spec.feature_size,), num_classes), "avg")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    dataset = image_dataset(samples, image_size, batch_size, shuffle=True, seed=0, augment=augment)
    model.fit(dataset, epochs=1, verbose=0)

    def images_per_second() -> float:
        start = time.perf_counter()
        model.fit(dataset, epochs=1, verbose=0)
        return len(samples) / (time.perf_counter() - start)

    return images_per_second


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parent / "sample_data")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3, help="passes over the training split per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fit-image-size", type=int, default=128)
    parser.add_argument("--fit-rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=HERE / "augment_throughput.json")
    args = parser.parse_args()

    print(f"current augmenter: tlcli from {Path(tlcli.__file__).parent}; previous: git {PREVIOUS_COMMIT[:7]}")
    data = load_dataset(args.data)
    samples = data.split("train")
    previous_augmenter = previous_augmenter_class()
    augmenters = {("none", "-"): None}
    for name, config in PRESETS.items():
        if name != "none":
            augmenters[name, "previous"] = previous_augmenter(config, 0)
            augmenters[name, "current"] = build_augmenter(config, 0)
    pipelines = {
        key: image_dataset(samples, args.image_size, args.batch_size, shuffle=True, seed=0, augment=augment)
        for key, augment in augmenters.items()
    }
    load_before = os.getloadavg()
    for dataset in pipelines.values():
        images_per_second(dataset, 1)  # warm-up: tracing and first-epoch set-up
    rounds = {key: [] for key in pipelines}
    for _ in range(args.rounds):
        for key, dataset in pipelines.items():
            rounds[key].append(images_per_second(dataset, args.epochs))
    load_after = os.getloadavg()

    medians = {key: statistics.median(values) for key, values in rounds.items()}
    baseline = medians["none", "-"]
    print(f"{len(samples)} images, {args.image_size}x{args.image_size}, batch {args.batch_size}, "
          f"{args.epochs} epoch(s) x {args.rounds} round(s), {os.cpu_count()} CPU(s), load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print(f"{'preset':<10} {'augmenter':<10} {'images/s':>10} {'vs none':>8} {'speed-up':>9}")
    results = {}
    for (name, version), values in rounds.items():
        median = medians[name, version]
        result = {"images_per_second": round(median, 1), "ratio_to_none": round(median / baseline, 3),
                  "rounds": [round(value, 1) for value in values]}
        speedup = ""
        if name == "none":
            results[name] = result
        else:
            results.setdefault(name, {})[version] = result
        if version == "current":
            results[name]["speedup"] = round(median / medians[name, "previous"], 2)
            speedup = f"{results[name]['speedup']:.2f}x"
        print(f"{name:<10} {version:<10} {median:>10.1f} {median / baseline:>7.3f}x {speedup:>9}")
    epochs = {
        name: training_epoch(samples, len(data.class_names), args.fit_image_size, args.batch_size,
                             build_augmenter(PRESETS[name], 0))
        for name in ("none", "heavy")
    }
    fit_rounds = {name: [] for name in epochs}
    for _ in range(args.fit_rounds):
        for name, epoch in epochs.items():
            fit_rounds[name].append(epoch())
    load_end = os.getloadavg()
    fitting = {name: statistics.median(values) for name, values in fit_rounds.items()}
    print(f"training (vgg16, {args.fit_image_size}x{args.fit_image_size}, end to end, median of "
          f"{args.fit_rounds} epochs): none {fitting['none']:.1f} images/s, heavy "
          f"{fitting['heavy']:.1f} images/s ({fitting['heavy'] / fitting['none']:.2f}x)")
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_name(),
                    "python": platform.python_version()},
        "data": args.data.name, "images": len(samples), "image_size": args.image_size,
        "batch_size": args.batch_size, "epochs": args.epochs, "rounds": args.rounds,
        "load_average": {"before": round(load_before[0], 2), "after_pipelines": round(load_after[0], 2),
                         "after_training": round(load_end[0], 2)},
        "previous_commit": PREVIOUS_COMMIT, "pipeline": results,
        "training": {"model": "vgg16", "image_size": args.fit_image_size,
                     **{name: round(value, 1) for name, value in fitting.items()},
                     "rounds": {name: [round(v, 1) for v in values] for name, values in fit_rounds.items()},
                     "ratio_heavy_to_none": round(fitting["heavy"] / fitting["none"], 3)},
    }
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"Wrote {args.json}")


if __name__ == "__main__":
    main()
