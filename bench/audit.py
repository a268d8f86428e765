"""`tlcli audit` against the issue's reference, on the same features, with known faults planted.

For each dataset and noise level it builds a copy of the dataset in which:
  - a share of the training images (--noise: 5, 10, 20 %) are moved into another class's folder
    at random (a flipped label), and
  - --duplicates training images (never flipped ones) are resized to 7/8 of their size and saved
    as JPEG (quality 80) into test/ under their class (a near-duplicate that leaks into test);
then reads it once with tlcli's audit library (the features `tlcli audit` extracts) and prints,
side by side from that one run:
  - precision, recall and F1 of the label errors `tlcli audit` finds;
  - the same for the issue's reference on the very same features: scikit-learn's
    LogisticRegression(C=1) with 5-fold cross_val_predict, then cleanlab.filter.find_label_issues
    with its defaults;
  - how many planted duplicates were found as leakage (a group holding the copy and its original
    across splits), and the false positives: images in a duplicate group that are neither;
  - the seconds each took once the features were ready (tlcli: the neighbour search and the label
    check; the reference: its cross-validation and cleanlab).

Goal (issue 33): F1 above the reference's on every row, and every planted duplicate found.

    python bench/audit.py [--datasets sklearn-digits,shipped-digits] [--noise 0.05,0.1,0.2]
                          [--model vgg16] [--image-size 32] [--duplicates 20]

Datasets: `sklearn-digits` (scikit-learn's 1,797 digits as 32 px PNGs, split 60/20/20) and
`shipped-digits` (sample_data/: 500 of them, 300/100/100). The backbone has random weights, so
nothing is downloaded.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import checkout_commit, machine, save  # noqa: E402
from head_quality import digits_folders  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout under test


def make_dataset(name: str, folder: Path) -> Path:
    if name == "sklearn-digits":
        return digits_folders(folder, 32, None)
    if name == "shipped-digits":
        return Path(shutil.copytree(ROOT / "sample_data", folder))
    raise SystemExit(f"unknown dataset {name!r}: sklearn-digits or shipped-digits")


def plant_faults(data: Path, noise: float, duplicates: int, seed: int = 0) -> tuple[set[str], dict[str, str]]:
    """Flip `noise` of the training labels (move the files) and plant `duplicates` JPEG copies of
    other training images in test/: (the flipped images' paths, each copy's path -> its original's)."""
    rng = np.random.default_rng(seed)
    train = sorted((data / "train").rglob("*.png"))
    classes = sorted(folder.name for folder in (data / "train").iterdir())
    order = rng.permutation(len(train))
    flipped = set()
    for index in order[:round(noise * len(train))]:
        source = train[index]
        others = [name for name in classes if name != source.parent.name]
        target = data / "train" / others[int(rng.integers(len(others)))] / source.name
        shutil.move(source, target)
        flipped.add(str(target))
    planted = {}
    for index in order[len(order) - duplicates:]:
        source = train[index]
        image = Image.open(source).convert("RGB")
        copy = data / "test" / source.parent.name / f"copy_{source.stem}.jpg"
        image.resize((image.width * 7 // 8, image.height * 7 // 8), Image.BICUBIC).save(copy, format="JPEG", quality=80)
        planted[str(copy)] = str(source)
    return flipped, planted


def scores(found, truth: set[str]) -> dict:
    found = set(found)
    hits = len(found & truth)
    precision, recall = hits / max(len(found), 1), hits / max(len(truth), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"found": len(found), "precision": round(precision, 3), "recall": round(recall, 3), "f1": round(f1, 3)}


def reference(features: np.ndarray, labels: np.ndarray, paths: list[str], truth: set[str]) -> dict:
    """The issue's reference: LogisticRegression(C=1), 5-fold cross_val_predict, cleanlab's defaults."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probabilities = cross_val_predict(LogisticRegression(C=1.0, max_iter=1000), features, labels, cv=5,
                                          method="predict_proba")
        issues = find_label_issues(labels, probabilities, n_jobs=1)
    result = scores([paths[index] for index in np.flatnonzero(issues)], truth)
    return {**result, "seconds": round(time.perf_counter() - started, 2)}


def duplicate_scores(findings, planted: dict[str, str]) -> dict:
    images = findings.images
    groups = [{str(images.samples[member].path) for member in group.members} for group in findings.duplicates.groups
              if group.leakage]
    found = sum(any({copy, original} <= group for group in groups) for copy, original in planted.items())
    members = {str(images.samples[member].path) for group in findings.duplicates.groups for member in group.members}
    expected = set(planted) | set(planted.values())
    return {"planted": len(planted), "found_as_leakage": found, "false_positives": len(members - expected),
            "threshold_similarity": round(findings.duplicates.threshold, 6)}


def run_row(dataset: str, noise: float, args) -> dict:
    from tlcli.audit.audit import AuditConfig, read_images, run_sections
    from tlcli.events import SILENT

    with tempfile.TemporaryDirectory(prefix="tlcli-bench-audit-") as scratch:
        data = make_dataset(dataset, Path(scratch) / dataset)
        flipped, planted = plant_faults(data, noise, args.duplicates)
        config = AuditConfig(data=data, model=args.model, weights="none", image_size=args.image_size)
        started = time.perf_counter()
        images, _ = read_images(config, SILENT)
        extraction = time.perf_counter() - started
        started = time.perf_counter()
        findings = run_sections(images, config.seed, SILENT)
        seconds = time.perf_counter() - started
        paths = [str(sample.path) for sample in images.samples]
        ours = scores([paths[index] for index in findings.label_errors.flagged], flipped)
        baseline = reference(images.features, images.labels, paths, flipped)
    return {"dataset": dataset, "noise": noise, "images": len(paths), "flipped": len(flipped),
            "extraction_seconds": round(extraction, 1),
            "tlcli": {**ours, "seconds": round(seconds, 2), "penalty_C": findings.label_errors.penalty},
            "reference": baseline, "duplicates": duplicate_scores(findings, planted),
            "outliers_flagged": len(findings.outliers.flagged)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="sklearn-digits,shipped-digits")
    parser.add_argument("--noise", default="0.05,0.1,0.2")
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--duplicates", type=int, default=20)
    args = parser.parse_args()
    commit = checkout_commit()
    rows = [run_row(dataset, float(noise), args) for dataset in args.datasets.split(",") for noise in args.noise.split(",")]
    print(f"tlcli audit vs the reference, {args.model} (random weights) at {args.image_size} px, commit {commit}")
    print(f"{'dataset':15} {'noise':>5} {'images':>6} | {'tlcli P/R/F1':>14} {'s':>5} | {'reference P/R/F1':>16} "
          f"{'s':>5} | {'duplicates found':>16} {'false +':>7}")
    for row in rows:
        ours, theirs, duplicates = row["tlcli"], row["reference"], row["duplicates"]
        print(f"{row['dataset']:15} {row['noise']:>5.0%} {row['images']:>6} | "
              f"{ours['precision']:.2f}/{ours['recall']:.2f}/{ours['f1']:.2f} {ours['seconds']:>5.1f} | "
              f"{theirs['precision']:.2f}/{theirs['recall']:.2f}/{theirs['f1']:.2f} {theirs['seconds']:>5.1f} | "
              f"{duplicates['found_as_leakage']:>7} of {duplicates['planted']:<5} {duplicates['false_positives']:>7}")
    path = save("audit", {"commit": commit, "model": args.model, "image_size": args.image_size, "machine": machine(),
                          "rows": rows})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
