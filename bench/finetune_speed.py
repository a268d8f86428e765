"""Fine-tuning through `tlcli finetune`: its speed against a plain hand-written Keras `fit`, and
its accuracy against the head alone, side by side in one run.

Speed (goal: at least 0.95 of plain Keras's images per second, after the first epoch's tracing):
for each backbone (random weights: ImageNet's cannot be downloaded here, and speed does not
depend on them), a run is trained with `tlcli train` on a few hundred of `sample_data/`'s digits
resized to 128 px, then one stage (VGG16 `block5`, ResNet50 `conv5`) is fine-tuned for a few
epochs in two ways, alternately (tlcli, plain, tlcli, plain, ...):
  - `tlcli finetune RUN --stage BLOCK:EPOCHS:1e-5 --quiet` (no progress line), as a user runs
    it otherwise; each epoch's end is read from the wall times of its TensorBoard logs;
  - plain Keras, what a user would write by hand: the run's model.keras loaded with
    `keras.saving.load_model`, the same layers unfrozen (BatchNormalization frozen), Adam at the
    same rate, categorical cross-entropy, the same batch size and the same training and
    validation images through a tf.data pipeline of decode, resize, shuffle, batch, prefetch
    (tf.data's defaults); each epoch's end timed by a callback.
Both validate on the same images after every epoch, as a user of plain Keras would. Images per
second count the training images of epochs 2 to EPOCHS over the time from the end of epoch 1 to
the end of the last: no tracing, no loading, no set-up. The seconds between the end of
validation and the end of the epoch show what each route does there (tlcli: history.csv, its
resumable backup of the weights and the optimiser, early stopping's best weights).

Quality: on `sample_data/` (digits, 300 training images, 32 px) and a few-shot copy of it (5
training images per class, the same val/ and test/), a VGG16 run (random weights) with its head
at default settings, then from it `tlcli finetune` with the stages `block5:3:RATE` and
`all:2:RATE` at a hand-picked 1e-4 and at `auto`, and with the default stages; test accuracy
from `tlcli evaluate`. A rate that `tlcli finetune` refuses (`auto` before it exists) is shown
as n/a.

Every `tlcli` command runs as a subprocess of `python -m tlcli` with PYTHONPATH set to the
checkout this script lives in, so that it measures that checkout; the plain Keras route runs in
a subprocess of this script (`--plain-worker`), so that both start equally fresh.

About 10 minutes on 2 quiet cores at the defaults (estimated from smaller runs).

    python bench/finetune_speed.py [--part speed|quality|all] [--models vgg16,resnet50] [--epochs 3]
                                   [--rounds 2] [--image-size 128] [--train-images 200] [--skip-auto]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import checkout_commit, machine, save

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = ROOT / "sample_data"
# The stage each backbone is timed on, and the first layer it unfreezes in base.layers, as
# a user reads it off model.summary() (the plain route's side of tlcli's backbone table).
SPEED_STAGES = {"vgg16": ("block5", "block5_conv1"), "resnet50": ("conv5", "conv5_block1_1_conv")}
SPEED_LEARNING_RATE = 1e-5
QUALITY_RATES = ("1e-4", "auto")


# --- running tlcli -------------------------------------------------------------------------

def tlcli(*args, check: bool = True) -> subprocess.CompletedProcess:
    """`python -m tlcli ARGS` from this checkout; a failure ends the script unless `check` is off."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-m", "tlcli", *map(str, args)], capture_output=True, text=True,
                            env=environment, cwd=ROOT, check=False)
    if check and result.returncode != 0:
        raise SystemExit(f"tlcli {' '.join(map(str, args))} failed:\n{result.stderr[-2000:]}")
    return result


def train_head(data: Path, run_dir: Path, model: str, image_size: int) -> None:
    tlcli("train", data, "--model", model, "--weights", "none", "--image-size", image_size, "--out", run_dir,
          "--overwrite", "--quiet")


def test_accuracy(run_dir: Path, data: Path) -> float:
    return json.loads(tlcli("evaluate", run_dir, data, "--json").stdout)["accuracy"]


def copy_subset(out: Path, per_class: dict[str, int | None]) -> Path:
    """A copy of `sample_data/` keeping the first `per_class[split]` images of each class in
    each split (None: all of them); splits not named are left out."""
    for split, count in per_class.items():
        for folder in sorted((SAMPLE_DATA / split).iterdir()):
            target = out / split / folder.name
            target.mkdir(parents=True, exist_ok=True)
            for image in sorted(folder.iterdir())[:count]:
                shutil.copy2(image, target / image.name)
    return out


