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

`--memory N` measures instead the peak resident memory (ru_maxrss, from os.wait4) of `tlcli
finetune` on N and 4N training images (copies of the digits), VGG16 `block5` at 224 px for one
epoch, with the cache in memory and spilled to its scratch file (`--cache-memory 0`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save
from finetune_speed import ROOT, SAMPLE_DATA, copy_subset, epoch_times_from_logs, tlcli, train_head

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


def peak_rss(run_dir: Path, out: Path, data: Path, *flags) -> float:
    """Peak resident memory, in MB, of one `tlcli finetune` process."""
    command = [sys.executable, "-m", "tlcli", "finetune", str(run_dir), "--data", str(data), "--stage", "block5:1:1e-5",
               "--early-stopping", "0", "--out", str(out), "--overwrite", "--quiet", *map(str, flags)]
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(command, env=environment, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(command)} failed")
    return usage.ru_maxrss / 1024


def copies(out: Path, count: int) -> Path:
    """`count` training images (copies of sample_data's, round robin over the classes) and its val/."""
    sources = {folder.name: sorted(folder.iterdir()) for folder in sorted((SAMPLE_DATA / "train").iterdir())}
    for number in range(count):
        name = sorted(sources)[number % len(sources)]
        source = sources[name][(number // len(sources)) % len(sources[name])]
        target = out / "train" / name / f"{number:05d}{source.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    shutil.copytree(SAMPLE_DATA / "val", out / "val")
    return out


def measure_memory(count: int, scratch: Path) -> None:
    run_dir = scratch / "memory-run"
    small, large = copies(scratch / "small", count), copies(scratch / "large", 4 * count)
    train_head(small, run_dir, "vgg16", 224)
    print(f"{'images':>7}{'in memory MB':>14}{'spilled MB':>12}")
    rows = []
    for data, images in ((small, count), (large, 4 * count)):
        row = {"images": images, "in_memory_mb": peak_rss(run_dir, scratch / "ft", data),
               "spilled_mb": peak_rss(run_dir, scratch / "ft", data, "--cache-memory", 0)}
        rows.append(row)
        print(f"{images:>7}{row['in_memory_mb']:>14.1f}{row['spilled_mb']:>12.1f}", flush=True)
    growth = {key: rows[1][key] / rows[0][key] - 1 for key in ("in_memory_mb", "spilled_mb")}
    print(f"growth for 4x the images: in memory {growth['in_memory_mb']:+.1%}, spilled {growth['spilled_mb']:+.1%}")
    save("finetune_cache_memory", {"machine": machine(), "rows": rows, "growth": growth})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vgg16,resnet50")
    parser.add_argument("--sizes", default="224,128")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--rate", default="1e-5", help="the stage's learning rate, or auto")
    parser.add_argument("--memory", type=int, default=0, help="measure peak memory on N and 4N images instead")
    args = parser.parse_args()
    if args.memory:
        with tempfile.TemporaryDirectory(prefix="tlcli-bench-") as scratch:
            measure_memory(args.memory, Path(scratch))
        return
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
