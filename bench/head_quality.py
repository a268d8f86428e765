"""Head quality at default settings against scikit-learn on the very same features.

For each dataset and backbone (random weights, small images) it runs, side by side:
  - `tlcli train` at default settings, with the checkout under test and with an earlier
    commit (`--before`, default: the last commit before heads were solved), and the test
    accuracy `tlcli evaluate` gives each run;
  - `tlcli extract` of the same backbone, then scikit-learn's StandardScaler +
    LogisticRegressionCV (stratified k-fold, 17 penalties from 1e-4 to 1e4) on its features;
  - `tlcli train --dense 256` (one hidden layer) at default settings;
  - the seconds each head took once the features were ready (metrics.json).

Goal: the default head within 0.01 of the logistic regression, the hidden-layer head within
0.02, and a solved head in under 2 s for about 1,000 images.

    python bench/head_quality.py [--before COMMIT] [--datasets digits,few-shot,digits-48,shapes]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "92d9c5a"  # main before heads were solved and features standardized
BACKBONES = ("vgg16", "resnet50")


def digits_folders(out: Path, size: int, per_class: dict[str, int] | None, seed: int = 0) -> Path:
    """scikit-learn's 1,797 bundled digits as PNG class folders (dark ink on white), split
    train/val/test; `per_class` caps each split's images per class (None: 60/20/20 of all)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    for digit in range(10):
        indices = rng.permutation(np.flatnonzero(digits.target == digit))
        counts = per_class or {"train": int(len(indices) * 0.6), "val": int(len(indices) * 0.2),
                               "test": len(indices) - int(len(indices) * 0.6) - int(len(indices) * 0.2)}
        start = 0
        for split, count in counts.items():
            folder = out / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for index in indices[start:start + count]:
                pixels = (255 - digits.images[index] * (255 / 16)).astype(np.uint8)
                Image.fromarray(pixels, mode="L").resize((size, size), Image.BICUBIC).save(folder / f"{index:04d}.png")
            start += count
    return out


def shapes_folders(out: Path, size: int = 64, per_class=(60, 20, 20), seed: int = 0) -> Path:
    """Circles, squares and triangles of random colour, size and place on noisy backgrounds."""
    rng = np.random.default_rng(seed)
    for split, count in zip(("train", "val", "test"), per_class):
        for shape in ("circle", "square", "triangle"):
            folder = out / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                background = rng.integers(0, 256, 3)
                noise = rng.normal(0, 25, (size, size, 3))
                pixels = np.clip(background + noise, 0, 255).astype(np.uint8)
                image = Image.fromarray(pixels)
                draw = ImageDraw.Draw(image)
                radius = rng.uniform(0.15, 0.35) * size
                cx, cy = rng.uniform(radius, size - radius, 2)
                colour = tuple(int(c) for c in rng.integers(0, 256, 3))
                box = (cx - radius, cy - radius, cx + radius, cy + radius)
                if shape == "circle":
                    draw.ellipse(box, fill=colour)
                elif shape == "square":
                    draw.rectangle(box, fill=colour)
                else:
                    draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=colour)
                image.save(folder / f"{index:03d}.png")
    return out


def datasets(scratch: Path, names: list[str]) -> dict[str, tuple[Path, int]]:
    """name -> (folder, image size)."""
    made = {}
    for name in names:
        folder = scratch / "data" / name
        if name == "digits":
            made[name] = (ROOT / "sample_data", 32)
        elif name == "few-shot":
            made[name] = (digits_folders(folder, 32, {"train": 5, "val": 3, "test": 10}, seed=1), 32)
        elif name == "digits-48":
            made[name] = (digits_folders(folder, 48, None, seed=2), 48)
        elif name == "shapes":
            made[name] = (shapes_folders(folder), 64)
    return made


