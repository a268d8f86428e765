"""Images per second through the one pipeline (decode and resize, batched), from files against
from packed shards, side by side: many small JPEGs, and large ones.

For each dataset: one pass over every image, best of --repeats, read from the files, streamed
from the shards (an unshuffled split: extraction, evaluation), and a shuffled epoch from the
shards (its bytes read from the shards into memory first, counted in its time). No model runs:
this is the input pipeline alone. The files were just written, so both read from the page cache.

    python bench/pack_throughput.py [--small 4000] [--large 150] [--image-size 224] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import checkout_commit, machine, save  # noqa: E402

from tlcli.data.dataset import SplitOptions, load_dataset  # noqa: E402
from tlcli.data.pack import pack_dataset  # noqa: E402
from tlcli.data.pipeline import image_dataset  # noqa: E402


def write_jpegs(root: Path, count: int, width: int, height: int, classes: int = 4) -> None:
    """Photo-like JPEGs (smooth gradients with some noise), so that sizes are those of photos."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    for index in range(count):
        folder = root / f"class_{index % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        phase = rng.uniform(0, 2 * np.pi, 3)
        channels = [127 + 100 * np.sin(x / (20 + 10 * c) + y / 35 + phase[c]) for c in range(3)]
        pixels = np.stack(channels, -1) + rng.normal(0, 6, (height, width, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{index:05d}.jpg", quality=90)


def images_per_second(samples, image_size: int, repeats: int, **kwargs) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        count = sum(int(images.shape[0]) for images, _ in image_dataset(samples, image_size, 32, **kwargs))
        best = min(best, time.perf_counter() - started)
    assert count == len(samples)
    return len(samples) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=4000, help="96x96 JPEGs")
    parser.add_argument("--large", type=int, default=150, help="3000x2000 JPEGs")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, count, (width, height) in (("small", args.small, (96, 96)), ("large", args.large, (3000, 2000))):
            data, out = Path(scratch) / name, Path(scratch) / f"{name}-packed"
            write_jpegs(data, count, width, height)
            pack_dataset(data, out, SplitOptions(val_split=0.0))
            files, shards = load_dataset(data, SplitOptions(val_split=0.0)), load_dataset(out)
            megabytes = sum(os.path.getsize(sample.path) for sample in files.split("train")) / 1e6
            rows[f"{count} JPEGs {width}x{height} ({megabytes:.0f} MB)"] = {
                "from files": images_per_second(files.split("train"), args.image_size, args.repeats),
                "shards, streamed": images_per_second(shards.split("train"), args.image_size, args.repeats),
                "files, shuffled": images_per_second(files.split("train"), args.image_size, args.repeats,
                                                     shuffle=True),
                "shards, shuffled": images_per_second(shards.split("train"), args.image_size, args.repeats,
                                                      shuffle=True),
            }
    commit = checkout_commit()
    columns = list(next(iter(rows.values())))
    print(f"images/s to {args.image_size}x{args.image_size} batches, best of {args.repeats}, commit {commit}, "
          f"{os.cpu_count()} cores")
    print(f"{'data':<36}" + "".join(f"{column:>18}" for column in columns))
    for name, figures in rows.items():
        print(f"{name:<36}" + "".join(f"{figures[column]:>18.1f}" for column in columns))
    document = {"image_size": args.image_size, "repeats": args.repeats, "commit": commit,
                "images_per_second": {name: {key: round(value, 1) for key, value in figures.items()}
                                      for name, figures in rows.items()}, "machine": machine()}
    print(f"written: {save('pack_throughput', document)}")


if __name__ == "__main__":
    main()
