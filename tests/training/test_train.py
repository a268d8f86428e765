"""`tlcli train`: routes, heads, seeds, resume and one-line errors, run for real on tiny fixtures."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from helpers import TINY_TRAIN, invoke, kill_when, read_history, run_with_model, runner, write_colour_dataset
from tlcli.cli import app
from tlcli.errors import TlcliError
from tlcli.models.backbones import CLASSIC_NAMES, get_backbone
from tlcli.models.saved import load_run_model
from tlcli.runtime import import_keras
from tlcli.training.head_solver import STD_FLOOR

RUN_FILES = {"config.json", "labels.txt", "model.keras", "history.csv", "curves.png", "metrics.json", "logs"}
SOLVED_RUN_FILES = {".tlcli", "config.json", "labels.txt", "model.keras", "metrics.json", "penalty.png"}
TINY = TINY_TRAIN[:-1]  # TinyNet from random weights at 32 px, not --quiet


@pytest.mark.slow
@pytest.mark.parametrize("name", CLASSIC_NAMES)
def test_train_then_finetune_every_backbone(trained_runs, name):
    train_dir, tune_dir, _ = trained_runs[name]
    # The linear head is solved: no epochs, so no history; the penalty's cross-validation instead.
    assert {path.name for path in train_dir.iterdir()} == SOLVED_RUN_FILES
    assert RUN_FILES <= {path.name for path in tune_dir.iterdir()}
    assert not (tune_dir / ".in-progress").exists() and not (tune_dir / ".backup").exists()
    config = json.loads((train_dir / "config.json").read_text())
    assert config["model"] == name and config["route"] == "solved (L-BFGS)"
    assert config["class_names"] == ["blue", "green", "red"]
    assert config["counts"]["train"] == {"blue": 8, "green": 8, "red": 8}
    assert [row["stage"] for row in read_history(tune_dir)] == [f"stage1-{get_backbone(name).blocks[-1].name}"]
    model, info = load_run_model(tune_dir)
    size = get_backbone(name).min_size
    probabilities = np.asarray(model(np.full((2, size, size, 3), 128.0, np.float32), training=False))
    assert probabilities.shape == (2, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert info.class_names == ("blue", "green", "red")


def test_weights_from_a_run_directory_transfer_the_trained_backbone(finetuned_run, solved_run, tmp_path):
    from tlcli.models.weights import find_base

    source = finetuned_run[0]
    dataset = write_colour_dataset(tmp_path / "new_task", per_split={"train": 3, "val": 2})
    target = tmp_path / "transferred"
    invoke("train", dataset, "--model", "tinynet", "--weights", source, "--image-size", 40,
           "--epochs", 1, "--out", target, "--quiet")
    spec = get_backbone("tinynet")
    old = find_base(load_run_model(source)[0], spec).get_weights()
    new = find_base(load_run_model(target)[0], spec).get_weights()
    for expected, actual in zip(old, new, strict=True):
        np.testing.assert_array_equal(expected, actual)
    # The fine-tuned backbone, not the one it was fine-tuned from.
    before = find_base(load_run_model(solved_run)[0], spec).get_weights()
    assert any(not np.array_equal(first, second) for first, second in zip(before, new, strict=True))


@pytest.mark.slow
def test_cached_and_end_to_end_gradient_routes_train_the_same_model(colour_dataset, tmp_path):
    common = (*TINY_TRAIN, "--epochs", 12, "--head-solver", "gradient", "--learning-rate", 0.03, "--batch-size", 8,
              "--early-stopping", 0)
    invoke("train", colour_dataset, *common, "--out", tmp_path / "cached")
    # Images decoded every epoch, in float32 as the features were computed (decoded once, they
    # are rounded to uint8: the next test).
    invoke("train", colour_dataset, *common, "--no-cache-features", "--no-cache-images", "--out", tmp_path / "e2e")
    routes = [json.loads((tmp_path / name / "config.json").read_text())["route"] for name in ("cached", "e2e")]
    assert routes == ["cached features", "end to end"]
    # The same shuffles, initial weights and standardization: only float rounding differs (the
    # features are computed in other batches), which Adam's per-weight scaling lets grow to
    # about 1e-3 in weights whose gradients are nearly zero.
    for cached, end_to_end in zip(*(read_history(tmp_path / name) for name in ("cached", "e2e")), strict=True):
        assert float(cached["val_loss"]) == pytest.approx(float(end_to_end["val_loss"]), rel=1e-3, abs=1e-5)
    first, second = load_run_model(tmp_path / "cached")[0], load_run_model(tmp_path / "e2e")[0]
    for expected, actual in zip(first.get_layer("head").get_weights(), second.get_layer("head").get_weights(), strict=True):
        np.testing.assert_allclose(actual, expected, atol=2e-3)


@pytest.mark.slow
def test_images_decoded_once_train_the_model_that_decoding_every_epoch_trains(colour_dataset, tmp_path):
    common = (*TINY, "--epochs", 4, "--dense", 8, "--augment", "light", "--learning-rate", 0.01, "--batch-size", 4,
              "--early-stopping", 0)

    def train_twice(data, folder):
        once = invoke("train", data, *common, "--out", folder / "once")
        invoke("train", data, *common, "--no-cache-images", "--quiet", "--out", folder / "every")
        assert "Images decoded once for every epoch: 24 train + 12 val at 32x32, 0.1 MB in memory" in once.output
        assert [json.loads((folder / name / "config.json").read_text())["cache_images"]
                for name in ("once", "every")] == [True, False]
        return [read_history(folder / name) for name in ("once", "every")]

    # Images at the model's input size: resizing leaves their whole-number pixels as they are, so
    # the uint8 images decoded once are those decoded every epoch, and with the same shuffles,
    # augmentation and initial weights every figure and every weight must agree.
    exact = write_colour_dataset(tmp_path / "exact", size=(32, 32))
    once, every = train_twice(exact, tmp_path / "exact-runs")
    assert once == every
    for ours, theirs in zip(*(load_run_model(tmp_path / "exact-runs" / name)[0].get_weights()
                              for name in ("once", "every")), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    # These 20x20 images are enlarged to 32x32, and the images decoded once are rounded to uint8,
    # at most half a level from the float32 resize: losses move by about a thousandth (a few
    # percent of a loss near zero). (TinyNet's first epochs sit near chance, where so small a
    # change may flip an image's class, so the accuracies are compared on the images above.)
    for once_row, every_row in zip(*train_twice(colour_dataset, tmp_path / "enlarged-runs"), strict=True):
        for key in ("loss", "val_loss"):
            assert float(once_row[key]) == pytest.approx(float(every_row[key]), rel=0.02, abs=0.005)


@pytest.mark.slow
def test_same_seed_gives_the_same_history(colour_dataset, tmp_path):
    args = (*TINY_TRAIN, "--epochs", 3, "--dense", "16", "--dropout", 0.2)
    invoke("train", colour_dataset, *args, "--seed", 5, "--out", tmp_path / "a")
    invoke("train", colour_dataset, *args, "--seed", 5, "--out", tmp_path / "b")
    invoke("train", colour_dataset, *args, "--seed", 6, "--out", tmp_path / "c")
    strip = lambda rows: [{k: v for k, v in row.items()} for row in rows]  # noqa: E731
    assert strip(read_history(tmp_path / "a")) == strip(read_history(tmp_path / "b"))
    assert read_history(tmp_path / "a") != read_history(tmp_path / "c")
    # Fine-tuning the dropout head repeats too.
    for name in ("fine-a", "fine-b"):
        invoke("finetune", tmp_path / "a", "--stage", "block3:2:0.001", "--seed", 5, "--quiet", "--out", tmp_path / name)
    assert read_history(tmp_path / "fine-a") == read_history(tmp_path / "fine-b")


def test_config_file_supplies_options_and_the_command_line_wins(colour_dataset, tmp_path):
    settings = tmp_path / "settings.toml"
    settings.write_text('model = "tinynet"\nweights = "none"\nimage-size = 32\nepochs = 2\n'
                        'dense = [8]\noptimizer = "sgd"\nlearning_rate = 0.05\n')
    invoke("train", colour_dataset, "--config", settings, "--epochs", 1, "--out", tmp_path / "run", "--quiet")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["model"], config["image_size"], config["dense"], config["optimizer"]) == ("tinynet", 32, [8], "sgd")
    assert config["learning_rate"] == 0.05 and config["epochs"] == 1
    assert len(read_history(tmp_path / "run")) == 1


# Dropout, augmentation, early stopping and a plateau schedule: every kind of state that a resumed
# run must bring back (random state, data order, callbacks' counters, optimiser).
STATEFUL_TRAIN = (*TINY, "--epochs", 6, "--dense", 8, "--dropout", 0.5, "--augment", "light", "--schedule", "plateau",
                  "--early-stopping", 4, "--learning-rate", 0.01, "--batch-size", 4, "--seed", 3)


def assert_same_run(run_dir, reference):
    """Every epoch's losses, accuracies and learning rate, and every weight, are the reference's."""
    assert read_history(run_dir) == read_history(reference)
    for ours, theirs in zip(load_run_model(run_dir)[0].get_weights(), load_run_model(reference)[0].get_weights(),
                            strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert not (run_dir / ".in-progress").exists() and not (run_dir / ".backup").exists()


def test_a_run_interrupted_by_ctrl_c_resumes_to_the_uninterrupted_run(colour_dataset, tmp_path, interrupt_after):
    """The in-process twin of the SIGKILL test below: the same backup, read by the same --resume."""
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    invoke("train", colour_dataset, *STATEFUL_TRAIN, "--quiet", "--out", whole)
    release = interrupt_after(3)
    interrupted = invoke("train", colour_dataset, *STATEFUL_TRAIN, "--quiet", "--out", stopped, expect=130)
    release()
    assert interrupted.output.startswith(f"Error: Interrupted. {stopped} keeps the last completed epoch")
    assert len(read_history(stopped)) == 3 and (stopped / ".in-progress").exists()

    again = invoke("train", colour_dataset, *STATEFUL_TRAIN, "--out", stopped, expect=2)
    assert "--resume" in again.output and "--overwrite" in again.output
    changed = invoke("train", colour_dataset, *STATEFUL_TRAIN, "--seed", 4, "--out", stopped, "--resume", expect=2)
    assert "the settings differ from the interrupted run" in changed.output and "seed" in changed.output

    resumed = invoke("train", colour_dataset, *STATEFUL_TRAIN, "--out", stopped, "--resume")
    assert "train: resuming from epoch 4." in resumed.output
    assert_same_run(stopped, whole)


def test_a_finished_run_replaced_with_overwrite_is_kept_until_the_new_one_finishes(solved_run, colour_dataset,
                                                                                   tmp_path, interrupt_after):
    run = shutil.copytree(solved_run, tmp_path / "run")
    (run / "notes.txt").write_text("mine")
    old_model = (run / "model.keras").read_bytes()
    gradient = (*TINY, "--augment", "light", "--epochs", 3, "--learning-rate", 0.01, "--batch-size", 8, "--quiet", "--out", run)
    release = interrupt_after(1)
    interrupted = invoke("train", colour_dataset, *gradient, "--overwrite", expect=130)
    release()
    aside = list(tmp_path.glob(".run.replaced-*"))
    assert len(aside) == 1 and (aside[0] / "model.keras").read_bytes() == old_model, "the finished run is kept"
    assert f"the finished one it replaces is kept in {aside[0]} until it finishes" in " ".join(interrupted.output.split())
    assert (run / "notes.txt").read_text() == "mine" and not (aside[0] / "notes.txt").exists()

    invoke("train", colour_dataset, *gradient, "--resume")
    assert not list(tmp_path.glob(".run.*")), "the run it replaced goes once the new one finishes"
    assert (run / "notes.txt").read_text() == "mine" and (run / "model.keras").read_bytes() != old_model


@pytest.mark.subprocess
def test_a_run_resumed_after_sigkill_is_the_uninterrupted_run(colour_dataset, tmp_path):
    def command(out):
        return [str(part) for part in (sys.executable, "-m", "tlcli", "train", colour_dataset, *STATEFUL_TRAIN,
                                       "--out", out)]

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    reference = subprocess.run(command(whole) + ["--quiet"], capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr
    kill_when(command(killed) + ["--quiet"], lambda: (killed / "history.csv").exists() and len(read_history(killed)) >= 2)
    done = len(read_history(killed))
    assert 2 <= done < 6, "the run should have been killed mid-way"

    again = subprocess.run(command(killed), capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "--resume" in again.stderr and "--overwrite" in again.stderr

    resumed = subprocess.run(command(killed) + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    # History is written just before the backup, so a kill between the two repeats that epoch.
    assert re.search(rf"train: resuming from epoch ({done}|{done + 1})\.", resumed.stderr), resumed.stderr
    assert_same_run(killed, whole)


@pytest.mark.subprocess
def test_a_resumed_run_still_ends_on_its_best_epoch(colour_dataset, tmp_path):
    # Validation images filed under the wrong colours: the better the head fits the training
    # images, the worse it does on these, so the best epoch comes before the interruption.
    data = tmp_path / "data"
    shutil.copytree(colour_dataset / "train", data / "train")
    for true, filed_as in (("red", "green"), ("green", "blue"), ("blue", "red")):
        shutil.copytree(colour_dataset / "val" / true, data / "val" / filed_as)
    run_dir = tmp_path / "run"
    command = [str(part) for part in (sys.executable, "-m", "tlcli", "train", data, *TINY_TRAIN, "--epochs", 8,
                                      "--early-stopping", 20, "--learning-rate", 0.03, "--no-cache-features",
                                      "--batch-size", 4, "--out", run_dir)]
    kill_when(command, lambda: (run_dir / "history.csv").exists() and len(read_history(run_dir)) >= 3)
    assert 3 <= len(read_history(run_dir)) < 8
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    rows = read_history(run_dir)
    best = min(rows, key=lambda row: float(row["val_loss"]))
    assert int(best["epoch"]) <= 3 < len(rows) == 8
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["best_epoch"] == int(best["epoch"])
    assert metrics["val_loss"] == pytest.approx(float(best["val_loss"]), rel=1e-4)


@pytest.mark.parametrize(
    "args, message",
    [
        (("--model", "resnet18"), "Unknown model 'resnet18'"),
        (("--model", "xception", "--image-size", 64), r"--image-size 64 is too small for xception \(minimum 71\)"),
        (("--model", "vgg16", "--image-size", 10000), r"--image-size 10000 is too large for vgg16 \(maximum 1024\)"),
        (("--model", "vgg16", "--pooling", "median"), "--pooling 'median' is not one of: avg, max, flatten"),
        (("--model", "vgg16", "--dense", "12,x"), "--dense '12,x' is not a list of layer sizes"),
        (("--model", "vgg16", "--epochs", 0), "--epochs 0 is out of range"),
        (("--model", "vgg16", "--weights", "missing.h5"), "--weights missing.h5: no such file"),
    ],
)
def test_bad_training_options_are_one_line_errors(colour_dataset, tmp_path, args, message):
    out = tmp_path / "never"
    result = runner.invoke(app, ["train", str(colour_dataset), "--out", str(out), *map(str, args)])
    assert result.exit_code == 2
    assert message.replace("\\", "") in result.output or re.search(message, result.output)
    assert not out.exists()


def test_weights_from_a_damaged_run_name_the_option(tiny_run, colour_dataset, tmp_path):
    model = (tiny_run / "model.keras").read_bytes()
    damaged = run_with_model(tiny_run, tmp_path / "damaged", model[: len(model) // 3])
    result = runner.invoke(app, ["train", str(colour_dataset), "--model", "tinynet", "--image-size", "32",
                                 "--weights", str(damaged), "--out", str(tmp_path / "never")])
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: --weights {damaged} is not a Keras model (a zip archive)")
    assert result.output.count("\n") == 1
    assert not (tmp_path / "never").exists()


def test_an_existing_run_directory_is_not_overwritten(tiny_run, colour_dataset):
    before = sorted(path.name for path in tiny_run.iterdir())
    result = runner.invoke(app, ["train", str(colour_dataset), *map(str, TINY), "--out", str(tiny_run)])
    assert result.exit_code == 2 and "already exists" in result.output and "--overwrite" in result.output
    assert sorted(path.name for path in tiny_run.iterdir()) == before


def test_training_with_augmentation_goes_end_to_end_and_says_so(colour_dataset, tmp_path):
    settings = tmp_path / "settings.toml"
    settings.write_text('[augmentation]\naugment = "light"\nnoise = 0.02\n')
    result = invoke("train", colour_dataset, *TINY, "--epochs", 1, "--config", settings, "--rotation", 0.2,
                    "--out", tmp_path / "run")
    assert "Training the head by gradient (end to end): augmentation is on" in result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["route"] == "end to end"
    assert config["augmentation"]["rotation"] == 0.2 and config["augmentation"]["noise"] == 0.02
    assert config["augmentation"]["flip"] == "horizontal"  # from the light preset


@pytest.fixture(scope="module")
def few_shot_run(tmp_path_factory):
    """Default `tlcli train` on ten digit classes with six training images each, its TinyNet's
    feature map flattened (the digits' blank borders leave some of its features nearly
    constant), and the pooled features of every split computed from the saved model."""
    from helpers import write_digits_dataset
    from tlcli.data.dataset import SplitOptions, load_dataset
    from tlcli.models.features import extract_features

    root = tmp_path_factory.mktemp("few-shot")
    data = write_digits_dataset(root / "data", {"train": 6, "val": 3, "test": 10})
    invoke("train", data, *TINY_TRAIN, "--pooling", "flatten", "--out", root / "run")
    model, _ = load_run_model(root / "run")
    keras = import_keras()
    extractor = keras.Model(model.input, model.get_layer("flatten_pool").output)
    dataset = load_dataset(data, SplitOptions(0.2, 0.0, 0))
    features = {split: extract_features(extractor, dataset.split(split), 32) for split in ("train", "val", "test")}
    return root / "run", model, features


def test_the_saved_model_gives_the_solvers_probabilities(few_shot_run):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    run_dir, model, features = few_shot_run
    solver = json.loads((run_dir / "metrics.json").read_text())["solver"]
    assert solver["folds"] == 5 and solver["penalty_C"] > 0 and (run_dir / "penalty.png").is_file()
    train, test = features["train"], features["test"]
    scaler = StandardScaler().fit(train.features.astype(np.float64))
    mean, std = model.get_layer("head").get_layer("standardization").get_weights()
    np.testing.assert_allclose(mean, scaler.mean_, rtol=1e-5, atol=1e-7)
    floor = STD_FLOOR * np.median(scaler.scale_[scaler.var_ > 0])
    assert (scaler.scale_ < floor).any()  # features at the blank borders are nearly dead: the floor acts
    np.testing.assert_allclose(std, np.maximum(scaler.scale_, floor), rtol=1e-5)

    def standardized(features):
        return (features.astype(np.float64) - mean) / std

    reference = LogisticRegression(C=solver["penalty_C"], max_iter=5000, tol=1e-10)
    reference.fit(standardized(train.features), train.labels)
    expected = reference.predict_proba(standardized(test.features))
    head = model.get_layer("head")
    np.testing.assert_allclose(np.asarray(head(test.features, training=False)), expected, atol=1e-5)


def test_default_training_reaches_the_cross_validated_logistic_regression_on_few_images(few_shot_run):
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _, model, features = few_shot_run
    train, test = features["train"], features["test"]
    reference = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=np.logspace(-4, 4, 17), cv=5, max_iter=5000))
    reference_accuracy = reference.fit(train.features, train.labels).score(test.features, test.labels)
    head = model.get_layer("head")
    accuracy = np.mean(np.asarray(head(test.features, training=False)).argmax(1) == test.labels)
    assert reference_accuracy > 0.3  # far above chance (0.1): random features still separate digits
    assert accuracy >= reference_accuracy - 0.02


def test_a_class_with_one_training_image_is_noted_and_still_trained(tmp_path):
    data = write_colour_dataset(tmp_path / "data", {"train": 5, "val": 2})
    for extra in sorted((data / "train" / "red").iterdir())[1:]:
        extra.unlink()
    result = invoke("train", data, *TINY, "--out", tmp_path / "run")
    assert "single training image" in result.output and "C=1" in result.output
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["solver"]["folds"] == 0


def test_settings_the_solver_cannot_express_train_by_gradient_and_say_why(colour_dataset, tmp_path):
    common = (*TINY, "--epochs", 2)
    result = invoke("train", colour_dataset, *common, "--label-smoothing", 0.1, "--out", tmp_path / "smooth")
    assert ("Training the head by gradient (cached features): --label-smoothing 0.1 has no "
            "logistic-regression equivalent") in result.output
    assert len(read_history(tmp_path / "smooth")) == 2

    refused = runner.invoke(app, ["train", str(colour_dataset), *map(str, common), "--head-solver", "lbfgs",
                                  "--dense", "8", "--out", str(tmp_path / "never")])
    assert refused.exit_code == 2 and "--head-solver lbfgs" in refused.output and "--dense 8" in refused.output
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("settings, augmentation, route, reason", [
    ({}, {}, "solved (L-BFGS)", None),
    ({"dense": (8, 4)}, {}, "cached features", "the head has hidden layers (--dense 8,4)"),
    ({"dropout": 0.3}, {}, "cached features", "--dropout 0.3 has no logistic-regression equivalent"),
    ({}, {"flip": "horizontal"}, "end to end", "augmentation is on"),
    ({"cache_features": False}, {}, "end to end", "--no-cache-features trains through the backbone"),
    ({"fit": {"optimizer": "adamw", "weight_decay": 0.01}}, {}, "cached features",
     "AdamW's decoupled weight decay has no logistic-regression equivalent"),
    ({"fit": {"weight_decay": 0.01}}, {}, "solved (L-BFGS)", None),  # an L2 penalty: the solver's own
    ({"head_solver": "gradient"}, {}, "cached features", None),
], ids=["linear", "dense", "dropout", "augmentation", "no cache", "adamw", "l2", "gradient asked for"])
def test_the_head_is_solved_unless_a_setting_has_no_logistic_regression_equivalent(colour_dataset, settings,
                                                                                   augmentation, route, reason):
    from tlcli.augment.config import AugmentConfig
    from tlcli.training.config import FitConfig, TrainConfig
    from tlcli.training.train import head_route

    head = {key: value for key, value in settings.items() if key != "fit"}
    config = TrainConfig(data=colour_dataset, model="tinynet", fit=FitConfig(**settings.get("fit", {})), **head)
    chosen, why = head_route(config, AugmentConfig(**augmentation))
    assert chosen == route
    if reason is None:
        assert why is None
    else:
        assert why.startswith(f"Training the head by gradient ({route}): {reason}")
    if settings.get("dense"):  # --head-solver lbfgs cannot solve what auto would not
        with pytest.raises(TlcliError, match="--head-solver lbfgs solves a linear head on cached features"):
            head_route(dataclasses.replace(config, head_solver="lbfgs"), AugmentConfig(**augmentation))


def test_options_a_solved_head_does_not_read_are_named(colour_dataset, tmp_path):
    result = invoke("train", colour_dataset, *TINY, "--learning-rate", 0.01, "--epochs", 30, "--out", tmp_path / "run")
    assert ("the linear head is solved, not trained, so --epochs, --learning-rate play(s) no part; "
            "add --head-solver gradient") in result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["route"] == "solved (L-BFGS)"
