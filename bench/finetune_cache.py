"""A fine-tuning stage on the frozen part's cached output against the same stage end to end,
side by side in one run (goal: at least 3x for VGG16 `block5` and 2x for ResNet50 `conv5` over
a 5-epoch stage, the cache's build counted).

For each backbone and image size, a run is trained with `tlcli train` (random weights: ImageNet's
cannot be downloaded here, and speed does not depend on them) on a few hundred of
`sample_data/`'s digits, then the top block is fine-tuned for EPOCHS epochs without early
stopping, both ways, alternately:
  - `tlcli finetune RUN --stage BLOCK:EPOCHS:1e-5` (the cache is on by default): the frozen
    part's output is computed once for the training and validation images, and the block and the
    head train on it;
  - the same with `--no-cache-features`: every epoch decodes the images and runs the whole
    backbone.
"stage s" is the stage's own time as fine-tuning counts it in metrics.json (the cache's build,
then every epoch with its validation, tracing included); it leaves out the start-up, the model's
loading, the validation before and after the stages, and an auto rate's range test. "wall s" is
the whole `tlcli finetune` process, which counts them all. "epoch s" is the median of epochs 2 to
EPOCHS, from the TensorBoard logs' wall times. Both runs' validation losses are printed too: the
cache must not change what is learnt.

With `--rate auto` (finetune's default), the stage first runs its learning-rate range test (100
optimiser steps) on the same route: on the cache, or through the whole backbone.

    python bench/finetune_cache.py [--models vgg16,resnet50] [--sizes 224,128] [--epochs 5]
                                   [--train-images 200] [--rounds 1] [--rate 1e-5|auto]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save
from finetune_speed import copy_subset, epoch_times_from_logs, tlcli, train_head

STAGES = {"vgg16": "block5", "resnet50": "conv5"}
GOALS = {"vgg16": 3.0, "resnet50": 2.0}


def finetune(run_dir: Path, out: Path, block: str, epochs: int, rate: str, *flags) -> dict:
    started = time.perf_counter()
    tlcli("finetune", run_dir, "--stage", f"{block}:{epochs}:{rate}", "--early-stopping", 0,
          "--out", out, "--overwrite", "--quiet", *flags)
    wall = time.perf_counter() - started
    metrics = json.loads((out / "metrics.json").read_text())
    ends = epoch_times_from_logs(out / "logs" / f"stage1-{block}")["epoch_ends"]
    stage = metrics["stage_rates"][f"stage1-{block}"]
    return {
        "wall_seconds": wall,
        "stage_seconds": metrics["seconds"],
        "epoch_seconds": statistics.median(later - earlier for earlier, later in zip(ends, ends[1:])),
        "val_loss": metrics["val_loss"],
        "route": stage["route"],
        "cache_seconds": stage.get("cache_seconds", 0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vgg16,resnet50")
    parser.add_argument("--sizes", default="224,128")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--rate", default="1e-5", help="the stage's learning rate, or auto")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tlcli-bench-") as scratch:
        scratch = Path(scratch)
        per_class = args.train_images // 10
        data = copy_subset(scratch / "data", {"train": per_class, "val": max(1, per_class // 4)})
        for model in args.models.split(","):
            block = STAGES[model]
            for size in (int(size) for size in args.sizes.split(",")):
                run_dir = scratch / f"{model}-{size}"
                train_head(data, run_dir, model, size)
                measured = {"cached": [], "end to end": []}
                for _ in range(args.rounds):
                    measured["cached"].append(finetune(run_dir, scratch / "ft", block, args.epochs, args.rate))
                    measured["end to end"].append(finetune(run_dir, scratch / "ft", block, args.epochs,
                                                           args.rate, "--no-cache-features"))
                row = {"model": model, "size": size, "stage": f"{block}:{args.epochs}:{args.rate}",
                       "train_images": per_class * 10}
                for route, runs in measured.items():
                    row[route] = {key: statistics.median(run[key] for run in runs)
                                  for key in ("wall_seconds", "stage_seconds", "epoch_seconds", "val_loss",
                                              "cache_seconds")}
                    row[route]["route"] = runs[-1]["route"]
                row["stage_speedup"] = row["end to end"]["stage_seconds"] / row["cached"]["stage_seconds"]
                row["wall_speedup"] = row["end to end"]["wall_seconds"] / row["cached"]["wall_seconds"]
                row["epoch_speedup"] = row["end to end"]["epoch_seconds"] / row["cached"]["epoch_seconds"]
                rows.append(row)
                print(format_row(row), flush=True)
    print()
    print(HEADER)
    for row in rows:
        print(format_row(row))
    print()
    for row in rows:
        print(f"{row['model']} {row['size']}: {row['cached']['route']}")
    name = "finetune_cache" if args.rate == "1e-5" else f"finetune_cache_{args.rate}"
    path = save(name, {"machine": machine(), "epochs": args.epochs, "rate": args.rate, "rows": rows})
    print(f"\nwritten to {path}")


HEADER = (f"{'model':<10}{'size':>5}{'stage':>16}{'cache s':>9}{'stage s cached':>16}{'stage s e2e':>13}"
          f"{'x':>6}{'epoch s cached':>16}{'epoch s e2e':>13}{'x':>6}{'val loss cached':>17}{'e2e':>8}{'goal':>6}")


def format_row(row: dict) -> str:
    cached, plain = row["cached"], row["end to end"]
    return (f"{row['model']:<10}{row['size']:>5}{row['stage']:>16}{cached['cache_seconds']:>9.1f}"
            f"{cached['stage_seconds']:>16.1f}{plain['stage_seconds']:>13.1f}{row['stage_speedup']:>6.2f}"
            f"{cached['epoch_seconds']:>16.2f}{plain['epoch_seconds']:>13.2f}{row['epoch_speedup']:>6.2f}"
            f"{cached['wall_seconds']:>15.1f}{plain['wall_seconds']:>12.1f}{row['wall_speedup']:>6.2f}"
            f"{cached['val_loss']:>17.4f}{plain['val_loss']:>8.4f}{GOALS[row['model']]:>6.1f}")


if __name__ == "__main__":
    main()
