"""What fine-tuning adds over the solved head: `tlcli finetune` at defaults against a by-hand
plain-Keras grid, on the same head, the same images and the same test split.

For each dataset and seed:
  - the head: `tlcli train` at defaults from the dataset's backbone weights; its test accuracy
    (`tlcli evaluate`);
  - `tlcli finetune HEAD --seed S` at defaults; its test accuracy, and the rate and route of each
    stage (metrics.json);
  - the reference: the same head fine-tuned by hand in plain Keras (no tlcli training code), over a
    grid of what is unfrozen (the last block, or every layer), Adam's rate (1e-5, 1e-4, 1e-3) and
    augmentation (none, or translation 0.1 + zoom 0.1 as Keras layers), each up to MAX_EPOCHS
    epochs with early stopping on the validation loss (patience PATIENCE, best weights restored).
    Reported: the setting best on validation, scored on test, and the grid's median test accuracy.
    Each setting's test accuracy is kept, and the "good range" of rates (within 0.01 of the best)
    is read off beside `tlcli lr-find`'s suggestion on the same head, for each unfreezing.

Datasets (built here, no download):
  - transfer: VGG16 trained by tlcli itself on digits 0-4 (every image, `train` and then
    `finetune --stage all:...`), transferred to digits 5-9 with 60 training images a class;
    300 test images;
  - random: the same target digits on random VGG16 weights;
  - textures: four kinds of synthetic texture at 64 px on random VGG16 weights.

    python bench/finetune_value.py [--datasets transfer,random,textures] [--seeds 0,1,2]
                                   [--grid full|small|recipe|none] [--max-epochs 40]

Prints mean +- standard deviation over the seeds and the seconds each route took; writes
bench/results/finetune_value.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MAX_EPOCHS, PATIENCE = 40, 8
RATES = (1e-5, 1e-4, 1e-3)
UNFREEZE = ("block5", "all")
AUGMENT = (False, True)
SOURCE_STAGE = "all:15:1e-4"  # the source's own fine-tuning: every layer, as the source was


# --- datasets ------------------------------------------------------------------------------


def digits_split(out: Path, digits_wanted, per_class: dict[str, int] | None, size: int = 32, seed: int = 0) -> Path:
    """scikit-learn's bundled digits `digits_wanted` as PNG class folders train/val/test, or
    with `per_class` None every image of each digit in DATA/<digit>/ (the flat layout)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    for digit in digits_wanted:
        indices = rng.permutation(np.flatnonzero(digits.target == digit))
        start = 0
        for split, count in (per_class or {"": len(indices)}).items():
            folder = out / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for index in indices[start:start + count]:
                pixels = (255 - digits.images[index] * (255 / 16)).astype(np.uint8)
                Image.fromarray(pixels, mode="L").resize((size, size), Image.BICUBIC).save(folder / f"{index:04d}.png")
            start += count
    return out


