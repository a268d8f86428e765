"""End-to-end training with the images decoded once per run (uint8) against decoded every epoch
(float32), side by side: seconds, loss and accuracy of the same run both ways.

Both runs train the same head end to end (through the frozen backbone, `--no-cache-features`) with
the same seed, hence the same shuffles, augmentation and initial weights; only the images differ,
by the rounding of the decoded, resized pixels to uint8 (at most 0.5 of 255). Test accuracy and
loss are the saved model's on the test split, decoded in float32 as `tlcli evaluate` decodes it.

    python bench/decode_once.py [--data sample_data] [--model vgg16] [--image-size 64] [--epochs 20]
                                [--augment light] [--photos 0x0]

`--photos 1024x768` trains on that many generated photo-like JPEGs (extract_throughput.py's
generator, --photo-count of them) instead of --data, where decoding weighs more.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from common import machine, save  # noqa: E402
from extract_throughput import write_photos  # noqa: E402

from tlcli.augment.config import PRESETS  # noqa: E402
from tlcli.data.dataset import load_dataset  # noqa: E402
from tlcli.data.pipeline import image_dataset  # noqa: E402
from tlcli.models.saved import load_run_model  # noqa: E402
from tlcli.training.config import FitConfig, TrainConfig  # noqa: E402
from tlcli.training.train import train  # noqa: E402


def test_figures(run_dir: Path, data: Path, image_size: int) -> dict:
    """The saved model's cross-entropy and accuracy on the test split, decoded in float32."""
    model, _ = load_run_model(run_dir)
    batches = list(image_dataset(load_dataset(data).split("test"), image_size, 32))
    labels = np.concatenate([labels.numpy() for _, labels in batches])
    probabilities = np.concatenate([model.predict(images, verbose=0) for images, _ in batches])
    loss = -np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1)))
    return {"test_loss": round(float(loss), 4),
            "test_accuracy": round(float(np.mean(probabilities.argmax(1) == labels)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parent.parent / "sample_data"))
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=None, help="Default: tlcli's (about 1,000 steps).")
    parser.add_argument("--augment", default="light", help="An augmentation preset, or none.")
    parser.add_argument("--photos", default=None, help="WIDTHxHEIGHT: generated JPEGs instead of --data.")
    parser.add_argument("--photo-count", type=int, default=96)
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(args.data)
        if args.photos:
            width, height = (int(side) for side in args.photos.split("x"))
            data = write_photos(Path(scratch) / "photos", args.photo_count, width, height)
        for route, cache in (("decoded once (uint8)", True), ("decoded every epoch", False)):
            config = TrainConfig(
                data=data, model=args.model, out=Path(scratch) / ("once" if cache else "every"), weights="none",
                image_size=args.image_size, cache_images=cache, cache_features=False, head_solver="gradient",
                fit=FitConfig(epochs=args.epochs),
            )
            started = time.perf_counter()
            outcome = train(config, augmentation=PRESETS[args.augment])
            seconds = time.perf_counter() - started
            row = {"seconds": round(seconds, 1), "epochs": outcome.metrics["epochs_run"],
                   "best_epoch": outcome.metrics["best_epoch"],
                   "val_loss": round(outcome.metrics["val_loss"], 4),
                   "val_accuracy": round(outcome.metrics["val_accuracy"], 4)}
            if (data / "test").is_dir():
                row.update(test_figures(outcome.run_dir, data, config.image_size or 224))
            results[route] = row
    keys = list(next(iter(results.values())))
    print(f"{'route':<24}" + "".join(f"{key:>14}" for key in keys))
    for route, row in results.items():
        print(f"{route:<24}" + "".join(f"{row[key]:>14}" for key in keys))
    document = {**{key: value for key, value in vars(args).items()}, "results": results, "machine": machine()}
    print(f"written: {save('decode_once', document)}")


if __name__ == "__main__":
    main()
