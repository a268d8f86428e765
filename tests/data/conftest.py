"""A flat colour dataset and its pack, built once for the data tests, which only read them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import invoke, write_colour_dataset

# The split every pack of `flat_colours` is made with, as `tlcli pack` and `tlcli train` options.
SPLIT = ("--val-split", 0.25, "--test-split", 0.125, "--seed", 3)


@pytest.fixture(scope="session")
def flat_colours(tmp_path_factory) -> Path:
    """Three colour classes of 16 images each, in a flat layout (the split is made by tlcli)."""
    source = write_colour_dataset(tmp_path_factory.mktemp("colours") / "split", {"train": 16})
    flat = source.parent / "flat"
    shutil.copytree(source / "train", flat)
    return flat


@pytest.fixture(scope="session")
def packed(flat_colours, tmp_path_factory) -> Path:
    """flat_colours packed with SPLIT, in shards small enough to hold a few images each."""
    out = tmp_path_factory.mktemp("packs") / "colours"
    invoke("pack", flat_colours, "--out", out, "--shard-mb", 0.004, "--quiet", *SPLIT)
    return out
