"""Fixtures: tiny image datasets written with Pillow into tmp_path."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

_counter = itertools.count()
# Class names that Rich would read as markup or an emoji code unless they are printed literally.
MARKUP_NAMES = ("[bold red]alert", "a:x:b", "[i]tilt")


SOURCE_TREE = Path(__file__).resolve().parents[1]


def source_env() -> dict:
    """The environment of a child process that imports the code under test (this tree's tlcli),
    wherever tlcli is installed from."""
    paths = [str(SOURCE_TREE), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in paths if path)}


def kill_when(command: list, ready: Callable[[], bool], timeout: float = 120) -> None:
    """Run `command` and SIGKILL it as soon as `ready()` holds (or it ends, or time runs out)."""
    process = subprocess.Popen([str(part) for part in command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None and not ready():
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()


def write_image(path: Path, mode: str = "RGB", size=(12, 10), fmt: str | None = None, pixels=None) -> Path:
    """Write a small image whose pixels differ from every other fixture image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if pixels is None:
        rng = np.random.default_rng(next(_counter))
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if mode == "I;16":
        image = Image.fromarray((pixels[..., 0].astype(np.uint16) * 257))
    elif mode != "RGB":
        image = image.convert(mode)
    image.save(path, format=fmt)
    return path


def write_class_folders(root: Path, per_class: dict[str, int], size=(12, 10), ext=".png") -> Path:
    for class_name, count in per_class.items():
        for index in range(count):
            write_image(root / class_name / f"{class_name}_{index}{ext}", size=size)
    return root


@pytest.fixture
def flat_dataset(tmp_path) -> Path:
    """Flat layout, two classes of 10 images each."""
    return write_class_folders(tmp_path / "flat", {"cat": 10, "dog": 10})


@pytest.fixture
def split_dataset(tmp_path) -> Path:
    root = tmp_path / "split"
    write_class_folders(root / "train", {"cat": 6, "dog": 6})
    write_class_folders(root / "val", {"cat": 2, "dog": 2})
    write_class_folders(root / "test", {"cat": 2, "dog": 2})
    return root


@pytest.fixture
def messy_dataset(tmp_path) -> Path:
    """Every kind of file a real folder collects, good and bad, in a split layout."""
    root = tmp_path / "messy"
    write_class_folders(root / "train", {"cat": 4, "dog": 4})
    write_class_folders(root / "val", {"cat": 2, "dog": 2})
    cats = root / "train" / "cat"
    (cats / "corrupt.jpg").write_bytes(b"this is not a jpeg at all" * 10)
    full = write_image(root / "scratch" / "full.jpg", size=(64, 64))
    (cats / "truncated.jpg").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    full.parent.rmdir()
    (cats / "empty.png").write_bytes(b"")
    (cats / "notes.txt").write_text("labels are hard")
    write_image(cats / "grey.png", mode="L")
    write_image(cats / "rgba.png", mode="RGBA")
    write_image(cats / "cmyk.jpg", mode="CMYK")
    write_image(cats / "sixteen.png", mode="I;16")
    write_image(cats / "palette.bmp", mode="P", fmt="BMP")
    write_image(cats / "png_named.jpg", fmt="PNG")
    write_image(cats / "upper.JPEG", fmt="JPEG")
    (cats / ".DS_Store").write_bytes(b"\x00\x01junk")
    write_image(root / "train" / ".ipynb_checkpoints" / "x.png")
    write_image(root / "train" / "dog" / "__MACOSX" / "x.png")
    write_image(root / "train" / "dog" / ".hidden" / "x.png")
    return root


def write_colour_dataset(root: Path, per_split=None, size=(20, 20)) -> Path:
    """Three easily learnt classes (mostly red, green or blue noise) in a split layout."""
    per_split = per_split or {"train": 8, "val": 4, "test": 4}
    channel = {"red": 0, "green": 1, "blue": 2}
    for split, count in per_split.items():
        for class_name, index in channel.items():
            for number in range(count):
                rng = np.random.default_rng(next(_counter))
                pixels = rng.integers(0, 90, (size[1], size[0], 3), dtype=np.uint8)
                pixels[..., index] = rng.integers(160, 256, (size[1], size[0]), dtype=np.uint8)
                write_image(root / split / class_name / f"{class_name}_{number}.png", pixels=pixels)
    return root


def write_digits_dataset(root: Path, per_split: dict[str, int], size: int = 32, seed: int = 0) -> Path:
    """scikit-learn's bundled handwritten digits (no download) as PNG class folders: ten
    classes that a linear classifier separates well but not perfectly."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    for digit in range(10):
        indices = rng.permutation(np.flatnonzero(digits.target == digit))
        start = 0
        for split, count in per_split.items():
            for index in indices[start:start + count]:
                pixels = (255 - digits.images[index] * (255 / 16)).astype(np.uint8)
                path = root / split / str(digit) / f"{index:04d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels, mode="L").resize((size, size), Image.BICUBIC).save(path)
            start += count
    return root


@pytest.fixture(scope="session")
def colour_dataset(tmp_path_factory) -> Path:
    return write_colour_dataset(tmp_path_factory.mktemp("colours") / "data")


@pytest.fixture(scope="session")
def tiny_run(colour_dataset, tmp_path_factory) -> Path:
    """A small VGG16 run directory trained by `tlcli train` (32x32, random base weights), its
    head trained by gradient for six steps: far from the optimum, so that it makes mistakes to
    report and fine-tuning has something to improve (the solved head is perfect on these colours)."""
    from tlcli.training.config import FitConfig, TrainConfig
    from tlcli.training.train import train

    run = tmp_path_factory.mktemp("runs") / "tiny"
    config = TrainConfig(data=colour_dataset, model="vgg16", out=run, weights="none", image_size=32,
                         head_solver="gradient", fit=FitConfig(epochs=2, learning_rate=1e-3, batch_size=8))
    train(config, quiet=True)
    return run


def relabelled_run(run: Path, folder: Path, class_names) -> Path:
    """A run directory sharing `run`'s model, whose classes carry other names (labels.txt)."""
    folder.mkdir(parents=True)
    shutil.copy(run / "config.json", folder / "config.json")
    (folder / "model.keras").symlink_to(run / "model.keras")
    (folder / "labels.txt").write_text("\n".join(class_names) + "\n")
    return folder


def run_with_model(run: Path, folder: Path, model: bytes) -> Path:
    """A copy of a run directory whose model.keras holds `model` (say, a damaged copy)."""
    folder.mkdir(parents=True)
    for name in ("config.json", "labels.txt"):
        shutil.copy(run / name, folder / name)
    (folder / "model.keras").write_bytes(model)
    return folder
