"""The fine-tuning search (`tlcli tune --finetune RUN_DIR`): how deep to unfreeze a trained run,
and at what rate; its best.toml is for `tlcli finetune RUN_DIR --config`."""

from __future__ import annotations

import csv
import itertools
import json

import pytest
import tomllib

from helpers import invoke, read_history
from tlcli.tune.leaderboard import read_leaderboard


@pytest.fixture(scope="module")
def finetune_grid(tiny_run, tmp_path_factory):
    """unfreeze block3 or all x two learning rates, one epoch each, on the run's own dataset."""
    root = tmp_path_factory.mktemp("finetune-search")
    space = root / "space.toml"
    space.write_text('unfreeze = ["block3", "all"]\nlearning_rate = [1e-6, 1e-5]\n')
    tune_dir = root / "grid"
    result = invoke("tune", "--finetune", tiny_run, "--search", "grid", "--space", space, "--epochs", 1,
                    "--out", tune_dir)
    return tune_dir, result.output


def tinynet_parameters_below_block3() -> int:
    """What unfreezing everything trains beyond block3: the convolutions of block1 and block2
    (BatchNormalization stays frozen), counted on a TinyNet built afresh."""
    import keras

    from tiny_backbone import TinyNet

    below = [layer for layer in TinyNet(input_shape=(32, 32, 3)).layers if layer.name.split("_")[0] in ("block1", "block2")]
    return sum(layer.count_params() for layer in below if not isinstance(layer, keras.layers.BatchNormalization))


