"""Does `tlcli explain` point where the evidence is? Grad-CAM against occlusion, per backbone.

    python bench/explain_localisation.py        # about 3 minutes on 2 cores

The fixture decides the class by a bright square in a random corner of noise images
(tests/helpers.write_patch_dataset), so the right answer is known. For every backbone (random
weights, as nothing can be downloaded here) a run is trained at default settings, every test
image of the "patch" class is explained, and the corner holding its map's peak is compared
with the truth. The reference is occlusion: each corner quarter in turn is replaced by fresh
noise, and the corner whose loss lowers the class's score (log p(patch) - log p(plain)) the
most is the model's own answer. Chance is 1 in 4.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from common import machine, save  # noqa: E402
from helpers import invoke, write_patch_dataset  # noqa: E402

SIZES = {"vgg16": 128, "resnet50": 128, "inceptionv3": 171, "xception": 128}


def occlusion_corners(model, images: np.ndarray, patch: int, seed: int = 0) -> list[tuple[int, int]]:
    """For each image, the (bottom, right) quarter whose replacement by noise lowers the
    patch class's score the most."""
    rng = np.random.default_rng(seed)
    size = images.shape[1]
    half = size // 2

    def scores(batch):
        log_p = np.log(np.clip(np.asarray(model(batch, training=False)), 1e-12, 1))
        return log_p[:, patch] - log_p[:, 1 - patch]

    base = scores(images)
    drops = []
    for bottom in (0, 1):
        for right in (0, 1):
            occluded = images.copy()
            rows, columns = slice(bottom * half, bottom * half + half), slice(right * half, right * half + half)
            occluded[:, rows, columns] = rng.integers(0, 100, occluded[:, rows, columns].shape)
            drops.append(base - scores(occluded))
    best = np.argmax(np.stack(drops, axis=1), axis=1)
    return [divmod(int(quarter), 2) for quarter in best]


def measure(name: str, size: int, root: Path, per_class: int) -> dict:
    import json

    from PIL import Image

    from tlcli.models.saved import load_run_model

    data, run = root / name / "data", root / name / "run"
    corners = write_patch_dataset(data, {"train": per_class, "val": per_class // 2, "test": per_class}, size)
    start = time.perf_counter()
    invoke("train", data, "--model", name, "--weights", "none", "--image-size", size, "--quiet", "--out", run)
    trained = time.perf_counter() - start
    start = time.perf_counter()
    records = json.loads(invoke("explain", run, data / "test" / "patch", "--class", "patch", "--json",
                                "--out", root / name / "maps").stdout)
    explained = time.perf_counter() - start
    model, info = load_run_model(run)
    paths = [record["path"] for record in records]
    images = np.stack([np.asarray(Image.open(path).convert("RGB"), np.float32) for path in paths])
    occluded = occlusion_corners(model, images, info.class_names.index("patch"))
    truth = [corners[path] for path in paths]
    half = size / 2
    peaks = [(record["peak"]["y"] >= half, record["peak"]["x"] >= half) if record["peak"] else None
             for record in records]
    return {
        "backbone": name, "image_size": size, "grid": records[0]["grid"], "images": len(records),
        "gradcam_hits": sum(peak == corner for peak, corner in zip(peaks, truth)),
        "occlusion_hits": sum(tuple(map(bool, found)) == corner for found, corner in zip(occluded, truth)),
        "agree": sum(peak == tuple(map(bool, found)) for peak, found in zip(peaks, occluded)),
        "train_seconds": round(trained, 1), "explain_seconds": round(explained, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default=",".join(SIZES))
    parser.add_argument("--per-class", type=int, default=16)
    parser.add_argument("--image-size", type=int, help="one size for every backbone (default: %s)" % SIZES)
    arguments = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in arguments.backbones.split(","):
            rows.append(measure(name, arguments.image_size or SIZES[name], Path(scratch), arguments.per_class))
            row = rows[-1]
            print(f"{name:12s} {row['image_size']:4d} px  grid {row['grid'][0]}x{row['grid'][1]}  "
                  f"Grad-CAM {row['gradcam_hits']}/{row['images']}  occlusion {row['occlusion_hits']}/{row['images']}  "
                  f"agree {row['agree']}/{row['images']}  (train {row['train_seconds']} s, "
                  f"explain {row['explain_seconds']} s)", flush=True)
    print("chance: 1 in 4")
    name = "explain_localisation" + (f"_{arguments.image_size}px" if arguments.image_size else "")
    print(f"wrote {save(name, {'machine': machine(), 'rows': rows})}")


if __name__ == "__main__":
    main()
