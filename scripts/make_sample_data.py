"""Regenerate sample_data/ from scikit-learn's bundled UCI handwritten digits (no download).

Each 8x8 digit (16 grey levels) is scaled to 32x32 and saved as a greyscale PNG in
sample_data/<split>/<digit>/. The split is fixed by the seed, so the folder is reproducible:

    python scripts/make_sample_data.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

OUT = Path(__file__).resolve().parent.parent / "sample_data"
PER_CLASS = {"train": 30, "val": 10, "test": 10}
SIZE = 32
SEED = 0


def main() -> None:
    digits = load_digits()
    rng = np.random.default_rng(SEED)
    if OUT.exists():
        shutil.rmtree(OUT)
    for digit in range(10):
        indices = rng.permutation(np.flatnonzero(digits.target == digit))
        start = 0
        for split, count in PER_CLASS.items():
            folder = OUT / split / str(digit)
            folder.mkdir(parents=True)
            for index in indices[start : start + count]:
                pixels = (255 - digits.images[index] * (255 / 16)).astype(np.uint8)  # dark ink
                image = Image.fromarray(pixels, mode="L").resize((SIZE, SIZE), Image.BICUBIC)
                image.save(folder / f"digit_{index:04d}.png", optimize=True)
            start += count
    total = sum(PER_CLASS.values()) * 10
    print(f"wrote {total} images to {OUT}")


if __name__ == "__main__":
    main()
