"""A `tlcli tune` grid (features computed once) against one `tlcli train` per grid point, side by side.

Both train the same heads by gradient with the same settings (no early stopping; the linear
heads are not solved, so that every grid point trains). The script prints the
total time of each, the time per trial and their ratio (goal: the search costs less than
half as much as separate runs), and checks that both find the same validation losses.

    python bench/tune_trials.py [--model resnet50] [--image-size 96] [--epochs 5] [--data sample_data]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save  # noqa: E402

from tlcli.training.config import FitConfig, TrainConfig  # noqa: E402
from tlcli.tune.head import trial_config  # noqa: E402
from tlcli.tune.space import plan_trials  # noqa: E402
from tlcli.training.train import train  # noqa: E402
from tlcli.tune.search import tune  # noqa: E402
from tlcli.tune.trials import TuneConfig  # noqa: E402

SPACE = {"learning_rate": [0.001, 0.01], "dropout": [0.0, 0.3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parent.parent / "sample_data"))
    args = parser.parse_args()

    base = TrainConfig(data=Path(args.data), model=args.model, weights="none", image_size=args.image_size,
                       head_solver="gradient", fit=FitConfig(epochs=args.epochs, early_stopping=0))
    trials = plan_trials(SPACE, "grid", None, seed=0)
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        outcome = tune(TuneConfig(base=base, space=SPACE, search="grid", out=Path(scratch) / "tune"))
        search_seconds = time.perf_counter() - started
        search_losses = {json_key(r["params"]): r["val_loss"] for r in outcome.leaderboard}

        started = time.perf_counter()
        separate_losses = {}
        for number, params in enumerate(trials):
            config = dataclasses.replace(trial_config(base, params), out=Path(scratch) / f"train-{number}")
            separate_losses[json_key(params)] = train(config).metrics["val_loss"]
        separate_seconds = time.perf_counter() - started

    ratio = separate_seconds / search_seconds
    gap = max(abs(search_losses[key] - separate_losses[key]) for key in search_losses)
    print(f"{len(trials)} grid points, {args.model} at {args.image_size}px, {args.epochs} epochs each")
    print(f"{'':<22}{'seconds':>10}{'per trial':>12}")
    print(f"{'tlcli tune':<22}{search_seconds:>10.1f}{search_seconds / len(trials):>12.1f}")
    print(f"{'separate tlcli train':<22}{separate_seconds:>10.1f}{separate_seconds / len(trials):>12.1f}")
    print(f"the search is {ratio:.1f}x faster (goal >= 2x); largest val_loss difference {gap:.2g}")
    document = {"model": args.model, "image_size": args.image_size, "epochs": args.epochs, "data": args.data,
                "trials": len(trials), "search_seconds": round(search_seconds, 2),
                "separate_seconds": round(separate_seconds, 2), "speedup": round(ratio, 2),
                "largest_val_loss_difference": gap, "machine": machine()}
    print(f"written: {save('tune_trials', document)}")


def json_key(params: dict) -> str:
    return repr(sorted(params.items()))


if __name__ == "__main__":
    main()
