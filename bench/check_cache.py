"""The check pass (`scan`: every file opened and decoded with Pillow) against the second run,
which reads the results from the check cache, side by side.

Writes a few thousand small JPEGs in class folders (dated an hour back, as data that was not
written this instant), then times, best of --repeats: the checks without any cache (as before
the cache), a first run (the checks, and the cache written), and a second run (the cache read,
nothing decoded).

    python bench/check_cache.py [--images 3000] [--side 96] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import checkout_commit, save  # noqa: E402

from tlcli.data.check_cache import cache_path  # noqa: E402
from tlcli.data.dataset import discover, scan  # noqa: E402
from tlcli.data.images import check_images  # noqa: E402


def write_images(root: Path, count: int, side: int, classes: int = 10) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    for index in range(count):
        folder = root / f"class_{index % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.roll(base, index, axis=1)  # distinct files, cheap to make
        Image.fromarray(pixels).save(folder / f"{index:05d}.jpg", quality=90)
    an_hour_ago = time.time_ns() - 3600 * 10**9
    for path in root.rglob("*.jpg"):
        os.utime(path, ns=(an_hour_ago, an_hour_ago))


def best_of(repeats: int, function, before=lambda: None) -> float:
    times = []
    for _ in range(repeats):
        before()
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--side", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        os.environ["XDG_CACHE_HOME"] = str(Path(scratch) / "user-cache")  # this run's own cache
        root = Path(scratch) / "data"
        write_images(root, args.images, args.side)
        cache = cache_path(root)
        paths = [path for classes in discover(root).files.values() for files in classes.values() for path in files]

        def drop_cache():
            cache.unlink(missing_ok=True)

        no_cache = best_of(args.repeats, lambda: check_images(paths))
        first = best_of(args.repeats, lambda: scan(root), before=drop_cache)
        scan(root)
        second = best_of(args.repeats, lambda: scan(root))
        cache_bytes = cache.stat().st_size

    commit = checkout_commit()
    rows = {"checks, no cache": no_cache, "first run (checks + cache written)": first,
            "second run (cache read)": second}
    print(f"{args.images} JPEGs of {args.side}x{args.side}, best of {args.repeats}, commit {commit}, "
          f"{os.cpu_count()} cores")
    print(f"{'pass':<38}{'seconds':>9}{'ms/image':>10}")
    for name, seconds in rows.items():
        print(f"{name:<38}{seconds:>9.3f}{seconds * 1000 / args.images:>10.3f}")
    print(f"second run: {no_cache / second:.0f}x faster than the checks; cache file {cache_bytes / 1024:.0f} KiB")
    document = {"images": args.images, "side": args.side, "repeats": args.repeats, "commit": commit,
                "seconds": {name: round(value, 4) for name, value in rows.items()}, "cache_bytes": cache_bytes,
                "cores": os.cpu_count(), "python": platform.python_version()}
    print(f"written: {save('check_cache', document)}")


if __name__ == "__main__":
    main()
