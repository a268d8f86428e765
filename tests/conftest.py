"""Fixtures: tiny image datasets written with Pillow into tmp_path, the test backbone, and the
two suites (the fast one by default, everything with --whole)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

# pytest-xdist starts its workers with COLUMNS=80, and Rich's consoles, made when tlcli.console is
# first imported, would keep that width for good; without it they read COLUMNS as they print, so a
# test's monkeypatched width holds in a worker as in a single process.
os.environ.pop("COLUMNS", None)

import tiny_backbone  # noqa: E402
from helpers import (  # noqa: E402
    CHILD_SITE,
    SOURCE_TREE,
    TESTS,
    TINY_TRAIN,
    invoke,
    write_class_folders,
    write_colour_dataset,
    write_image,
    write_square_dataset,
)
from tlcli.models.backbones import BACKBONES  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# TinyNet is a backbone in this process and in every process it starts (through child_site's
# sitecustomize): tlcli's own fresh-process export check included.
tiny_backbone.register()
os.environ["PYTHONPATH"] = os.pathsep.join(
    str(path) for path in (SOURCE_TREE, CHILD_SITE, TESTS, os.environ.get("PYTHONPATH")) if path
)

# What only the whole suite runs, by what it costs.
WHOLE_SUITE_MARKERS = ("slow", "subprocess", "cluster")


def pytest_addoption(parser):
    parser.addoption("--whole", action="store_true",
                     help="Run the whole suite: also the tests marked " + ", ".join(WHOLE_SUITE_MARKERS) + ".")


def pytest_collection_modifyitems(config, items):
    """The fast suite by default: deselect the costly tests unless --whole or an -m expression asks."""
    if config.getoption("--whole") or config.option.markexpr:
        return
    kept, deselected = [], []
    for item in items:
        costly = any(item.get_closest_marker(marker) for marker in WHOLE_SUITE_MARKERS)
        (deselected if costly else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture(autouse=True, scope="session")
def user_cache_directory(tmp_path_factory):
    """The tests' own user cache directory (the file checks' cache lives there), so that the
    suite leaves nothing in the home folder; subprocesses inherit it."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("user-cache"))


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


@pytest.fixture(scope="session")
def colour_dataset(tmp_path_factory) -> Path:
    return write_colour_dataset(tmp_path_factory.mktemp("colours") / "data")


@pytest.fixture(scope="session")
def packed_colours(colour_dataset, tmp_path_factory) -> Path:
    """The session's split colour dataset, packed (in shards of a few images each)."""
    out = tmp_path_factory.mktemp("packs") / "split-colours"
    invoke("pack", colour_dataset, "--out", out, "--shard-mb", 0.004, "--quiet")
    return out


@pytest.fixture(scope="session")
def tiny_run(colour_dataset, tmp_path_factory) -> Path:
    """A TinyNet run directory trained by `tlcli train` (32x32, random base weights), its head
    trained by gradient for six steps: far from the optimum, so that it makes mistakes to report
    and fine-tuning has something to improve (the solved head is perfect on these colours).
    Tests read it; a test that changes a run copies it first."""
    from tlcli.training.config import FitConfig, TrainConfig
    from tlcli.training.train import train

    run = tmp_path_factory.mktemp("runs") / "tiny"
    config = TrainConfig(data=colour_dataset, model=tiny_backbone.NAME, out=run, weights="none", image_size=32,
                         head_solver="gradient", fit=FitConfig(epochs=2, learning_rate=1e-3, batch_size=8))
    train(config)
    return run


@pytest.fixture(scope="session")
def solved_run(colour_dataset, tmp_path_factory) -> Path:
    """A TinyNet run whose linear head is solved (train's default route), for tests that only read it."""
    run = tmp_path_factory.mktemp("runs") / "solved"
    invoke("train", colour_dataset, *TINY_TRAIN, "--out", run)
    return run