def tlcli(source: Path, *args) -> subprocess.CompletedProcess:
    """Run `python -m tlcli` from `source` (a checkout), failing loudly."""
    environment = {**os.environ, "PYTHONPATH": str(source), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-m", "tlcli", *map(str, args)], capture_output=True, text=True,
                            env=environment, cwd=source)
    if result.returncode != 0:
        raise SystemExit(f"tlcli {' '.join(map(str, args))} failed:\n{result.stderr[-2000:]}")
    return result


def train_and_test(source: Path, data: Path, run_dir: Path, model: str, size: int, *extra) -> dict:
    """Test accuracy of a default `tlcli train` run, and the seconds its head took."""
    tlcli(source, "train", data, "--model", model, "--weights", "none", "--image-size", size,
          "--out", run_dir, "--overwrite", "--quiet", *extra)
    report = json.loads(tlcli(source, "evaluate", run_dir, data, "--json").stdout)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"test_accuracy": report["accuracy"], "seconds": metrics["seconds"],
            "route": metrics.get("route") or json.loads((run_dir / "config.json").read_text()).get("route")}


def logistic_regression(features: Path) -> dict:
    """scikit-learn's cross-validated logistic regression on `tlcli extract` features."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = np.load(features, allow_pickle=False)
    x, y, split = data["features"], data["labels"], data["splits"]
    folds = int(min(5, np.bincount(y[split == "train"]).min()))
    classifier = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=np.logspace(-4, 4, 17), cv=folds,
                                                                        max_iter=2000))
    classifier.fit(x[split == "train"], y[split == "train"])
    return {"test_accuracy": float(classifier.score(x[split == "test"], y[split == "test"])),
            "train_images": int((split == "train").sum()), "folds": folds}


def before_checkout(commit: str, scratch: Path) -> Path:
    folder = scratch / f"tlcli-{commit}"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), commit],
                   check=True, capture_output=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help="the commit to compare with")
    parser.add_argument("--datasets", default="digits,few-shot,digits-48,shapes")
    args = parser.parse_args()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(f"measuring {ROOT} at {commit} (plus uncommitted changes, if any) against {args.before}", flush=True)

    rows = []
    scratch = Path(tempfile.mkdtemp(prefix="head-quality-"))
    before = before_checkout(args.before, scratch)
    try:
        for name, (data, size) in datasets(scratch, args.datasets.split(",")).items():
            for model in BACKBONES:
                work = scratch / f"{name}-{model}"
                tlcli(ROOT, "extract", data, "--model", model, "--weights", "none", "--image-size", size,
                      "--out", work / "features.npz")
                row = {
                    "dataset": name, "model": model, "image_size": size,
                    "reference": logistic_regression(work / "features.npz"),
                    "before": train_and_test(before, data, work / "before", model, size),
                    "after": train_and_test(ROOT, data, work / "after", model, size),
                    "hidden": train_and_test(ROOT, data, work / "hidden", model, size, "--dense", 256),
                }
                rows.append(row)
                print(format_row(row), flush=True)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)

    print()
    print(HEADER)
    for row in rows:
        print(format_row(row))
    document = {"commit": commit, "before": args.before, "rows": rows, "machine": machine()}
    print(f"written: {save('head_quality', document)}")


HEADER = (f"{'dataset':<10}{'model':<9}{'train':>6}{'before':>8}{'after':>8}{'sklearn':>9}{'gap':>7}"
          f"{'hidden':>8}{'gap':>7}{'solve s':>9}{'hidden s':>9}")


def format_row(row: dict) -> str:
    reference = row["reference"]["test_accuracy"]
    after, hidden = row["after"], row["hidden"]
    return (f"{row['dataset']:<10}{row['model']:<9}{row['reference']['train_images']:>6}"
            f"{row['before']['test_accuracy']:>8.3f}{after['test_accuracy']:>8.3f}{reference:>9.3f}"
            f"{after['test_accuracy'] - reference:>+7.3f}{hidden['test_accuracy']:>8.3f}"
            f"{hidden['test_accuracy'] - reference:>+7.3f}{after['seconds']:>9.2f}{hidden['seconds']:>9.1f}")


if __name__ == "__main__":
    main()
