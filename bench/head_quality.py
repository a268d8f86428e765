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

The multi-label row (`digit-properties`: each digit labelled with its properties even, large,
prime and loop, in a label file) compares `tlcli train --multi-label` with scikit-learn's
one-vs-rest LogisticRegressionCV on the same features, by test macro F1 (each label at the
threshold that maximised its F1 on validation, the same rule for both) and mean average
precision. There is no "before" column: multi-label did not exist before.

    python bench/head_quality.py [--before COMMIT] [--datasets digits,few-shot,digits-48,shapes,digit-properties]
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
from common import checkout_commit, machine, save  # noqa: E402

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


PROPERTIES = {"even": {0, 2, 4, 6, 8}, "large": {5, 6, 7, 8, 9}, "prime": {2, 3, 5, 7}, "loop": {0, 4, 6, 8, 9}}
MULTI_LABEL = "digit-properties"


def digit_properties(out: Path, size: int = 32, seed: int = 3) -> Path:
    """scikit-learn's digits as one folder of PNGs and a label file (path,label,split) whose
    labels are each digit's properties, space-separated: a multi-label dataset. Returns the CSV."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for digit in range(10):
        indices = rng.permutation(np.flatnonzero(digits.target == digit))
        train, val = int(len(indices) * 0.6), int(len(indices) * 0.2)
        for position, index in enumerate(indices):
            split = "train" if position < train else "val" if position < train + val else "test"
            pixels = (255 - digits.images[index] * (255 / 16)).astype(np.uint8)
            Image.fromarray(pixels, mode="L").resize((size, size), Image.BICUBIC).save(out / "images" / f"{index:04d}.png")
            labels = " ".join(name for name, members in PROPERTIES.items() if digit in members)
            rows.append(f"images/{index:04d}.png,{labels},{split}")
    (out / "labels.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    return out / "labels.csv"


def multi_label_row(scratch: Path, model: str, size: int = 32) -> dict:
    """tlcli's multi-label heads against one-vs-rest logistic regression on the same features."""
    listing = digit_properties(scratch / "data" / MULTI_LABEL, size)
    data, work = listing.parent, scratch / f"{MULTI_LABEL}-{model}"
    options = ("--labels", listing, "--multi-label")
    tlcli(ROOT, "extract", data, *options, "--model", model, "--weights", "none", "--image-size", size,
          "--out", work / "features.npz")
    return {
        "dataset": MULTI_LABEL, "model": model, "image_size": size,
        "reference": one_vs_rest_regression(work / "features.npz"),
        "after": multi_label_train_and_test(data, work / "after", model, size, *options),
        "hidden": multi_label_train_and_test(data, work / "hidden", model, size, *options, "--dense", 256),
    }


def multi_label_train_and_test(data: Path, run_dir: Path, model: str, size: int, *extra) -> dict:
    tlcli(ROOT, "train", data, "--model", model, "--weights", "none", "--image-size", size,
          "--out", run_dir, "--overwrite", "--quiet", *extra)
    report = json.loads(tlcli(ROOT, "evaluate", run_dir, data, "--json").stdout)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"test_f1_macro": report["f1_macro"], "test_map": report["mean_average_precision"],
            "seconds": metrics["seconds"], "route": metrics.get("route")}


def one_vs_rest_regression(features: Path) -> dict:
    """scikit-learn's one-vs-rest cross-validated logistic regression on `tlcli extract --multi-label` features,
    each label's threshold tuned on validation to maximise F1 (tlcli's rule)."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import average_precision_score, f1_score
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sys.path.insert(0, str(ROOT))
    from tlcli.training.thresholds import best_threshold

    data = np.load(features, allow_pickle=False)
    x, y, split = data["features"], data["targets"], data["splits"]
    classifier = OneVsRestClassifier(make_pipeline(StandardScaler(), LogisticRegressionCV(
        Cs=np.logspace(-4, 4, 17), cv=5, max_iter=2000)))
    classifier.fit(x[split == "train"], y[split == "train"])
    val, test = classifier.predict_proba(x[split == "val"]), classifier.predict_proba(x[split == "test"])
    cut = np.array([best_threshold(y[split == "val"][:, i], val[:, i]) for i in range(y.shape[1])])
    return {"test_f1_macro": float(f1_score(y[split == "test"], test >= cut, average="macro", zero_division=0)),
            "test_map": float(average_precision_score(y[split == "test"], test, average="macro")),
            "train_images": int((split == "train").sum())}


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
    commit = checkout_commit()
    print(f"measuring {ROOT} at {commit} (plus uncommitted changes, if any) against {args.before}", flush=True)

    rows, multi_label_rows = [], []
    names = args.datasets.split(",")
    single_label = [name for name in names if name != MULTI_LABEL]
    scratch = Path(tempfile.mkdtemp(prefix="head-quality-"))
    before = before_checkout(args.before, scratch) if single_label else None
    try:
        if MULTI_LABEL in names:
            for model in BACKBONES:
                multi_label_rows.append(multi_label_row(scratch, model))
                print(format_multi_label_row(multi_label_rows[-1]), flush=True)
        for name, (data, size) in datasets(scratch, single_label).items():
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
        if before is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)

    print()
    if rows:
        print(HEADER)
        for row in rows:
            print(format_row(row))
    if multi_label_rows:
        print(MULTI_LABEL_HEADER)
        for row in multi_label_rows:
            print(format_multi_label_row(row))
    document = {"commit": commit, "before": args.before, "rows": rows, "multi_label_rows": multi_label_rows,
                "machine": machine()}
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


MULTI_LABEL_HEADER = (f"{'dataset':<18}{'model':<9}{'train':>6}{'F1 mac':>8}{'sklearn':>9}{'gap':>7}{'mAP':>7}"
                      f"{'sklearn':>9}{'hidden F1':>10}{'gap':>7}{'solve s':>9}{'hidden s':>9}")


def format_multi_label_row(row: dict) -> str:
    reference, after, hidden = row["reference"], row["after"], row["hidden"]
    return (f"{row['dataset']:<18}{row['model']:<9}{reference['train_images']:>6}"
            f"{after['test_f1_macro']:>8.3f}{reference['test_f1_macro']:>9.3f}"
            f"{after['test_f1_macro'] - reference['test_f1_macro']:>+7.3f}{after['test_map']:>7.3f}"
            f"{reference['test_map']:>9.3f}{hidden['test_f1_macro']:>10.3f}"
            f"{hidden['test_f1_macro'] - reference['test_f1_macro']:>+7.3f}{after['seconds']:>9.2f}"
            f"{hidden['seconds']:>9.1f}")


if __name__ == "__main__":
    main()