# --- speed ---------------------------------------------------------------------------------

def epoch_times_from_logs(stage_logs: Path) -> dict:
    """Wall times at which a tlcli stage's epochs and their validations ended, from the
    TensorBoard logs Keras's callback wrote (`epoch_loss` in train/ as each epoch ends, after
    tlcli's own end-of-epoch callbacks; `evaluation_loss_vs_iterations` in validation/ as
    validation ends)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    def wall_times(folder: str, tag: str) -> list[float]:
        times = []
        for path in sorted((stage_logs / folder).glob("events.out.tfevents.*")):
            for event in EventFileLoader(str(path)).Load():
                times += [event.wall_time for value in event.summary.value if value.tag == tag]
        return sorted(times)

    return {"epoch_ends": wall_times("train", "epoch_loss"),
            "validation_ends": wall_times("validation", "evaluation_loss_vs_iterations")}


def time_tlcli(run_dir: Path, out: Path, model: str, epochs: int, batch_size: int) -> dict:
    block, _ = SPEED_STAGES[model]
    stage = f"{block}:{epochs}:{SPEED_LEARNING_RATE:g}"
    tlcli("finetune", run_dir, "--stage", stage, "--batch-size", batch_size, "--out", out, "--overwrite", "--quiet")
    times = epoch_times_from_logs(out / "logs" / f"stage1-{block}")
    shutil.rmtree(out)
    return times


def time_plain(run_dir: Path, data: Path, model: str, epochs: int, batch_size: int) -> dict:
    """The plain Keras route, in a fresh process (see `plain_keras_fit`)."""
    request = {"run_dir": str(run_dir), "data": str(data), "model": model, "epochs": epochs,
               "batch_size": batch_size, "learning_rate": SPEED_LEARNING_RATE}
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, __file__, "--plain-worker", json.dumps(request)], capture_output=True,
                            text=True, env=environment, cwd=ROOT, check=False)
    if result.returncode != 0:
        raise SystemExit(f"the plain Keras route failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def plain_keras_fit(run_dir: str, data: str, model: str, epochs: int, batch_size: int,
                    learning_rate: float) -> dict:
    """Fine-tune the run's model as a user of plain Keras would, timing each epoch's end."""
    import keras
    import tensorflow as tf

    import tlcli.models.layers  # noqa: F401  (registers tlcli's layers, so model.keras loads)

    class_names = (Path(run_dir) / "labels.txt").read_text().split()
    image_size = json.loads((Path(run_dir) / "config.json").read_text())["image_size"]

    def images(split: str, shuffle: bool):
        paths, labels = [], []
        for label, name in enumerate(class_names):
            for path in sorted((Path(data) / split / name).iterdir()):
                paths.append(str(path))
                labels.append(label)

        def load(path, label):
            image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
            image = tf.image.resize(image, [image_size, image_size])
            return image, tf.one_hot(label, len(class_names))

        dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
        if shuffle:
            dataset = dataset.shuffle(len(paths), seed=0, reshuffle_each_iteration=True)
        return dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(tf.data.AUTOTUNE)

    classifier = keras.saving.load_model(Path(run_dir) / "model.keras", compile=False)
    base = classifier.get_layer(model)
    first = [layer.name for layer in base.layers].index(SPEED_STAGES[model][1])
    base.trainable = True
    for index, layer in enumerate(base.layers):
        layer.trainable = index >= first and not isinstance(layer, keras.layers.BatchNormalization)
    classifier.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="categorical_crossentropy",
                       metrics=["accuracy"])

    class EpochTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = {"epoch_ends": [], "validation_ends": []}

        def on_test_end(self, logs=None):
            self.times["validation_ends"].append(time.time())

        def on_epoch_end(self, epoch, logs=None):
            self.times["epoch_ends"].append(time.time())

    timer = EpochTimes()
    classifier.fit(images("train", True), validation_data=images("val", False), epochs=epochs, callbacks=[timer],
                   verbose=0)
    return {**timer.times, "trainable_layers": same_layers_as_tlcli(base, model)}


def same_layers_as_tlcli(base, model: str) -> list[str]:
    """The layers trainable in the plain route, after checking them against tlcli's own rule
    (read only after the fit, so that the plain route runs no tlcli code)."""
    from tlcli.models.backbones import get_backbone
    from tlcli.training.finetune import first_unfrozen_index, unfreeze

    plain = [layer.name for layer in base.layers if layer.trainable]
    unfreeze(base, first_unfrozen_index(base, get_backbone(model), SPEED_STAGES[model][0]), False)
    expected = [layer.name for layer in base.layers if layer.trainable]
    if plain != expected:
        raise SystemExit(f"the plain route unfroze {plain}, tlcli unfreezes {expected}")
    return plain


def throughput(times: dict, train_images: int) -> dict:
    """Images per second over epochs 2..N, and the median seconds from validation's end to the
    epoch's end (what runs there: callbacks)."""
    ends, validations = times["epoch_ends"], times["validation_ends"]
    if len(ends) < 2:
        raise SystemExit("timing needs at least 2 epochs (--epochs 2 or more)")
    return {
        "images_per_second": train_images * (len(ends) - 1) / (ends[-1] - ends[0]),
        "epoch_seconds": [round(later - earlier, 3) for earlier, later in itertools.pairwise(ends)],
        "after_validation_seconds": statistics.median(end - validation for end, validation in
                                                      zip(ends[1:], validations[1:])),
    }


