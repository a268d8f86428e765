"""What tests share besides fixtures: files and datasets written with Pillow, the CLI runner,
run directories' history, and real processes to start and kill."""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from typer.testing import CliRunner

runner = CliRunner()


_counter = itertools.count()


# Class names that Rich would read as markup or an emoji code unless they are printed literally.
MARKUP_NAMES = ("[bold red]alert", "a:x:b", "[i]tilt")


SOURCE_TREE = Path(__file__).resolve().parents[1]
TESTS = SOURCE_TREE / "tests"
CHILD_SITE = TESTS / "child_site"  # its sitecustomize registers TinyNet in every child process


def source_env() -> dict:
    """The environment of a child process that imports the code under test (this tree's tlcli)
    and knows the test backbone, wherever tlcli is installed from."""
    paths = [str(SOURCE_TREE), str(CHILD_SITE), str(TESTS), os.environ.get("PYTHONPATH", "")]
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


def write_colour_dataset(root: Path, per_split=None, size=(20, 20), seed: int = 0) -> Path:
    """Three easily learnt classes (mostly red, green or blue noise) in a split layout. Every
    image's noise depends only on the seed and where the image is, never on what was written
    before in the process: a test reads the same images whatever ran before it."""
    per_split = per_split or {"train": 8, "val": 4, "test": 4}
    channel = {"red": 0, "green": 1, "blue": 2}
    for split_number, (split, count) in enumerate(per_split.items()):
        for class_name, index in channel.items():
            for number in range(count):
                rng = np.random.default_rng([seed, split_number, index, number])
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


def invoke(*args, expect: int = 0):
    """Run `tlcli ARGS...` in-process and check its exit code."""
    from tlcli.cli import app

    result = runner.invoke(app, [str(arg) for arg in args])
    if result.exit_code != expect and result.exc_info and not isinstance(result.exception, SystemExit):
        import traceback

        raise AssertionError(result.output + "".join(traceback.format_exception(*result.exc_info)))
    assert result.exit_code == expect, result.output + repr(result.exception)
    return result


def read_history(run_dir: Path) -> list[dict]:
    """history.csv's rows, as strings."""
    with open(run_dir / "history.csv") as handle:
        return list(csv.DictReader(handle))


def read_features(path: Path) -> dict[str, np.ndarray]:
    """Every array of a features file that `tlcli extract` wrote."""
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def write_patch_dataset(root: Path, per_class: dict[str, int], size: int, seed: int = 0) -> dict[str, tuple]:
    """Noise images, half of them ("patch") with a bright square in one of the four corners,
    chosen at random: the class is decided by the patch, and nothing else. Returns each patch
    image's corner as (bottom, right)."""
    rng = np.random.default_rng(seed)
    corners = {}
    for split, count in per_class.items():
        for name in ("patch", "plain"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 100, (size, size, 3)).astype(np.uint8)
                if name == "patch":
                    side, margin = size // 4, size // 8
                    bottom, right = (int(value) for value in rng.integers(0, 2, 2))
                    top = rng.integers(0, margin) + bottom * (size - side - margin)
                    left = rng.integers(0, margin) + right * (size - side - margin)
                    pixels[top : top + side, left : left + side] = 255
                    corners[str(folder / f"{index}.png")] = (bottom, right)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    return corners


def textured_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A natural-looking texture, float RGB in [0, 200]: smooth light and shade, a little fine
    grain, and a tint that wanders."""
    from scipy.ndimage import gaussian_filter

    def smooth(sigma: float, channels: int) -> np.ndarray:
        field = gaussian_filter(rng.normal(0, 1, (size, size, channels)), sigma=(sigma, sigma, 0))
        return field / field.std()

    return np.clip(100 + 35 * smooth(size / 16, 1) + 20 * smooth(1, 1) + 12 * smooth(size / 16, 3), 0, 200)


def square_side(size: int) -> int:
    """The side of write_square_dataset's square: 7/32 of the image (14 px at 64 px)."""
    return max(3, round(size * 7 / 32))