def textures(out: Path, size: int = 64, per_class=(60, 20, 40), seed: int = 0) -> Path:
    """Gratings, checks, dots and blotches of random scale, angle, phase and contrast over noise:
    four texture classes that no single pixel decides."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    for split, count in zip(("train", "val", "test"), per_class):
        for kind in ("grating", "check", "dots", "blotch"):
            folder = out / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                angle, period = rng.uniform(0, np.pi), rng.uniform(5, 12)
                u = x * np.cos(angle) + y * np.sin(angle)
                v = -x * np.sin(angle) + y * np.cos(angle)
                phase = rng.uniform(0, 2 * np.pi, 2)
                if kind == "grating":
                    field = np.sin(2 * np.pi * u / period + phase[0])
                elif kind == "check":
                    field = np.sign(np.sin(2 * np.pi * u / period + phase[0])
                                    * np.sin(2 * np.pi * v / period + phase[1]))
                elif kind == "dots":
                    spots = np.cos(2 * np.pi * u / period + phase[0]) * np.cos(2 * np.pi * v / period + phase[1])
                    field = (spots > 0.6) * 2.0 - 1
                else:
                    noise = rng.normal(0, 1, (size // 8, size // 8))
                    field = np.array(Image.fromarray(noise.astype(np.float32)).resize((size, size), Image.BICUBIC))
                    field = np.sign(field)
                contrast = rng.uniform(40, 100)
                base = rng.uniform(80, 180, 3)
                pixels = base + contrast * field[..., None] + rng.normal(0, 20, (size, size, 3))
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{index:03d}.png")
    return out


# --- tlcli ---------------------------------------------------------------------------------


def tlcli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tlcli", *map(str, args)], cwd=ROOT, check=True,
                          capture_output=True, text=True)


def test_accuracy(run: Path, data: Path) -> float:
    return float(json.loads(tlcli("evaluate", run, data, "--json", "--out", run.parent / f"{run.name}-eval",
                                  "--overwrite").stdout)["accuracy"])


def source_run(scratch: Path) -> Path:
    """VGG16 trained by tlcli on digits 0-4, then fine-tuned on all its layers: the weights that
    the transfer dataset starts from (made once, reused by every seed)."""
    run = scratch / "source-finetuned"
    if (run / "model.keras").exists():
        return run
    data = digits_split(scratch / "source", range(5), None, seed=1)
    tlcli("train", data, "--model", "vgg16", "--weights", "none", "--image-size", 32, "--val-split", 0.15,
          "--out", scratch / "source-head", "--overwrite", "--quiet")
    tlcli("finetune", scratch / "source-head", "--stage", SOURCE_STAGE, "--out", run, "--overwrite", "--quiet")
    return run


# --- by hand, in plain Keras ----------------------------------------------------------------


def read_split(data: Path, split: str):
    classes = sorted(path.name for path in (data / "train").iterdir())
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((data / split / name).iterdir()):
            images.append(np.asarray(Image.open(path).convert("RGB"), np.float32))
            labels.append(label)
    return np.stack(images), np.array(labels)


def by_hand(head_run: Path, data: Path, unfreeze: str, rate: float, augment: bool, seed: int,
            max_epochs: int) -> dict:
    """The head's model fine-tuned the way the Keras guide does it, scored on validation and test."""
    import keras
    import tensorflow as tf

    import tlcli.models.layers  # noqa: F401  (registers tlcli's preprocessing layer, so Keras can load the model)

    keras.utils.set_random_seed(seed)
    model = keras.models.load_model(head_run / "model.keras", compile=False)
    base = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    base.trainable = True
    for layer in base.layers:
        layer.trainable = unfreeze == "all" or layer.name.startswith(unfreeze)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = (read_split(data, split)
                                                            for split in ("train", "val", "test"))
    augmenter = keras.Sequential([keras.layers.RandomTranslation(0.1, 0.1, seed=seed),
                                  keras.layers.RandomZoom(0.1, seed=seed)])
    train = tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(len(x_train), seed=seed).batch(32)
    if augment:
        train = train.map(lambda images, labels: (augmenter(images, training=True), labels))
    model.compile(keras.optimizers.Adam(rate), "sparse_categorical_crossentropy", metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping("val_loss", patience=PATIENCE, restore_best_weights=True)
    history = model.fit(train, validation_data=(x_val, y_val), epochs=max_epochs, callbacks=[stop], verbose=0)
    val_loss, val_accuracy = model.evaluate(x_val, y_val, verbose=0)
    _, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
    return {"unfreeze": unfreeze, "rate": rate, "augment": augment, "epochs": len(history.history["loss"]),
            "val_loss": float(val_loss), "val_accuracy": float(val_accuracy), "test_accuracy": float(test_accuracy)}


def grid_row(head_run: Path, data: Path, seed: int, grid: str, max_epochs: int) -> dict:
    settings = [(unfreeze, rate, augment) for unfreeze in UNFREEZE for rate in RATES for augment in AUGMENT]
    if grid == "small":  # every layer only
        settings = [setting for setting in settings if setting[0] == "all"]
    elif grid == "recipe":  # the Keras guide's recipe (every layer, augmented) at each rate
        settings = [setting for setting in settings if setting[0] == "all" and setting[2]]
    started, results = time.perf_counter(), []
    for setting in settings:
        results.append(by_hand(head_run, data, *setting, seed=seed, max_epochs=max_epochs))
        print(f"    by hand {results[-1]}", flush=True)
    best = min(results, key=lambda result: (result["val_loss"], -result["val_accuracy"]))
    return {"settings": results, "best_on_validation": best,
            "median_test_accuracy": statistics.median(result["test_accuracy"] for result in results),
            "seconds": round(time.perf_counter() - started, 1)}


# --- the rows -------------------------------------------------------------------------------


def seed_row(data: Path, weights, work: Path, seed: int, grid: str, max_epochs: int) -> dict:
    head, tuned = work / f"head-{seed}", work / f"finetune-{seed}"
    started = time.perf_counter()
    tlcli("train", data, "--model", "vgg16", "--weights", weights, "--image-size", image_size(data),
          "--seed", seed, "--out", head, "--overwrite", "--quiet")
    head_seconds = time.perf_counter() - started
    started = time.perf_counter()
    tlcli("finetune", head, "--seed", seed, "--out", tuned, "--overwrite", "--quiet")
    finetune_seconds = time.perf_counter() - started
    row = {
        "seed": seed,
        "head": {"test_accuracy": test_accuracy(head, data), "seconds": round(head_seconds, 1)},
        "finetune": {"test_accuracy": test_accuracy(tuned, data), "seconds": round(finetune_seconds, 1),
                     "stage_rates": json.loads((tuned / "metrics.json").read_text()).get("stage_rates")},
        "lr_find": lr_find_row(head, seed, work),
    }
    print(f"  seed {seed}: head {row['head']['test_accuracy']:.3f}, finetune {row['finetune']['test_accuracy']:.3f}, "
          f"lr-find {row['lr_find']}", flush=True)
    if grid != "none":
        row["by_hand"] = grid_row(head, data, seed, grid, max_epochs)
        row["good_rates"] = good_rates(row["by_hand"]["settings"])
        print(f"  by hand (best on val) {row['by_hand']['best_on_validation']['test_accuracy']:.3f}, "
              f"good rates {row['good_rates']}", flush=True)
    return row


def lr_find_row(head: Path, seed: int, work: Path) -> dict:
    """`tlcli lr-find`'s suggestion on the head for each stage unfrozen by hand."""
    return {unfreeze: json.loads(tlcli("lr-find", head, "--unfreeze", unfreeze, "--seed", seed, "--json",
                                       "--out", work / f"lr-find-{seed}-{unfreeze}.png", "--overwrite").stdout)["suggestion"]
            for unfreeze in UNFREEZE}


def good_rates(settings: list[dict]) -> dict:
    """Per unfreezing, the grid's rates whose test accuracy is within 0.01 of the grid's best."""
    best = max(setting["test_accuracy"] for setting in settings)
    return {unfreeze: sorted({setting["rate"] for setting in settings
                              if setting["unfreeze"] == unfreeze and setting["test_accuracy"] >= best - 0.01})
            for unfreeze in UNFREEZE}


def image_size(data: Path) -> int:
    return Image.open(next((data / "train").rglob("*.png"))).size[0]


def dataset(name: str, scratch: Path) -> tuple[Path, str]:
    """(the dataset's folder, the --weights its head starts from)."""
    target = {"train": 60, "val": 20, "test": 60}
    if name == "transfer":
        return digits_split(scratch / "target", range(5, 10), target, seed=2), str(source_run(scratch))
    if name == "random":
        return digits_split(scratch / "target-random", range(5, 10), target, seed=2), "none"
    return textures(scratch / "textures"), "none"


def summary(rows: list[dict]) -> dict:
    def spread(values):
        values = list(values)
        return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                "each": values}

    head = spread(row["head"]["test_accuracy"] for row in rows)
    return {
        "head": head,
        "finetune": spread(row["finetune"]["test_accuracy"] for row in rows),
        **({
            "by_hand_best_on_validation": spread(row["by_hand"]["best_on_validation"]["test_accuracy"] for row in rows),
            "by_hand_median": spread(row["by_hand"]["median_test_accuracy"] for row in rows),
        } if all("by_hand" in row for row in rows) else {}),
        "seconds": {route: float(np.mean([row[route]["seconds"] for row in rows]))
                    for route in ("head", "finetune", "by_hand") if all(route in row for row in rows)},
    }


