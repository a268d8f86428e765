"""Where the decode CPU goes: CPU milliseconds per image of each step of `decode_image`.

For photo-like JPEGs of each size (the generator of extract_throughput.py), each step runs over
the same encoded files in a tf.data map, one call at a time (num_parallel_calls=1) or with one
call per core, and its CPU time (all threads of the process) is divided by the images:

  read            tf.io.read_file alone
  decode full     decode_jpeg at full size (no DCT scaling)
  decode scaled   decode_jpeg at the DCT scale tlcli picks (`_decode_jpeg_scaled`)
  + resize        scaled decode + the antialiased bilinear resize (float32 out): `decode_image`
  + resize, no aa scaled decode + bilinear without antialiasing (not Pillow's pixels: a floor)
  pillow          Pillow's draft + convert + BILINEAR resize, in this process, for reference
  pipeline        `image_dataset` itself (read, decode, resize, batch, one decoding call per core),
                  on the files once and four times over (its fixed cost per pass spread thinner),
                  and with one thread per op (tf.data's max_intra_op_parallelism = 1)

    python bench/decode_profile.py [--images 64] [--sizes 320x240,1024x768,224x224] [--image-size 224] [--repeats 3]

The best of --repeats counts (the machine is shared). Steps are timed in turn in one process.
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
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from extract_throughput import write_photos  # noqa: E402

from tlcli.data.dataset import SplitOptions, load_dataset  # noqa: E402
from tlcli.data.pipeline import _decode_jpeg_scaled, decode_image, image_dataset, tf  # noqa: E402


def cpu_ms_per_image(dataset, images: int, repeats: int, intra_op: int | None = None) -> tuple[float, float]:
    """(best CPU ms per image, best wall ms per image) of reading `dataset` to its end;
    `intra_op` caps the threads one op may use inside the pipeline."""
    options = tf.data.Options()
    options.autotune.enabled = False
    if intra_op is not None:
        options.threading.max_intra_op_parallelism = intra_op
    dataset = dataset.with_options(options)
    for _ in dataset.take(2):  # trace
        pass
    best_cpu = best_wall = float("inf")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in dataset:
            pass
        best_wall = min(best_wall, (time.perf_counter() - wall) * 1000 / images)
        best_cpu = min(best_cpu, (time.process_time() - cpu) * 1000 / images)
    return best_cpu, best_wall


def steps(image_size: int) -> dict:
    def scaled(data):
        return _decode_jpeg_scaled(data, image_size)

    return {
        "read": lambda data: tf.shape(data),
        "decode full": lambda data: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        "decode scaled": scaled,
        "+ resize": lambda data: decode_image(data, image_size),
        "+ resize, no aa": lambda data: tf.image.resize(tf.ensure_shape(scaled(data), [None, None, 3]),
                                                        [image_size, image_size], antialias=False),
    }


def pillow_ms_per_image(paths: list[Path], image_size: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        cpu = time.process_time()
        for path in paths:
            with Image.open(path) as image:
                image.draft("RGB", (image_size, image_size))
                np.asarray(image.convert("RGB").resize((image_size, image_size), Image.BILINEAR), np.float32)
        best = min(best, (time.process_time() - cpu) * 1000 / len(paths))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--sizes", default="320x240,1024x768,224x224")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"CPU ms per image (best of {args.repeats}), {args.images} photo-like JPEGs per size, "
          f"to {args.image_size}x{args.image_size}; load average {os.getloadavg()[0]:.1f} before")
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.sizes.split(","):
            width, height = (int(side) for side in size.split("x"))
            folder = write_photos(Path(scratch) / size, args.images, width, height)
            paths = sorted(folder.rglob("*.jpg"))
            files = tf.data.Dataset.from_tensor_slices([str(path) for path in paths]).map(tf.io.read_file).cache()
            for _ in files:  # the bytes in memory: steps below time decoding, not the disk
                pass
            encoded = np.mean([path.stat().st_size for path in paths]) / 1024
            print(f"\n{size} ({encoded:.0f} KB per file)")
            print(f"  {'step':<24}{'1 thread':>10}{f'{cores} threads':>12}{'wall ms/img':>13}")
            for name, step in steps(args.image_size).items():
                one, _ = cpu_ms_per_image(files.map(step, num_parallel_calls=1), len(paths), args.repeats)
                many, wall = cpu_ms_per_image(files.map(step, num_parallel_calls=cores), len(paths), args.repeats)
                print(f"  {name:<24}{one:>10.2f}{many:>12.2f}{wall:>13.2f}")
            print(f"  {'pillow':<24}{pillow_ms_per_image(paths, args.image_size, args.repeats):>10.2f}")
            samples = load_dataset(folder, SplitOptions(val_split=0.0)).split("train")
            for name, copies, intra_op in (("pipeline (image_dataset)", 1, None), ("  the files 4 times", 4, None),
                                           ("  4 times, intra-op 1", 4, 1)):
                many, wall = cpu_ms_per_image(image_dataset(samples * copies, args.image_size, 32),
                                              len(samples) * copies, args.repeats, intra_op)
                print(f"  {name:<24}{'':>10}{many:>12.2f}{wall:>13.2f}")
    print(f"\nload average {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