def measure_speed(args, scratch: Path) -> list[dict]:
    per_class = args.train_images // 10
    data = copy_subset(scratch / "speed-data", {"train": per_class, "val": max(1, per_class // 4)})
    train_images = per_class * 10
    rows = []
    for model in args.models:
        run_dir = scratch / f"speed-{model}"
        train_head(data, run_dir, model, args.image_size)
        rounds = []
        for number in range(1, args.rounds + 1):
            tlcli_times = time_tlcli(run_dir, scratch / f"speed-{model}-finetune", model, args.epochs,
                                     args.batch_size)
            plain_times = time_plain(run_dir, data, model, args.epochs, args.batch_size)
            measured = {"round": number, "tlcli": throughput(tlcli_times, train_images),
                        "plain": throughput(plain_times, train_images),
                        "trainable_layers": len(plain_times["trainable_layers"])}
            rounds.append(measured)
            print(f"  {model} round {number}: tlcli {measured['tlcli']['images_per_second']:.2f}, "
                  f"plain {measured['plain']['images_per_second']:.2f} images/s", flush=True)
        row = {"model": model, "stage": f"{SPEED_STAGES[model][0]}:{args.epochs}:{SPEED_LEARNING_RATE:g}",
               "train_images": train_images, "rounds": rounds}
        for route in ("tlcli", "plain"):
            row[route] = {key: statistics.median(measured[route][key] for measured in rounds)
                          for key in ("images_per_second", "after_validation_seconds")}
        row["ratio"] = row["tlcli"]["images_per_second"] / row["plain"]["images_per_second"]
        rows.append(row)
    return rows


SPEED_HEADER = (f"{'model':<10}{'stage':<16}{'tlcli im/s':>11}{'plain im/s':>11}{'ratio':>7}"
                f"{'tlcli s after val':>19}{'plain s after val':>19}")


def format_speed(row: dict) -> str:
    return (f"{row['model']:<10}{row['stage']:<16}{row['tlcli']['images_per_second']:>11.2f}"
            f"{row['plain']['images_per_second']:>11.2f}{row['ratio']:>7.3f}"
            f"{row['tlcli']['after_validation_seconds']:>19.2f}{row['plain']['after_validation_seconds']:>19.2f}")


# --- quality -------------------------------------------------------------------------------

def quality_datasets(scratch: Path) -> dict[str, Path]:
    return {
        "digits": SAMPLE_DATA,
        "few-shot": copy_subset(scratch / "few-shot", {"train": 5, "val": None, "test": None}),
    }


def finetune_variants(skip_auto: bool) -> dict[str, list[str] | None]:
    """Column name -> the --stage values (None: the default stages, no --stage)."""
    variants = {}
    for rate in QUALITY_RATES:
        if rate == "auto" and skip_auto:
            continue
        variants[rate] = [f"block5:3:{rate}", f"all:2:{rate}"]
    variants["default"] = None
    return variants


def finetune_and_test(source: Path, data: Path, out: Path, stages: list[str] | None) -> dict:
    """Test accuracy after `tlcli finetune`, or why tlcli refused the stages."""
    arguments = [argument for stage in stages or () for argument in ("--stage", stage)]
    result = tlcli("finetune", source, *arguments, "--out", out, "--overwrite", "--quiet", check=False)
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        return {"test_accuracy": None, "refused": lines[-1] if lines else f"exit {result.returncode}"}
    metrics = json.loads((out / "metrics.json").read_text())
    return {"test_accuracy": test_accuracy(out, data), "stages": json.loads((out / "config.json").read_text())["stages"],
            "best_epoch": metrics["best_epoch"], "epochs_run": metrics["epochs_run"]}


def measure_quality(args, scratch: Path) -> list[dict]:
    rows = []
    for name, data in quality_datasets(scratch).items():
        head_run = scratch / f"quality-{name}-head"
        train_head(data, head_run, "vgg16", 32)
        row = {"dataset": name, "model": "vgg16", "image_size": 32,
               "train_images": sum(1 for path in (data / "train").rglob("*") if path.is_file()),
               "head": {"test_accuracy": test_accuracy(head_run, data)}}
        for column, stages in finetune_variants(args.skip_auto).items():
            row[column] = finetune_and_test(head_run, data, scratch / f"quality-{name}-{column}", stages)
        rows.append(row)
        print(format_quality(row), flush=True)
    return rows


def quality_columns(rows: list[dict]) -> list[str]:
    return [column for column in ("head", *QUALITY_RATES, "default") if column in rows[0]]


def format_quality(row: dict) -> str:
    cells = [f"{row['dataset']:<10}{row['train_images']:>6}{row['head']['test_accuracy']:>7.3f}"]
    for column in quality_columns([row])[1:]:
        result = row[column]
        if result["test_accuracy"] is None:
            cells.append(f"{'n/a':>9}{'':>6}")
        else:
            cells.append(f"{result['test_accuracy']:>9.3f}{result['best_epoch']:>6}")
    return "".join(cells)


def quality_header(rows: list[dict]) -> str:
    return (f"{'dataset':<10}{'train':>6}{'head':>7}"
            + "".join(f"{column:>9}{'kept':>6}" for column in quality_columns(rows)[1:]))


QUALITY_LEGEND = "kept: the epoch whose weights fine-tuning kept (0: none, every stage rolled back to the head)"


# --- main ----------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("speed", "quality", "all"), default="all")
    parser.add_argument("--models", default="vgg16,resnet50", help="backbones timed (vgg16, resnet50)")
    parser.add_argument("--image-size", type=int, default=128, help="of the speed part")
    parser.add_argument("--train-images", type=int, default=200,
                        help="training images of the speed part (a quarter as many validate)")
    parser.add_argument("--epochs", type=int, default=3, help="per timed stage; epochs 2.. are timed")
    parser.add_argument("--rounds", type=int, default=2, help="tlcli then plain Keras, this many times")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--skip-auto", action="store_true", help="leave out the `auto` learning rate")
    parser.add_argument("--plain-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_worker:
        print(json.dumps(plain_keras_fit(**json.loads(args.plain_worker))))
        return
    args.models = args.models.split(",")
    unknown = set(args.models) - set(SPEED_STAGES)
    if unknown:
        parser.error(f"--models: {', '.join(sorted(unknown))} not timed here; use {', '.join(SPEED_STAGES)}")

    commit = checkout_commit()
    print(f"measuring {ROOT} at {commit} (plus uncommitted changes, if any)", flush=True)
    document = {"commit": commit, "settings": {key: value for key, value in vars(args).items()
                                               if key != "plain_worker"}}
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="finetune-bench-"))
    try:
        if args.part in ("speed", "all"):
            print(f"speed: {args.image_size} px, {args.train_images} training images, batch {args.batch_size}, "
                  f"epochs 2-{args.epochs} of {args.epochs} timed, {args.rounds} rounds", flush=True)
            document["speed"] = measure_speed(args, scratch)
        if args.part in ("quality", "all"):
            print("quality: VGG16, random weights, 32 px, test accuracy", flush=True)
            document["quality"] = measure_quality(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"\nat {commit}, {time.perf_counter() - started:.0f} s")
    if "speed" in document:
        print(SPEED_HEADER)
        for row in document["speed"]:
            print(format_speed(row))
    if "quality" in document:
        print(quality_header(document["quality"]))
        for row in document["quality"]:
            print(format_quality(row))
        print(QUALITY_LEGEND)
        for row in document["quality"]:
            for column in quality_columns([row]):
                if row[column].get("refused"):
                    print(f"{row['dataset']} {column}: n/a, tlcli refused: {row[column]['refused']}")
    document["machine"] = machine()
    document["seconds"] = round(time.perf_counter() - started, 1)
    print(f"written: {save('finetune_speed', document)}")


if __name__ == "__main__":
    main()
