"""`tlcli tune`, run for real on the colour fixture with a 32x32 VGG16 of random weights: the head search,
and the fine-tuning search (`--finetune`) over the tiny run."""

from __future__ import annotations

import csv
import io
import itertools
import json
import subprocess
import sys

import pytest
import tomllib

from helpers import invoke, kill_when

COMMON = ("--model", "vgg16", "--weights", "none", "--image-size", 32, "--epochs", 2, "--quiet")


def leaderboard(tune_dir):
    return json.loads((tune_dir / "leaderboard.json").read_text())["trials"]


def write_space(path, text):
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def grid_search(colour_dataset, tmp_path_factory):
    """A 2x2 grid from a --config file: fixed settings on top, then [tune] and [space] tables."""
    root = tmp_path_factory.mktemp("tune")
    settings = write_space(root / "tune.toml", """
model = "vgg16"
weights = "none"
image-size = 32
epochs = 2
optimizer = "sgd"
[tune]
search = "grid"
[space]
learning_rate = [0.01, 0.03]
dense = [[], [8]]
""")
    tune_dir = root / "grid"
    result = invoke("tune", colour_dataset, "--config", settings, "--out", tune_dir)
    return tune_dir, result.output


def test_a_grid_runs_every_combination_exactly_once(grid_search):
    tune_dir, output = grid_search
    trials = leaderboard(tune_dir)
    expected = [{"dense": list(dense), "learning_rate": rate} for dense, rate in itertools.product([(), (8,)], [0.01, 0.03])]
    assert sorted(json.dumps(t["params"], sort_keys=True) for t in trials) == sorted(json.dumps(p, sort_keys=True) for p in expected)
    assert [t["rank"] for t in trials] == [1, 2, 3, 4]
    losses = [t["val_loss"] for t in trials]
    assert losses == sorted(losses)
    assert sorted(path.name for path in (tune_dir / "trials").iterdir()) == ["0001", "0002", "0003", "0004"]
    with open(tune_dir / "leaderboard.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["trial"] for row in rows] == [str(t["trial"]) for t in trials]
    assert {row["dense"] for row in rows} == {"none", "8"}
    assert "Leaderboard by val_loss" in output and "best.toml" in output


def test_best_toml_trains_with_tlcli_train_and_reproduces_the_best_trial(grid_search, colour_dataset, tmp_path):
    tune_dir, _ = grid_search
    best = leaderboard(tune_dir)[0]
    settings = tomllib.loads((tune_dir / "best.toml").read_text())
    assert (settings["model"], settings["weights"], settings["image_size"]) == ("vgg16", "none", 32)
    invoke("train", colour_dataset, "--config", tune_dir / "best.toml", "--out", tmp_path / "run", "--quiet")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["learning_rate"] == best["params"]["learning_rate"]
    assert config["dense"] == best["params"]["dense"]
    assert (config["model"], config["image_size"], config["epochs"], config["optimizer"]) == ("vgg16", 32, 2, "sgd")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val_loss"] == pytest.approx(best["val_loss"], rel=1e-3)


def test_an_existing_tuning_directory_is_not_overwritten(grid_search, colour_dataset):
    tune_dir, _ = grid_search
    before = (tune_dir / "leaderboard.json").read_text()
    result = invoke("tune", colour_dataset, *COMMON, "--search", "grid", "--out", tune_dir, expect=2)
    assert "already exists" in result.output and "--resume" in result.output
    assert (tune_dir / "leaderboard.json").read_text() == before


def test_random_search_repeats_under_a_seed_and_resume_skips_finished_trials(colour_dataset, tmp_path):
    space = write_space(tmp_path / "space.toml", "[space]\nlearning_rate = {low = 0.001, high = 0.1, log = true}\n"
                        "dropout = {low = 0.0, high = 0.5}\noptimizer = ['adam', 'sgd']\n")
    args = ("tune", colour_dataset, *COMMON, "--space", space, "--seed", 3, "--objective", "val_accuracy")
    invoke(*args, "--trials", 2, "--out", tmp_path / "a")
    invoke(*args, "--trials", 2, "--out", tmp_path / "b")
    first, second = leaderboard(tmp_path / "a"), leaderboard(tmp_path / "b")
    assert [t["params"] for t in first] == [t["params"] for t in second]
    assert [t["val_accuracy"] for t in first] == pytest.approx([t["val_accuracy"] for t in second])
    assert first[0]["params"] != first[1]["params"]

    result = invoke(*args, "--trials", 3, "--out", tmp_path / "a", "--resume")
    assert "1 run now, 2 earlier" in result.output
    resumed = leaderboard(tmp_path / "a")
    assert sorted(t["trial"] for t in resumed) == [1, 2, 3]
    by_trial = {t["trial"]: t for t in resumed}
    for old in first:  # finished trials are kept as they were, not run again
        assert {k: v for k, v in by_trial[old["trial"]].items() if k != "rank"} == {k: v for k, v in old.items() if k != "rank"}
    accuracies = [t["val_accuracy"] for t in resumed]
    assert accuracies == sorted(accuracies, reverse=True)

    changed = invoke(*args, "--trials", 4, "--seed", 4, "--out", tmp_path / "a", "--resume", expect=2)
    assert "other settings" in changed.output and "seed" in changed.output


def test_random_trials_are_a_seeded_prefix():
    from tlcli.tune.space import Range, plan_trials

    space = {"learning_rate": Range(1e-4, 1e-1, log=True), "dense": [(), (64,)], "batch_size": Range(8, 64, integer=True)}
    five = plan_trials(space, "random", 5, seed=1)
    assert plan_trials(space, "random", 3, seed=1) == five[:3]
    assert plan_trials(space, "random", 5, seed=2) != five
    assert all(1e-4 <= t["learning_rate"] <= 1e-1 and isinstance(t["batch_size"], int) for t in five)
    lists = {"learning_rate": [0.1, 0.01, 0.001], "dropout": [0.0, 0.5]}
    every = plan_trials(lists, "random", 6, seed=1)
    assert plan_trials(lists, "random", 2, seed=1) == every[:2]
    assert len({json.dumps(t, sort_keys=True) for t in every}) == 6  # without replacement


@pytest.mark.parametrize(
    "space, args, message",
    [
        ("lr = [0.1]\n", (), "'lr' cannot be searched"),
        ("learning_rate = {low = 0.001, high = 0.1}\n", ("--search", "grid"), "grid search needs a list"),
        ("learning_rate = {low = 0, high = 0.1, log = true}\n", (), "needs low > 0"),
        ("learning_rate = {low = 0.1, high = 0.01}\n", (), "above high"),
        ("dropout = []\n", (), "has no values"),
        ("dropout = [0.2, 1.5]\n", (), "--dropout 1.5 is out of range"),
        ("optimizer = ['adam', 'adagrad']\n", (), "'adagrad' is not one of"),
        ("learning_rate = ['fast']\n", (), "is not a number"),
        ("dense = ['wide']\n", (), "is not a list of layer sizes"),
        ("learning_rate = [0.1\n", (), "is not valid TOML"),
        ("dropout = [0.1]\n", ("--search", "annealing"), "--search 'annealing' is not one of"),
    ],
)
def test_bad_search_spaces_are_one_line_errors(colour_dataset, tmp_path, space, args, message):
    path = write_space(tmp_path / "space.toml", space)
    result = invoke("tune", colour_dataset, *COMMON, "--space", path, *args, "--out", tmp_path / "out", expect=2)
    assert message in result.output
    assert result.output.strip().startswith("Error:") and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_bad_space_file_is_named_as_the_space_option(colour_dataset, tmp_path):
    broken = write_space(tmp_path / "broken.toml", "learning_rate = [0.1\n")
    for path, what in ((tmp_path / "missing.toml", "does not exist"), (tmp_path, "is a folder"),
                       (broken, "is not valid TOML")):
        result = invoke("tune", colour_dataset, *COMMON, "--space", path, "--out", tmp_path / "out", expect=2)
        assert result.output.startswith(f"Error: --space {path} {what}") and "--config" not in result.output


def test_bayesian_search_records_each_trial_and_resumes_without_repeating(colour_dataset, tmp_path):
    space = write_space(tmp_path / "space.toml", "learning_rate = {low = 0.001, high = 0.1, log = true}\n"
                        "dense = [[], [8]]\n")
    args = ("tune", colour_dataset, *COMMON, "--search", "bayesian", "--space", space, "--out", tmp_path / "bo")
    invoke(*args, "--trials", 2)
    first = leaderboard(tmp_path / "bo")
    assert sorted(t["trial"] for t in first) == [1, 2]
    result = invoke(*args, "--trials", 3, "--resume")
    assert "1 run now, 2 earlier" in result.output
    resumed = {t["trial"]: t for t in leaderboard(tmp_path / "bo")}
    assert sorted(resumed) == [1, 2, 3]
    for old in first:
        assert resumed[old["trial"]]["seconds"] == old["seconds"] and resumed[old["trial"]]["params"] == old["params"]
    settings = tomllib.loads((tmp_path / "bo" / "best.toml").read_text())
    best = leaderboard(tmp_path / "bo")[0]["params"]
    assert (settings["learning_rate"], settings["dense"]) == (best["learning_rate"], best["dense"])


def test_an_image_size_beyond_the_backbones_maximum_is_refused_before_anything_is_written(colour_dataset, tmp_path):
    result = invoke("tune", colour_dataset, *COMMON, "--image-size", 10000, "--out", tmp_path / "out", expect=2)
    assert result.output.startswith("Error: --image-size 10000 is too large for vgg16 (maximum 1024)")
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_dataset_without_validation_images_is_refused(flat_dataset, tmp_path):
    result = invoke("tune", flat_dataset, *COMMON, "--val-split", 0, "--out", tmp_path / "out", expect=2)
    assert "has no validation images" in result.output and "--val-split" in result.output
    assert not (tmp_path / "out").exists()


def test_errors_in_a_config_files_space_table_name_the_table(colour_dataset, tmp_path):
    settings = write_space(tmp_path / "tune.toml", "[tune]\nsearch = 'grid'\n[space]\ndropout = {low = 0.0, high = 0.5}\n")
    result = invoke("tune", colour_dataset, *COMMON, "--config", settings, "--out", tmp_path / "out", expect=2)
    assert f"--config {settings} [space]: dropout is a range, but grid search needs a list" in result.output


def test_a_killed_search_resumes_without_repeating_finished_trials(colour_dataset, tmp_path):
    tune_dir = tmp_path / "killed"
    space = write_space(tmp_path / "space.toml", "learning_rate = [0.003, 0.01, 0.03, 0.1]\ndropout = [0.0, 0.2]\n")
    command = [sys.executable, "-m", "tlcli", "tune", colour_dataset, *COMMON[:-3], "--epochs", 6,
               "--early-stopping", 0, "--search", "grid", "--space", space, "--quiet", "--out", tune_dir]
    command = [str(part) for part in command]
    kill_when(command, lambda: (tune_dir / "leaderboard.json").exists() and len(leaderboard(tune_dir)) >= 2)
    before = {t["trial"]: t for t in leaderboard(tune_dir)}
    assert 2 <= len(before) < 8, "the search should have been killed mid-way"

    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "--resume" in again.stderr and "--overwrite" in again.stderr

    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    after = {t["trial"]: t for t in leaderboard(tune_dir)}
    assert sorted(after) == list(range(1, 9))
    assert all(after[number]["seconds"] == trial["seconds"] for number, trial in before.items())
    assert f"{8 - len(before)} run now, {len(before)} earlier" in resumed.stdout
    assert not (tune_dir / ".in-progress").exists()


# The fine-tuning search: `tlcli tune --finetune RUN_DIR`.


@pytest.fixture(scope="module")
def finetune_grid(tiny_run, tmp_path_factory):
    """unfreeze block5 or all x two learning rates, one epoch each, on the run's own dataset."""
    root = tmp_path_factory.mktemp("finetune-search")
    space = root / "space.toml"
    space.write_text('unfreeze = ["block5", "all"]\nlearning_rate = [1e-6, 1e-5]\n')
    tune_dir = root / "grid"
    result = invoke("tune", "--finetune", tiny_run, "--search", "grid", "--space", space, "--epochs", 1,
                    "--out", tune_dir)
    return tune_dir, result.output


def vgg16_parameters_below_block5() -> int:
    import keras

    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    return sum(layer.count_params() for layer in base.layers if layer.name.split("_")[0] in
               ("block1", "block2", "block3", "block4"))


def test_a_finetune_grid_runs_every_combination_once_with_what_each_unfroze(finetune_grid):
    tune_dir, output = finetune_grid
    trials = leaderboard(tune_dir)
    expected = [{"unfreeze": depth, "learning_rate": rate} for depth, rate in itertools.product(["block5", "all"], [1e-6, 1e-5])]
    assert sorted(json.dumps(t["params"], sort_keys=True) for t in trials) == sorted(json.dumps(p, sort_keys=True) for p in expected)
    assert sorted(path.name for path in (tune_dir / "trials").iterdir()) == ["0001", "0002", "0003", "0004"]

    trainable = {t["params"]["unfreeze"]: set() for t in trials}
    for trial in trials:
        trainable[trial["params"]["unfreeze"]].add(trial["trainable_parameters"])
    (block5,), (everything,) = trainable["block5"], trainable["all"]
    assert everything - block5 == vgg16_parameters_below_block5()

    with open(tune_dir / "leaderboard.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["unfreeze"] for row in rows} == {"block5", "all"}
    assert {int(row["trainable_parameters"]) for row in rows} == {block5, everything}
    with open(tune_dir / "trials" / f"{trials[0]['trial']:04d}" / "history.csv") as handle:
        assert [row["stage"] for row in csv.DictReader(handle)] == [f"stage1-{trials[0]['params']['unfreeze']}"]
    assert "tlcli finetune" in output and "best.toml" in output
    assert "No trial beat the run" not in output  # at 1e-6 one step of fine-tuning helps this run


def test_a_finetune_search_that_only_made_the_run_worse_says_so(tiny_run, tmp_path):
    space = write_space(tmp_path / "space.toml", 'unfreeze = ["block5"]\nlearning_rate = [0.05]\n')
    result = invoke("tune", "--finetune", tiny_run, "--search", "grid", "--space", space, "--epochs", 1,
                    "--quiet", "--out", tmp_path / "search")
    (trial,) = leaderboard(tmp_path / "search")
    before = json.loads((tiny_run / "metrics.json").read_text())["val_loss"]
    assert trial["val_loss"] > before
    assert "No trial beat the run before fine-tuning" in result.output
    assert f"the run's own {before:.4f}" in result.output


def test_best_toml_runs_with_tlcli_finetune_unchanged_and_reproduces_the_best_trial(finetune_grid, tiny_run, tmp_path):
    tune_dir, _ = finetune_grid
    best = leaderboard(tune_dir)[0]
    assert "tlcli finetune" in (tune_dir / "best.toml").read_text()
    invoke("finetune", tiny_run, "--config", tune_dir / "best.toml", "--out", tmp_path / "ft", "--quiet")
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    unfreeze, rate = best["params"]["unfreeze"], best["params"]["learning_rate"]
    assert config["stages"] == [f"{unfreeze}:1:{rate:g}"] and config["learning_rate"] == rate
    metrics = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert metrics["val_loss"] == pytest.approx(best["val_loss"], rel=1e-3)


def test_a_resumed_finetune_search_skips_finished_trials(tiny_run, tmp_path):
    space = tmp_path / "space.toml"
    space.write_text('unfreeze = ["block5", "25%"]\nlearning_rate = [1e-4, 3e-4]\n')
    args = ("tune", "--finetune", tiny_run, "--space", space, "--epochs", 1, "--seed", 1, "--quiet",
            "--out", tmp_path / "search")
    invoke(*args, "--trials", 1)
    (first,) = leaderboard(tmp_path / "search")
    result = invoke(*args, "--trials", 2, "--resume")
    assert "1 run now, 1 earlier" in result.output
    resumed = {t["trial"]: t for t in leaderboard(tmp_path / "search")}
    assert sorted(resumed) == [1, 2] and resumed[2]["params"] != first["params"]
    assert {k: v for k, v in resumed[1].items() if k != "rank"} == {k: v for k, v in first.items() if k != "rank"}


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
    ],
)
def test_bad_finetune_search_settings_are_one_line_errors(tiny_run, tmp_path, space, args, message):
    path = tmp_path / "space.toml"
    path.write_text(space)
    result = invoke("tune", "--finetune", tiny_run, "--space", path, *args, "--out", tmp_path / "out", expect=2)
    assert message in result.output
    assert result.output.strip().startswith("Error:") and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("width", [80, 200])
