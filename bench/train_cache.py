"""Cached-feature head training against frozen-base end-to-end `fit`, side by side.

Both routes train the same head by gradient (`head_solver="gradient"`: the default would solve
the cached route's linear head instead) for the same epochs on the same data (no early stopping);
the script prints both times, their ratio (goal: >= 8x for the cache) and both accuracies
(goal: within one point).

    python bench/train_cache.py [--model resnet50] [--image-size 224] [--epochs 10] [--data sample_data]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save  # noqa: E402

from tlcli.training.config import FitConfig, TrainConfig  # noqa: E402
from tlcli.training.train import train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parent.parent / "sample_data"))
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for route, cache in (("cached features", True), ("end to end", False)):
            config = TrainConfig(
                data=Path(args.data), model=args.model, out=Path(scratch) / route.replace(" ", "-"),
                weights="none", image_size=args.image_size, cache_features=cache, head_solver="gradient",
                fit=FitConfig(epochs=args.epochs, early_stopping=0, learning_rate=0.01),
            )
            started = time.perf_counter()
            outcome = train(config)
            results[route] = {
                "seconds": round(time.perf_counter() - started, 2),
                "val_accuracy": round(outcome.metrics["val_accuracy"], 4),
            }
    ratio = results["end to end"]["seconds"] / results["cached features"]["seconds"]
    gap = abs(results["end to end"]["val_accuracy"] - results["cached features"]["val_accuracy"])
    print(f"{'route':<18}{'seconds':>10}{'val accuracy':>15}")
    for route, figures in results.items():
        print(f"{route:<18}{figures['seconds']:>10.1f}{figures['val_accuracy']:>15.4f}")
    print(f"speed-up of the cache: {ratio:.1f}x (goal >= 8x); accuracy gap {gap * 100:.1f} points (goal <= 1)")
    document = {"model": args.model, "image_size": args.image_size, "epochs": args.epochs, "data": args.data,
                "results": results, "speedup": round(ratio, 2), "accuracy_gap": round(gap, 4), "machine": machine()}
    print(f"written: {save('train_cache', document)}")


if __name__ == "__main__":
    main()