def write_square_dataset(root: Path, per_class: dict[str, int], size: int, seed: int = 0) -> dict[str, tuple]:
    """Fine placement: textured images, half of them ("patch") with a bright square anywhere in
    them, the rest ("plain") without: the class is decided by the square, and the square's place
    is known to the pixel. Returns each patch image's square as (top, left, side)."""
    rng = np.random.default_rng(seed)
    side, squares = square_side(size), {}
    for split, count in per_class.items():
        for name in ("patch", "plain"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = textured_background(rng, size)
                if name == "patch":
                    top, left = (int(value) for value in rng.integers(0, size - side + 1, 2))
                    pixels[top : top + side, left : left + side] = 250
                    squares[str(folder / f"{index}.png")] = (top, left, side)
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{index}.png")
    return squares


def peak_on_square(peak: dict | None, square: tuple) -> bool:
    """Whether a map's peak lies on the square or within half its side of it (a flat map's
    None never does)."""
    if peak is None:
        return False
    top, left, side = square
    rows = max(top - peak["y"], 0, peak["y"] - (top + side - 1))
    columns = max(left - peak["x"], 0, peak["x"] - (left + side - 1))
    return bool(np.hypot(rows, columns) <= side / 2)


def square_reading_model(size: int, square: tuple[int, int, int]):
    """A classifier whose evidence is known: it reads only the mean brightness of one square
    (top, left, side) of a `size` image, and calls it class 1 ("bright") above 150, class 0
    below. Softmax out, raw pixels in, as a tlcli model."""
    from tlcli.runtime import import_keras

    keras = import_keras()
    top, left, side = square
    inputs = keras.Input((size, size, 3))
    brightness = keras.layers.Lambda(
        lambda images: keras.ops.mean(images[:, top : top + side, left : left + side, :], axis=(1, 2, 3))[:, None]
    )(inputs)
    scores = keras.layers.Dense(2, name="scores")(brightness)
    model = keras.Model(inputs, keras.layers.Softmax()(scores))
    model.get_layer("scores").set_weights([np.array([[-0.05, 0.05]], np.float32), np.array([7.5, -7.5], np.float32)])
    return model


def bright_square_images(count: int, size: int, square: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Dark noise images with `square` (top, left, side) bright: what square_reading_model calls "bright"."""
    top, left, side = square
    images = np.random.default_rng(seed).uniform(0, 100, (count, size, size, 3)).astype(np.float32)
    images[:, top : top + side, left : left + side] = 250
    return images


PATCH_LABELS = {"red": ((0, 0), 0), "green": ((0, 1), 1), "blue": ((1, 0), 2)}  # label: (quadrant, channel)


def write_multi_label_dataset(root: Path, count: int, size: int = 32, seed: int = 0, delimiter: str = " ") -> Path:
    """`count` dark noise images, each with a bright red, green and blue square in its own
    quadrant present or not independently (probability one half): each label is decided by its
    own patch and by nothing else. Writes and returns `root / labels.csv` (path,label, the
    labels joined by `delimiter`; empty for an image with none)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    side = size // 3
    rows = []
    for index in range(count):
        pixels = rng.integers(0, 80, (size, size, 3)).astype(np.uint8)
        present = [name for name in PATCH_LABELS if rng.random() < 0.5]
        for name in present:
            (row, column), channel = PATCH_LABELS[name]
            top = row * (size - side) + int(rng.integers(0, 3))
            left = column * (size - side) + int(rng.integers(0, 3))
            pixels[top : top + side - 2, left : left + side - 2, channel] = 255
        Image.fromarray(pixels).save(root / f"{index:03d}.png")
        rows.append((f"{index:03d}.png", delimiter.join(present)))
    with open(root / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("path", "label"))
        writer.writerows(rows)
    return root / "labels.csv"


def copy_to_url(folder: Path, url: str) -> str:
    """Copy a local folder, hidden files included, to a URL (through TensorFlow's file systems)
    and return the URL: a dataset in a bucket, for `ram://` and `file://` URLs."""
    import tensorflow as tf

    tf.io.gfile.makedirs(url)
    for path in sorted(folder.rglob("*")):
        target = f"{url}/{path.relative_to(folder).as_posix()}"
        if path.is_dir():
            tf.io.gfile.makedirs(target)
        else:
            tf.io.gfile.copy(str(path), target, overwrite=True)
    return url


# The fast suite's backbone: TinyNet (tests/tiny_backbone.py), from random weights, at 32 px.
TINY_TRAIN = ("--model", "tinynet", "--weights", "none", "--image-size", 32, "--quiet")


def run_facts(run: Path) -> tuple:
    """What makes two runs the same run: images per split and class, classes, and the weights."""
    config = json.loads((run / "config.json").read_text())
    return config["counts"], config["class_names"], json.loads((run / "metrics.json").read_text())["weights_sha256"]


def _image_tail(path) -> str:
    """split/class/file: an image named apart from where its dataset is (a folder, a URL, a pack's source)."""
    return "/".join(str(path).split("/")[-3:])


def _same_features(first: Path, second: Path):
    left, right = read_features(first / "features.npz"), read_features(second / "features.npz")
    assert left.keys() == right.keys()
    for name in left:
        if name == "paths":
            assert [_image_tail(path) for path in left[name]] == [_image_tail(path) for path in right[name]]
        else:
            assert (left[name] == right[name]).all(), name


def _same_evaluation(first: Path, second: Path):
    left, right = (json.loads((folder / "evaluation.json").read_text()) for folder in (first, second))
    for differs in ("data", "data_description"):  # where the images came from, and only that
        left.pop(differs), right.pop(differs)
    for report in (left, right):
        for row in report.get("skipped", []):
            row["path"] = _image_tail(row["path"])
    assert left == right


def _same_model(first: Path, second: Path):
    assert run_facts(first / "run") == run_facts(second / "run")


def _same_picture(first: Path, second: Path):
    assert (first / "grid.png").read_bytes() == (second / "grid.png").read_bytes()


def _same_leaderboard(first: Path, second: Path):
    def scores(folder):
        trials = json.loads((folder / "tune" / "leaderboard.json").read_text())["trials"]
        return [{key: value for key, value in trial.items() if "second" not in key and "time" not in key}
                for trial in trials]

    assert scores(first) == scores(second)


def _same_audit(first: Path, second: Path):
    def tails(value):  # every image named apart from where its dataset is
        if isinstance(value, dict):
            return {key: _image_tail(item) if key == "path" else tails(item) for key, item in value.items()}
        return [tails(item) for item in value] if isinstance(value, list) else value

    def findings(folder):
        document = json.loads((folder / "audit" / "audit.json").read_text())
        for differs in ("data", "dataset_notes", "seconds"):  # where the images came from, and how long it took
            document.pop(differs)
        return tails(document)

    assert findings(first) == findings(second)


# Every command that reads a dataset, as (its arguments given a run, DATA and an output folder; how
# two of its outputs are the same): a dataset read another way (packed, at a URL) must give what
# the folder gives.
DATA_READERS = {
    "extract": (lambda run, data, out: ("extract", data, *TINY_TRAIN, "--out", out / "features.npz"), _same_features),
    "evaluate": (lambda run, data, out: ("evaluate", run, data, "--out", out), _same_evaluation),
    "finetune --data": (lambda run, data, out: ("finetune", run, "--data", data, "--stage", "block3:1:1e-4",
                                                "--batch-size", 8, "--quiet", "--out", out / "run"), _same_model),
    "tune": (lambda run, data, out: ("tune", data, *TINY_TRAIN, "--epochs", 2, "--search", "random", "--trials", 2,
                                     "--out", out / "tune"), _same_leaderboard),
    "augment": (lambda run, data, out: ("augment", data, "--samples", 2, "--variants", 2, "--flip", "horizontal",
                                        "--out", out / "grid.png"), _same_picture),
    "audit": (lambda run, data, out: ("audit", data, *TINY_TRAIN, "--out", out / "audit"), _same_audit),
}


def png_bytes(size=(4, 3)) -> bytes:
    """A small PNG image that tlcli did not write (it carries no signature)."""
    import io

    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def augment_batch(config, images: np.ndarray, seed: int = 0) -> np.ndarray:
    """`images` through the training pipeline's augmenter for `config` (an AugmentConfig)."""
    import tensorflow as tf

    from tlcli.augment.augmenter import build_augmenter

    return build_augmenter(config, seed)(tf.constant(images), tf.constant([7, seed], tf.int64)).numpy()


def ramp_batch(count=32, size=16) -> np.ndarray:
    """Images with no symmetry: every pixel differs from its mirror images."""
    y, x = np.mgrid[0:size, 0:size]
    image = np.stack([x * 15.0, y * 15.0, (x * 3 + y * 7) % 255], -1).astype(np.float32)
    return np.repeat(image[None], count, axis=0)


def grey_batch(value=128.0, count=32, size=16) -> np.ndarray:
    return np.full((count, size, size, 3), value, np.float32)


def one_line_error(result) -> str:
    """The single `Error: ...` line of a failed command (no traceback, nothing else)."""
    assert result.exit_code == 2, result.output + repr(result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]