@pytest.fixture(scope="session")
def finetuned_run(solved_run, tmp_path_factory) -> tuple[Path, str]:
    """`solved_run` fine-tuned for one epoch of its top block, without augmentation (so on the frozen
    part's cached output): (the run directory, finetune's output)."""
    run = tmp_path_factory.mktemp("runs") / "finetuned"
    top = tiny_backbone.TINY.blocks[-1].name
    result = invoke("finetune", solved_run, "--stage", f"{top}:1:1e-4", "--batch-size", 8, "--augment", "none",
                    "--out", run)
    return run, result.output


@pytest.fixture(scope="session")
def calibrated_run(tiny_run, colour_dataset, tmp_path_factory):
    """A copy of `tiny_run` after `tlcli calibrate --data` on the colour images with two validation
    images filed under a wrong class: (the run directory, that dataset, calibrate's --json report).

    On the true labels tiny_run is right on every validation image, so the log loss falls for
    ever as the temperature falls and the fit stops at the end of its range; the two mistakes
    put the best temperature inside it."""
    root = tmp_path_factory.mktemp("calibrated")
    data = root / "data"
    for split in ("train", "val"):
        shutil.copytree(colour_dataset / split, data / split)
    shutil.move(data / "val" / "red" / "red_0.png", data / "val" / "green" / "red_0.png")
    shutil.move(data / "val" / "green" / "green_0.png", data / "val" / "blue" / "green_0.png")
    run = shutil.copytree(tiny_run, root / "run")  # MODEL given as the run's model.keras, as it may be
    return run, data, json.loads(invoke("calibrate", run / "model.keras", "--data", data, "--json").stdout)


SQUARE_IMAGE_SIZE = 64


@pytest.fixture(scope="session")
def square_run(tmp_path_factory):
    """The explanations' fixture: TinyNet (random base, solved head) taught at 64 px that a bright
    14 px square anywhere on a texture makes "patch" (60 + 60 training images, 20 + 20 test):
    (the run directory, the dataset, each test patch image's square as (top, left, side))."""
    root = tmp_path_factory.mktemp("squares")
    squares = write_square_dataset(root / "data", {"train": 60, "val": 20, "test": 20}, SQUARE_IMAGE_SIZE)
    invoke("train", root / "data", "--model", tiny_backbone.NAME, "--weights", "none", "--image-size",
           SQUARE_IMAGE_SIZE, "--quiet", "--out", root / "run")
    return root / "run", root / "data", {path: square for path, square in squares.items() if "/test/" in path}


@pytest.fixture(scope="session")
def trained_runs(colour_dataset, tmp_path_factory):
    """train -> finetune (top block, one epoch) for each of the classic four backbones at its minimum
    size: {name: (train run, fine-tuned run, finetune's output)}. Whole suite only: the real
    backbones' end-to-end rows. The newer rows have a shorter smoke path of their own
    (tests/models/test_newer_backbones.py)."""
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for spec in (spec for spec in BACKBONES.values() if spec.classic):
        train_dir, tune_dir = root / spec.name, root / f"{spec.name}-ft"
        invoke("train", colour_dataset, "--model", spec.name, "--weights", "none",
               "--image-size", spec.min_size, "--epochs", 2, "--batch-size", 8, "--quiet",
               "--learning-rate", 0.01, "--out", train_dir)
        tuned = invoke("finetune", train_dir, "--stage", f"{spec.blocks[-1].name}:1:1e-4",
                       "--batch-size", 8, "--out", tune_dir)
        runs[spec.name] = (train_dir, tune_dir, tuned.output)
    return runs


@pytest.fixture
def make_read_only():
    """Make folders that no one may write in, root included. Tests run as root, which ignores
    permission bits; the immutable attribute (chattr +i) refuses every write with EPERM, as a
    read-only mount refuses them with EROFS, so it stands in for a read-only folder."""
    made = []

    def make(folder: Path) -> Path:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "+i", str(folder)], check=False, capture_output=True)
        else:
            folder.chmod(0o555)
        made.append(folder)
        try:
            (folder / ".probe").touch()
        except OSError:
            return folder
        pytest.skip("this file system cannot make a folder read-only (chattr +i needs ext4 or similar)")

    yield make
    for folder in made:
        subprocess.run(["chattr", "-i", str(folder)], check=False, capture_output=True)
        folder.chmod(0o755)
