"""What reading a dataset through a URL costs, against the same folder read as a local path.

One dataset of small JPEGs, read three ways in one run: as a local path, as a `file://` URL (the
same disk, through TensorFlow's file systems: the code that serves `gs://`), and copied into
TensorFlow's in-memory `ram://` file system (an object store without a network, so only tlcli's
and TensorFlow's per-request work shows). For each: the first scan (list every folder, stat and
check every file; the check cache emptied first), the second scan (the checks kept), and images
per second through the one pipeline (decode, resize, batches of 32; best of --repeats).

    python bench/url_reading.py [--images 4000] [--image-size 224] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import checkout_commit, machine, save  # noqa: E402
from pack_throughput import images_per_second, write_jpegs  # noqa: E402

from tlcli.data.check_cache import cache_path  # noqa: E402
from tlcli.data.dataset import SplitOptions, build_dataset, scan  # noqa: E402
from tlcli.runtime import import_tensorflow  # noqa: E402
from tlcli.storage import location  # noqa: E402


def copy_to(folder: Path, url: str) -> None:
    gfile = import_tensorflow().io.gfile
    for path in sorted(folder.rglob("*")):
        target = f"{url}/{path.relative_to(folder).as_posix()}"
        if path.is_dir():
            gfile.makedirs(target)
        else:
            gfile.copy(str(path), target, overwrite=True)


def timed_scan(data) -> tuple[float, object]:
    started = time.perf_counter()
    found = scan(data)
    return time.perf_counter() - started, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000, help="96x96 JPEGs, in 4 classes")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "data"
        write_jpegs(folder, args.images, 96, 96)
        old = time.time() - 60  # older than the check cache's racy window, so that checks are kept
        for path in folder.rglob("*.jpg"):
            os.utime(path, (old, old))
        copy_to(folder, "ram://bench/data")
        for name, data in (("local path", folder), ("file:// URL", folder.as_uri()), ("ram:// URL", "ram://bench/data")):
            cache_path(location(data)).unlink(missing_ok=True)
            first, found = timed_scan(data)
            second, _ = timed_scan(data)
            samples = build_dataset(found, SplitOptions(val_split=0.0)).split("train")
            rows[name] = {"first scan s": first, "second scan s": second,
                          "images/s": images_per_second(samples, args.image_size, args.repeats)}
        shutil.rmtree(folder)

    commit = checkout_commit()
    local = rows["local path"]
    print(f"{args.images} JPEGs 96x96, to {args.image_size}x{args.image_size} batches, commit {commit}, "
          f"{os.cpu_count()} cores")
    print(f"{'read as':<14}{'first scan s':>14}{'second scan s':>15}{'images/s':>10}{'images/s / local':>18}")
    for name, figures in rows.items():
        print(f"{name:<14}{figures['first scan s']:>14.2f}{figures['second scan s']:>15.2f}"
              f"{figures['images/s']:>10.0f}{figures['images/s'] / local['images/s']:>18.2f}")
    document = {"images": args.images, "image_size": args.image_size, "repeats": args.repeats, "commit": commit,
                "rows": {name: {key: round(value, 3) for key, value in figures.items()} for name, figures in rows.items()},
                "machine": machine()}
    print(f"written: {save('url_reading', document)}")


if __name__ == "__main__":
    main()