def test_a_finetune_grid_runs_every_combination_once_with_what_each_unfroze(finetune_grid):
    tune_dir, output = finetune_grid
    trials = json.loads((tune_dir / "leaderboard.json").read_text())["trials"]
    expected = [{"unfreeze": depth, "learning_rate": rate} for depth, rate in itertools.product(["block3", "all"], [1e-6, 1e-5])]
    assert sorted(json.dumps(t["params"], sort_keys=True) for t in trials) == sorted(json.dumps(p, sort_keys=True) for p in expected)
    assert sorted(path.name for path in (tune_dir / "trials").iterdir()) == ["0001", "0002", "0003", "0004"]

    trainable = {t["params"]["unfreeze"]: set() for t in trials}
    for trial in trials:
        trainable[trial["params"]["unfreeze"]].add(trial["trainable_parameters"])
    (block3,), (everything,) = trainable["block3"], trainable["all"]
    assert everything - block3 == tinynet_parameters_below_block3() == (3 * 3 * 3 * 8 + 8) + (3 * 3 * 8 * 8 + 8) + (
        3 * 3 * 8 * 16 + 16) + (3 * 3 * 16 * 16 + 16)

    with open(tune_dir / "leaderboard.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["unfreeze"] for row in rows} == {"block3", "all"}
    assert {int(row["trainable_parameters"]) for row in rows} == {block3, everything}
    with open(tune_dir / "trials" / f"{trials[0]['trial']:04d}" / "history.csv") as handle:
        assert [row["stage"] for row in csv.DictReader(handle)] == [f"stage1-{trials[0]['params']['unfreeze']}"]
    assert "tlcli finetune" in output and "best.toml" in output
    assert "No trial beat the run" not in output  # at 1e-6 one step of fine-tuning helps this run


def test_a_finetune_search_that_only_made_the_run_worse_says_so(tiny_run, tmp_path):
    space = tmp_path / "space.toml"
    space.write_text('unfreeze = ["block3"]\nlearning_rate = [0.05]\n')
    result = invoke("tune", "--finetune", tiny_run, "--search", "grid", "--space", space, "--epochs", 1,
                    "--quiet", "--out", tmp_path / "search")
    (trial,) = read_leaderboard(tmp_path / "search")
    before = json.loads((tiny_run / "metrics.json").read_text())["val_loss"]
    assert trial["val_loss"] > before
    assert "No trial beat the run before fine-tuning" in result.output
    assert f"the run's own {before:.4f}" in result.output


def test_best_toml_runs_with_tlcli_finetune_unchanged_and_reproduces_the_best_trial(finetune_grid, tiny_run, tmp_path):
    tune_dir, _ = finetune_grid
    best = json.loads((tune_dir / "leaderboard.json").read_text())["trials"][0]
    assert "tlcli finetune" in (tune_dir / "best.toml").read_text()
    invoke("finetune", tiny_run, "--config", tune_dir / "best.toml", "--out", tmp_path / "ft", "--quiet")
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    unfreeze, rate = best["params"]["unfreeze"], best["params"]["learning_rate"]
    assert config["stages"] == [f"{unfreeze}:1:{rate:g}"] and config["learning_rate"] == rate
    metrics = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert metrics["val_loss"] == pytest.approx(best["val_loss"], rel=1e-3)


def test_a_finetune_searchs_options_reach_its_trials_and_best_toml_replays_them(tiny_run, tmp_path):
    """tune --finetune takes finetune's optimisation and augmentation options: the trial fits with
    them (its rate decayed from --lr by the cosine schedule), best.toml keeps them ([augmentation] a table), and
    `tlcli finetune --config best.toml` replays the trial to the same validation loss."""
    from tlcli.augment.config import PRESETS

    space = tmp_path / "space.toml"
    space.write_text('unfreeze = ["block3"]\n')
    result = invoke("tune", "--finetune", tiny_run, "--search", "grid", "--space", space, "--epochs", 1,
                    "--lr", 1e-4, "--optimizer", "sgd", "--momentum", 0.5, "--schedule", "cosine", "--batch-size", 8,
                    "--augment", "none", "--flip", "horizontal", "--strategy", "one-device", "--out", tmp_path / "search")
    best_toml = tmp_path / "search" / "best.toml"
    best = tomllib.loads(best_toml.read_text())
    assert (best["optimizer"], best["momentum"], best["schedule"], best["batch_size"]) == ("sgd", 0.5, "cosine", 8)
    assert best["stages"] == ["block3:1:0.0001"]
    assert best["augmentation"] == {**PRESETS["none"].to_dict(), "flip": "horizontal"}
    trial = read_history(tmp_path / "search" / "trials" / "0001")
    rates = [float(row["learning_rate"]) for row in trial]
    assert rates[0] < 1e-4  # the rate as the epoch ended: cosine's, decayed from --lr
    assert "Strategy one-device: 1 replica(s)" in result.output and "batch 8 per replica" in result.output

    invoke("finetune", tiny_run, "--config", best_toml, "--out", tmp_path / "ft", "--quiet")
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["augmentation"] == best["augmentation"] and config["schedule"] == "cosine"
    replayed = read_history(tmp_path / "ft")  # the stage's epochs, even if it is then rolled back
    for column in ("learning_rate", "loss", "val_loss"):
        assert [float(row[column]) for row in replayed] == pytest.approx([float(row[column]) for row in trial], rel=1e-4)


@pytest.mark.slow
def test_a_resumed_finetune_search_skips_finished_trials(tiny_run, tmp_path):
    space = tmp_path / "space.toml"
    space.write_text('unfreeze = ["block3", "25%"]\nlearning_rate = [1e-4, 3e-4]\n')
    args = ("tune", "--finetune", tiny_run, "--space", space, "--epochs", 1, "--seed", 1, "--quiet",
            "--out", tmp_path / "search")
    invoke(*args, "--trials", 1)
    (first,) = read_leaderboard(tmp_path / "search")
    result = invoke(*args, "--trials", 2, "--resume")
    assert "1 run now, 1 earlier" in result.output
    resumed = {t["trial"]: t for t in read_leaderboard(tmp_path / "search")}
    assert sorted(resumed) == [1, 2] and resumed[2]["params"] != first["params"]
    assert resumed[1] == first


@pytest.mark.parametrize(
    "space, args, message",
    [
        ('unfreeze = ["block5", "block9"]\n', (), "unfreeze 'block9' is not a block of vgg16 (block1,"),
        ("unfreeze = [2.5]\n", (), "unfreeze value 2.5 is not a block name, a layer count"),
        ('unfreeze = ["150%"]\n', (), "unfreeze '150%' is not a block of vgg16"),
        ("unfreeze = [20]\n", (), "unfreeze 20 is more layers than vgg16 has (19)"),
        ("weight_decay = [0.001]\n", (), 'Set optimizer = "adamw"'),
        ("learning_rate = [0.001]\n", ("--model", "vgg16"), "--model does not go with --finetune"),
        ("epochs = [1, 2]\n", ("--search", "hyperband"), "epochs cannot be searched by hyperband"),
        ("learning_rate = [0.001]\n", ("--dense", "8"), "--dense does not go with --finetune: the backbone, weights, "
                                                        "image size, pooling, head and data split are those of"),
    ],
)
def test_bad_finetune_search_settings_are_one_line_errors(vgg16_run, tmp_path, space, args, message):
    path = tmp_path / "space.toml"
    path.write_text(space)
    result = invoke("tune", "--finetune", vgg16_run, "--space", path, *args, "--out", tmp_path / "out", expect=2)
    assert message in result.output
    assert result.output.strip().startswith("Error:") and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_trial_is_one_stage_of_the_runs_fine_tuning(tiny_run):
    from tlcli.models.backbones import get_backbone
    from tlcli.tune.finetune import default_space, settings_from, trial_config

    spec = get_backbone("tinynet")
    base = settings_from({"batch_size": 8, "epochs": None, "optimizer": "adamw", "weight_decay": 1e-4}, None, tiny_run)
    trial = trial_config(base, {"unfreeze": "25%", "learning_rate": 3e-5, "epochs": 2}, spec)
    assert trial.stages == ("25%:2:3e-05",) and trial.fit.batch_size == 8 and trial.fit.weight_decay == 1e-4
    assert trial_config(base, {"learning_rate": 1e-6}, spec).stages == ("block3:10:1e-06",)  # the top block, 10 epochs
    # Weight decay acts only through AdamW: a trial that searches another optimiser drops it.
    assert trial_config(base, {"optimizer": "sgd"}, spec).fit.weight_decay == 0.0
    assert default_space("grid", spec) == {"unfreeze": ["block3", "block2", "all"], "learning_rate": [1e-6, 1e-5]}