def print_table(results: dict) -> None:
    print("\n| dataset | head | tlcli finetune | by hand, best on val | by hand, median | "
          "finetune gain / by-hand gain | seconds: head, finetune, grid |")
    print("|---|---|---|---|---|---|---|")
    for name, result in results.items():
        s = result["summary"]
        if "by_hand_median" not in s:  # --grid none
            print(f"| {name} | {s['head']['mean']:.3f} ± {s['head']['std']:.3f} | "
                  f"{s['finetune']['mean']:.3f} ± {s['finetune']['std']:.3f} | - | - | - | "
                  f"{s['seconds']['head']:.0f}, {s['seconds']['finetune']:.0f}, - |")
            continue

        def cell(key):
            return f"{s[key]['mean']:.3f} ± {s[key]['std']:.3f}"

        gain = s["finetune"]["mean"] - s["head"]["mean"]
        reference = s["by_hand_best_on_validation"]["mean"] - s["head"]["mean"]
        ratio = f"{gain:+.3f} / {reference:+.3f}" + (f" = {gain / reference:.2f}" if reference > 0 else "")
        seconds = ", ".join(f"{s['seconds'][route]:.0f}" for route in ("head", "finetune", "by_hand"))
        print(f"| {name} | {cell('head')} | {cell('finetune')} | {cell('by_hand_best_on_validation')} | "
              f"{cell('by_hand_median')} | {ratio} | {seconds} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="transfer,random,textures")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--grid", choices=("full", "small", "recipe", "none"), default="full",
                        help="none: the head, tlcli finetune and lr-find only")
    parser.add_argument("--max-epochs", type=int, default=MAX_EPOCHS)
    parser.add_argument("--scratch", type=Path, default=None, help="keep the datasets and runs here")
    options = parser.parse_args()
    scratch = options.scratch or Path(tempfile.mkdtemp(prefix="finetune-value-"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(f"scratch: {scratch}")
    results = {}
    for name in options.datasets.split(","):
        data, weights = dataset(name, scratch)
        print(f"{name}: {data} from --weights {weights}", flush=True)
        rows = [seed_row(data, weights, scratch / name, int(seed), options.grid, options.max_epochs)
                for seed in options.seeds.split(",")]
        results[name] = {"rows": rows, "summary": summary(rows)}
    print_table(results)
    document = {"machine": machine(), "options": {**vars(options), "scratch": str(scratch)}, "results": results}
    print(f"\nwritten: {save('finetune_value', document)}")


if __name__ == "__main__":
    main()
