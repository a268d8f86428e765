"""A digits dataset with known faults, audited once for the tests that read the audit."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import TINY_TRAIN, invoke, write_digits_dataset

FLIPPED_SHARE = 0.1  # of the training images, filed under a wrong class
PLANTED = 6  # training images copied into test/, resized and re-encoded as JPEG


@dataclass(frozen=True)
class Faulty:
    data: Path
    flipped: frozenset[str]  # the paths (as the audit names them) of the images filed under a wrong class
    planted: dict[str, str]  # each planted copy's path -> its original's


def write_faulty_digits(root: Path, seed: int = 0) -> Faulty:
    """scikit-learn's digits as class folders (30 train, 10 val, 10 test per class), 10% of the
    training images moved into another class's folder, and PLANTED training images resized to
    28 px, saved as JPEG (quality 80) into test/ under their class."""
    data = write_digits_dataset(root, {"train": 30, "val": 10, "test": 10}, seed=seed)
    rng = np.random.default_rng(seed)
    train = sorted((data / "train").rglob("*.png"))
    chosen = rng.permutation(len(train))
    flipped = set()
    for index in chosen[:round(FLIPPED_SHARE * len(train))]:
        source = train[index]
        digit = (int(source.parent.name) + int(rng.integers(1, 10))) % 10
        target = data / "train" / str(digit) / source.name
        shutil.move(source, target)
        flipped.add(str(target))
    planted = {}
    for index in chosen[-PLANTED:]:
        source = train[index]
        copy = data / "test" / source.parent.name / f"copy_{source.stem}.jpg"
        Image.open(source).convert("RGB").resize((28, 28), Image.BICUBIC).save(copy, format="JPEG", quality=80)
        planted[str(copy)] = str(source)
    return Faulty(data, frozenset(flipped), planted)


@pytest.fixture(scope="package")
def faulty(tmp_path_factory) -> Faulty:
    return write_faulty_digits(tmp_path_factory.mktemp("faulty") / "digits")


@pytest.fixture(scope="package")
def audited(faulty, tmp_path_factory) -> tuple[dict, Path, Path]:
    """`tlcli audit --json --out --fix-labels` of the faulty digits: (the JSON, --out, the label file)."""
    folder = tmp_path_factory.mktemp("audited")
    out, fix = folder / "audit", folder / "fixed.csv"
    result = invoke("audit", faulty.data, *TINY_TRAIN, "--out", out, "--fix-labels", fix, "--json")
    return json.loads(result.stdout), out, fix
