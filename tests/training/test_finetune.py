"""Fine-tuning: stages, rollback, resume, and one-line errors for bad stages and sources."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from helpers import invoke, kill_when, read_history, runner, write_colour_dataset
from tlcli.cli import app
from tlcli.errors import TlcliError
from tlcli.models.backbones import get_backbone
from tlcli.models.saved import load_run_model


@pytest.mark.parametrize(
    "stage, message",
    [
        ("block99:1:1e-4", "'block99' is not a block of vgg16"),
        ("abc:1:x", "epochs must be a whole number"),
        ("block5:0:1e-4", "epochs and learning rate must be positive"),
        ("block5:1", "is not a stage"),
        ("999:1:1e-4", "--stage '999:1:1e-4': 999 is more layers than vgg16 has (19). Unfreeze at most 19,"),
    ],
)
def test_bad_stage_specs_are_one_line_errors(vgg16_run, tmp_path, stage, message):
    out = tmp_path / "never"
    result = runner.invoke(app, ["finetune", str(vgg16_run), "--stage", stage, "--out", str(out)])
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_stage_table_counts_match_the_model(solved_run, finetuned_run):
    from tlcli.models.weights import find_base
    from tlcli.training.finetune import count_parameters, first_unfrozen_index, unfreeze

    _, output = finetuned_run
    model, _ = load_run_model(solved_run)
    spec = get_backbone("tinynet")
    base = find_base(model, spec)
    unfreeze(base, first_unfrozen_index(base, spec, "block3"), train_batch_norm=False)
    trainable = count_parameters(model.trainable_weights)
    assert f"{trainable:,}" in output.replace("\n", " ")
    # block3 without its BatchNormalization layer, plus the head's dense layer.
    block3 = [layer for layer in base.layers if layer.name.startswith("block3_") and "_bn" not in layer.name]
    head = 32 * 3 + 3
    assert trainable == sum(count_parameters(layer.weights) for layer in block3) + head
    assert trainable == (3 * 3 * 16 * 32 + 32) + (3 * 3 * 32 * 32 + 32) + head  # block3_conv1, block3_conv2


def test_batch_norm_statistics_are_unchanged_by_fine_tuning(solved_run, finetuned_run):
    from tlcli.models.weights import find_base

    spec = get_backbone("tinynet")
    before = find_base(load_run_model(solved_run)[0], spec)
    after = find_base(load_run_model(finetuned_run[0])[0], spec)
    checked, changed_conv = [], False
    for old, new in zip(before.layers, after.layers, strict=True):
        if old.name.endswith("_bn"):
            np.testing.assert_array_equal(old.moving_mean.numpy(), new.moving_mean.numpy())
            np.testing.assert_array_equal(old.moving_variance.numpy(), new.moving_variance.numpy())
            np.testing.assert_array_equal(old.gamma.numpy(), new.gamma.numpy())
            np.testing.assert_array_equal(old.beta.numpy(), new.beta.numpy())
            checked.append(old.name)
        if old.name == "block3_conv2":
            changed_conv = not np.array_equal(old.kernel.numpy(), new.kernel.numpy())
    assert checked == ["block1_bn", "block2_bn", "block3_bn"]  # the unfrozen block3's among them
    assert changed_conv, "the unfrozen block3 should have been trained"


def test_a_stage_unfreezes_from_a_block_a_count_or_a_share_of_layers_to_the_top(tiny_run):
    from tlcli.models.weights import find_base
    from tlcli.training.finetune import first_unfrozen_index, unfreeze

    spec = get_backbone("tinynet")
    base = find_base(load_run_model(tiny_run)[0], spec)
    names = [layer.name for layer in base.layers]  # the input, then five layers a block
    assert len(names) == spec.layer_count == 16
    first = {unfreeze: first_unfrozen_index(base, spec, unfreeze) for unfreeze in ("block3", "5", "25%", "all", "99")}
    assert first == {"block3": names.index("block3_conv1"), "5": 11, "25%": 12, "all": 0, "99": 0}
    unfreeze(base, first["block3"], train_batch_norm=False)
    assert [layer.name for layer in base.layers if layer.trainable_weights] == ["block3_conv1", "block3_conv2"]
    unfreeze(base, first["block3"], train_batch_norm=True)
    assert [layer.name for layer in base.layers if layer.trainable_weights] == [
        "block3_conv1", "block3_bn", "block3_conv2"]


def test_finetune_refuses_a_folder_that_is_not_a_run_or_other_classes(tiny_run, tmp_path):
    result = runner.invoke(app, ["finetune", str(tmp_path), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "is not a tlcli run" in result.output
    other = write_colour_dataset(tmp_path / "other", per_split={"train": 2, "val": 1})
    (other / "train" / "red").rename(other / "train" / "crimson")
    (other / "val" / "red").rename(other / "val" / "crimson")
    result = runner.invoke(app, ["finetune", str(tiny_run), "--data", str(other), "--out", str(tmp_path / "y")])
    assert result.exit_code == 2 and "differ from the run's" in result.output
    assert not (tmp_path / "y").exists()
    result = runner.invoke(app, ["finetune", str(tiny_run), "--weight-decay", "0.01", "--out", str(tmp_path / "z")])
    assert result.exit_code == 2 and "--weight-decay 0.01 does nothing with --optimizer adam" in result.output
    assert not (tmp_path / "z").exists()


def test_finetune_of_an_export_folder_says_it_needs_the_run_directory(tiny_run, tmp_path):
    exported = tmp_path / "exported"
    invoke("export", tiny_run, "--format", "keras", "--no-verify", "--out", exported)
    expected = f"Error: {exported} is an export folder, not a run directory: fine-tuning needs the run's config.json"
    for command in (["finetune", exported], ["tune", "--finetune", exported]):
        result = runner.invoke(app, [*map(str, command), "--out", str(tmp_path / "never")])
        assert result.exit_code == 2 and result.output.startswith(expected), result.output
        assert "Unknown model" not in result.output and not (tmp_path / "never").exists()


def test_stage_parsing_accepts_blocks_counts_shares_and_all():
    from tlcli.training.finetune import parse_stage

    spec = get_backbone("inceptionv3")
    assert str(parse_stage("mixed9:3:1e-4", spec)) == "mixed9:3:0.0001"
    assert parse_stage("30:2:1e-5", spec).unfreeze == "30"
    assert parse_stage("25%:2:1e-5", spec).unfreeze == "25%"
    assert parse_stage("ALL:1:1e-5", spec).unfreeze == "all"
    with pytest.raises(TlcliError):
        parse_stage("150%:1:1e-5", spec)


@pytest.mark.parametrize("given", ["command line", "config file"])
def test_learning_rate_is_the_rate_of_every_stage_that_gives_none(solved_run, tmp_path, given):
    """--learning-rate 2e-4: a stage whose rate is auto trains at it, without a range test, and
    says so; a stage's own rate still wins. A --config file's learning_rate does the same."""
    settings = tmp_path / "settings.toml"
    settings.write_text("learning_rate = 2e-4\n")
    rate = ("--lr", "2e-4") if given == "command line" else ("--config", settings)
    result = invoke("finetune", solved_run, "--stage", "block3:1:auto", "--stage", "all:1:3e-5", *rate,
                    "--batch-size", 8, "--augment", "none", "--out", tmp_path / "ft")
    metrics = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    rates = {name: (entry["learning_rate"], entry["source"]) for name, entry in metrics["stage_rates"].items()}
    assert rates == {"stage1-block3": (2e-4, "--learning-rate"), "stage2-all": (3e-5, "given")}
    trained = {row["stage"]: float(row["learning_rate"]) for row in read_history(tmp_path / "ft")}
    assert trained == pytest.approx({"stage1-block3": 2e-4, "stage2-all": 3e-5})
    table = result.output.split("Stage 1", 1)[1].split("route:")[0]  # the stage's rate and where it came from
    assert "0.0002" in table and "(--learning-rate)" in table and "range test" not in result.output
    assert not list((tmp_path / "ft").glob("lr_find_*.png"))
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["learning_rate"] == 2e-4 and config["stages"] == ["block3:1:auto", "all:1:3e-05"]


@pytest.mark.parametrize("rate", ["0", "-1e-4", "fast", "nan"])
def test_a_learning_rate_that_is_not_one_is_refused_in_one_line(solved_run, tmp_path, rate):
    result = runner.invoke(app, ["finetune", str(solved_run), "--lr", rate, "--out", str(tmp_path / "ft")])
    assert result.exit_code == 2 and f'Error: --learning-rate "{rate}" is not a learning rate.' in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "ft").exists()


@pytest.mark.slow
def test_a_stage_that_ends_worse_is_rolled_back(tiny_run, tmp_path):
    result = invoke("finetune", tiny_run, "--stage", "block3:1:1e-5", "--stage", "all:1:50", "--augment", "none",
                    "--optimizer", "sgd", "--batch-size", 8, "--early-stopping", 0, "--out", tmp_path / "ft")
    assert "Stage 2 ended worse" in result.output and "rolled back" in result.output
    metrics = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    rows = read_history(tmp_path / "ft")
    assert [row["stage"] for row in rows] == ["stage1-block3", "stage2-all"]
    assert metrics["val_loss"] == pytest.approx(float(rows[0]["val_loss"]), rel=1e-3)
    source, _ = load_run_model(tiny_run)
    tuned, _ = load_run_model(tmp_path / "ft")
    assert all(layer.trainable is False for layer in tuned.get_layer("tinynet").layers[1:])
    assert source.count_params() == tuned.count_params()


@pytest.mark.slow
def test_fine_tuning_on_images_decoded_once_is_fine_tuning_on_images_decoded_every_epoch(tiny_run, tmp_path):
    # Images at the model's input size: resizing leaves their whole-number pixels as they are, so
    # the uint8 images decoded once are those decoded every epoch, and every figure must agree.
    data = write_colour_dataset(tmp_path / "data", size=(32, 32))
    common = ("--data", data, "--stage", "block3:2:1e-4", "--batch-size", 4, "--early-stopping", 0, "--augment", "none")
    once = invoke("finetune", tiny_run, *common, "--out", tmp_path / "once")
    invoke("finetune", tiny_run, *common, "--no-cache-images", "--quiet", "--out", tmp_path / "every")
    assert "Images decoded once for every epoch: 24 train + 12 val at 32x32, 0.1 MB in memory" in once.output
    assert [json.loads((tmp_path / name / "config.json").read_text())["cache_images"]
            for name in ("once", "every")] == [True, False]
    assert read_history(tmp_path / "once") == read_history(tmp_path / "every")
    for ours, theirs in zip(load_run_model(tmp_path / "once")[0].get_weights(),
                            load_run_model(tmp_path / "every")[0].get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)


# Two stages, the second cut lower than the first: a resumed run skips the finished stage and
# goes on inside the second.
TWO_STAGES = ("--stage", "block3:2:1e-4", "--stage", "block2:3:1e-5", "--batch-size", 4, "--early-stopping", 0,
              "--augment", "none")
EVERY_EPOCH = [(1, "stage1-block3"), (2, "stage1-block3"), (3, "stage2-block2"), (4, "stage2-block2"),
               (5, "stage2-block2")]


def assert_same_fine_tuning(run_dir, reference):
    rows = read_history(run_dir)
    assert [(int(row["epoch"]), row["stage"]) for row in rows] == EVERY_EPOCH
    assert rows == read_history(reference)
    for ours, theirs in zip(load_run_model(run_dir)[0].get_weights(), load_run_model(reference)[0].get_weights(),
                            strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert not (run_dir / ".in-progress").exists() and not (run_dir / ".backup").exists()


def test_finetune_interrupted_by_ctrl_c_resumes_to_the_uninterrupted_fine_tuning(solved_run, finetuned_run, tmp_path,
                                                                                 interrupt_after):
    """The in-process twin of the SIGKILL test below, interrupted in the second stage. The first
    stage is finetuned_run's own; the second (Adam at 50, everything unfrozen) ends worse and is
    rolled back, so the uninterrupted result is finetuned_run itself, to the last weight."""
    reference, _ = finetuned_run
    stopped = tmp_path / "stopped"
    args = ("finetune", solved_run, "--stage", "block3:1:1e-4", "--stage", "all:2:50", "--batch-size", 8,
            "--augment", "none", "--out", stopped)
    release = interrupt_after(2)  # the second stage's first epoch, backed up
    interrupted = invoke(*args, "--quiet", expect=130)
    release()
    assert interrupted.output.startswith(f"Error: Interrupted. {stopped} keeps the last completed epoch")
    assert [row["stage"] for row in read_history(stopped)] == ["stage1-block3", "stage2-all"]

    resumed = invoke(*args, "--resume").output
    assert "Resuming after stage 1 of 2." in resumed and "stage2-all: resuming from epoch 3." in resumed
    assert "stage1-block3" not in resumed.split("Resuming")[1]  # the finished stage is not repeated
    assert "Stage 2 ended worse" in resumed and "rolled back" in resumed
    rows = read_history(stopped)
    assert [(int(row["epoch"]), row["stage"]) for row in rows] == [(1, "stage1-block3"), (2, "stage2-all"),
                                                                      (3, "stage2-all")]
    assert rows[0] == read_history(reference)[0]
    tuned, source = load_run_model(stopped)[0], load_run_model(reference)[0]
    for ours, theirs in zip(tuned.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (stopped, reference)]
    assert metrics[0]["val_loss"] == pytest.approx(metrics[1]["val_loss"], rel=1e-6)
    assert all(layer.trainable is False for layer in tuned.get_layer("tinynet").layers[1:])  # frozen again
    assert not (stopped / ".in-progress").exists() and not (stopped / ".backup").exists()


@pytest.mark.subprocess
def test_finetune_resumed_after_sigkill_is_the_uninterrupted_fine_tuning(tiny_run, tmp_path):
    def command(out):
        return [sys.executable, "-m", "tlcli", "finetune", str(tiny_run), *map(str, TWO_STAGES), "--out", str(out)]

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    reference = subprocess.run(command(whole) + ["--quiet"], capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr
    kill_when(command(killed) + ["--quiet"], lambda: (killed / "history.csv").exists() and len(read_history(killed)) >= 3,
              timeout=180)
    assert 3 <= len(read_history(killed)) < 5  # killed in the second stage
    resumed = subprocess.run(command(killed) + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming after stage 1 of 2." in resumed.stderr
    assert "stage1-block3" not in resumed.stderr.split("Resuming")[1]  # the finished stage is not repeated
    assert_same_fine_tuning(killed, whole)


@pytest.mark.slow
def test_a_stage_on_the_frozen_parts_cached_output_trains_as_the_stage_end_to_end(tiny_run, tmp_path):
    def tune(name, *flags):
        out = tmp_path / name
        invoke("finetune", tiny_run, "--stage", "block3:2:1e-4", "--batch-size", 8, "--early-stopping", 0,
               "--augment", "none", "--quiet", "--out", out, *flags)
        route = json.loads((out / "metrics.json").read_text())["stage_rates"]["stage1-block3"]["route"]
        return read_history(out), load_run_model(out)[0].get_weights(), route

    plain = tune("plain", "--no-cache-features")
    assert plain[2] == "end to end: --no-cache-features"
    for name, memory in (("in-memory", "2"), ("spilled", "0")):
        rows, weights, route = tune(name, "--cache-memory", memory)
        assert route.startswith("cached: cut at block2_pool")
        assert ("in memory" in route) == (name == "in-memory")
        assert len(rows) == len(plain[0]) == 2
        for ours, theirs in zip(rows, plain[0]):
            for column in ("loss", "val_loss", "accuracy", "val_accuracy"):
                assert float(ours[column]) == pytest.approx(float(theirs[column]), rel=1e-4, abs=1e-6), column
        for ours, theirs in zip(weights, plain[1]):
            np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    assert list(tmp_path.glob("*/.tlcli-cache-*")) == []


@pytest.mark.slow
def test_a_stage_that_trains_the_whole_backbone_runs_end_to_end_and_says_why(tiny_run, tmp_path):
    invoke("finetune", tiny_run, "--stage", "all:1:1e-6", "--batch-size", 8, "--augment", "none", "--quiet",
           "--out", tmp_path / "ft")
    route = json.loads((tmp_path / "ft" / "metrics.json").read_text())["stage_rates"]["stage1-all"]["route"]
    assert route == "end to end: nothing below all is frozen"


@pytest.mark.parametrize("stages", [
    pytest.param(("--stage", "block3:auto:1e-4"), id="one stage of automatic length"),
    pytest.param((), id="the default stages", marks=pytest.mark.slow),
])
def test_fine_tuning_augments_by_default_for_about_500_steps_a_stage_and_says_why_it_runs_end_to_end(solved_run,
                                                                                                   tmp_path, stages):
    """After a solved head the training images are fitted to a loss near zero: fine-tuning learns
    only from new views of them, so it augments (the shift preset) unless told otherwise."""
    from tlcli.augment.config import PRESETS
    from tlcli.training.finetune import STAGE_EPOCHS

    result = invoke("finetune", solved_run, *stages, "--batch-size", 8, "--out", tmp_path / "ft")
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["augmentation"] == PRESETS["shift"].to_dict()
    assert config["stages"] == (["block3:auto:0.0001"] if stages else ["block3:auto:auto", "all:auto:auto"])
    routes = json.loads((tmp_path / "ft" / "metrics.json").read_text())["stage_rates"]
    assert routes["stage1-block3"]["route"] == "end to end: the training images are augmented, so they differ in every epoch"
    # 24 training images in batches of 8: 3 steps an epoch, so a stage takes its most epochs.
    assert " ".join(result.output.split()).count(f"│ {STAGE_EPOCHS[1]} │") == len(config["stages"])
    assert 2 <= len(read_history(tmp_path / "ft")) <= len(config["stages"]) * STAGE_EPOCHS[1]


def test_fine_tuning_augments_as_the_source_run_did_or_as_told(colour_dataset, tmp_path):
    from tlcli.augment.config import PRESETS

    invoke("train", colour_dataset, "--model", "tinynet", "--weights", "none", "--image-size", 32, "--augment", "light",
           "--epochs", 1, "--quiet", "--out", tmp_path / "light")
    stage = ("--stage", "block3:1:1e-4", "--batch-size", 8, "--quiet")
    invoke("finetune", tmp_path / "light", *stage, "--out", tmp_path / "inherited")
    invoke("finetune", tmp_path / "light", *stage, "--augment", "none", "--zoom", 0.2, "--out", tmp_path / "told")
    (tmp_path / "settings.toml").write_text('[augmentation]\naugment = "shift"\nrotation = 0.05\n')
    invoke("finetune", tmp_path / "light", *stage, "--config", tmp_path / "settings.toml", "--out", tmp_path / "file")

    def augmentation(name):
        return json.loads((tmp_path / name / "config.json").read_text())["augmentation"]

    assert augmentation("inherited") == PRESETS["light"].to_dict()
    assert augmentation("told") == {**PRESETS["none"].to_dict(), "zoom": 0.2}
    assert augmentation("file") == {**PRESETS["shift"].to_dict(), "rotation": 0.05}