@pytest.mark.parametrize("params, trainable", [
    ({"learning_rate": 0.000312346, "optimizer": "rmsprop", "dropout": 0.311826, "dense": [512, 128],
      "label_smoothing": 0.1, "weight_decay": 0.0001, "activation": "leaky_relu", "batch_size": 64}, None),
    ({"learning_rate": 1e-05, "unfreeze": "block4"}, 14719818),
    ({"learning_rate": 0.000312346, "unfreeze": "block4", "epochs": 3, "optimizer": "adamw", "batch_size": 64,
      "weight_decay": 0.0001, "train_batch_norm": False}, 14719818),
])
def test_the_leaderboard_shows_every_setting_in_full(tmp_path, monkeypatch, width, params, trainable):
    from rich.console import Console

    import tlcli.commands.tune as tune_command
    from tlcli.tune.search import TuneOutcome

    terminal = Console(width=width, record=True, file=io.StringIO())
    monkeypatch.setattr(tune_command, "out", terminal)
    (tmp_path / "best.toml").write_text("")
    record = {"rank": 1, "trial": 7, "params": params, "objective": 0.1234, "best_epoch": 3, "epochs_run": 5,
              "seconds": 1.5, **({"trainable_parameters": trainable} if trainable else {})}
    tune_command.print_leaderboard(TuneOutcome(tmp_path, [record], 1, 0, "tlcli train"), "val_loss")
    table = terminal.export_text().split("Best settings")[0]
    assert "…" not in table and max(map(len, table.splitlines())) <= width
    shown = {"0.000312346": "0.0003123", "0.311826": "0.3118", "[512, 128]": "512,128"}  # 4 significant digits
    for value in [*(shown.get(str(value), str(value)) for value in params.values()), "0.1234", "3/5", "1.5s",
                  *(["14.7M"] if trainable else [])]:
        assert value in table
