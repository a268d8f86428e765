"""Images per second through the input pipeline, without augmentation and with each preset.

    python bench/augment_throughput.py [--data sample_data] [--image-size 224] [--rounds 3]

Every setting is measured in turn within each round (so a busy neighbour slows them all
alike), after one warm-up pass that traces the pipeline; the median round is reported with
its ratio to no augmentation. Then, to see whether augmentation starves training, epochs of
end-to-end training (VGG16, frozen, random weights) are timed in turn with no augmentation
and with the heavy preset at --fit-image-size. Everything is written to
bench/augment_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

from tlcli.augment import PRESETS, build_augmenter
from tlcli.data import load_dataset
from tlcli.pipeline import image_dataset

HERE = Path(__file__).resolve().parent


def images_per_second(dataset, epochs: int) -> float:
    count, start = 0, time.perf_counter()
    for _ in range(epochs):
        for images, _ in dataset:
            count += int(images.shape[0])
    return count / (time.perf_counter() - start)


def training_epoch(samples, num_classes: int, image_size: int, batch_size: int, augment):
    """A function timing one epoch of model.fit through the pipeline (warmed up once here)."""
    from tlcli.backbones import get_backbone
    from tlcli.model import build_classifier, build_head
    from tlcli.runtime import set_seed
    from tlcli.weights import WeightsSource, build_base

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

    data = load_dataset(args.data)
    samples = data.split("train")
    pipelines = {
        name: image_dataset(samples, args.image_size, args.batch_size, shuffle=True, seed=0,
                            augment=build_augmenter(config, 0))
        for name, config in PRESETS.items()
    }
    for dataset in pipelines.values():
        images_per_second(dataset, 1)  # warm-up: tracing and first-epoch set-up
    rounds = {name: [] for name in pipelines}
    for _ in range(args.rounds):
        for name, dataset in pipelines.items():
            rounds[name].append(images_per_second(dataset, args.epochs))

    baseline = statistics.median(rounds["none"])
    results = {}
    print(f"{len(samples)} images, {args.image_size}x{args.image_size}, batch {args.batch_size}, "
          f"{args.epochs} epoch(s) x {args.rounds} round(s), {os.cpu_count()} CPU(s)")
    print(f"{'preset':<10} {'images/s':>10} {'vs none':>8}")
    for name, values in rounds.items():
        median = statistics.median(values)
        results[name] = {"images_per_second": round(median, 1), "ratio_to_none": round(median / baseline, 3),
                         "rounds": [round(value, 1) for value in values]}
        print(f"{name:<10} {median:>10.1f} {median / baseline:>7.2f}x")
    epochs = {
        name: training_epoch(samples, len(data.class_names), args.fit_image_size, args.batch_size,
                             build_augmenter(PRESETS[name], 0))
        for name in ("none", "heavy")
    }
    fit_rounds = {name: [] for name in epochs}
    for _ in range(args.fit_rounds):
        for name, epoch in epochs.items():
            fit_rounds[name].append(epoch())
    fitting = {name: statistics.median(values) for name, values in fit_rounds.items()}
    print(f"training (vgg16, {args.fit_image_size}x{args.fit_image_size}, end to end, median of "
          f"{args.fit_rounds} epochs): none {fitting['none']:.1f} images/s, heavy "
          f"{fitting['heavy']:.1f} images/s ({fitting['heavy'] / fitting['none']:.2f}x)")
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_name(),
                    "python": platform.python_version()},
        "data": args.data.name, "images": len(samples), "image_size": args.image_size,
        "batch_size": args.batch_size, "epochs": args.epochs, "pipeline": results,
        "training": {"model": "vgg16", "image_size": args.fit_image_size,
                     **{name: round(value, 1) for name, value in fitting.items()},
                     "rounds": {name: [round(v, 1) for v in values] for name, values in fit_rounds.items()},
                     "ratio_heavy_to_none": round(fitting["heavy"] / fitting["none"], 3)},
    }
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"Wrote {args.json}")


if __name__ == "__main__":
    main()
