"""A search's results: each trial's record, ranked, written as JSON, CSV and best.toml's TOML,
and the leaderboard table `tlcli tune` prints."""

from __future__ import annotations

import csv
import io
import json

import pytest
import tomllib

from tlcli.tune.leaderboard import (
    format_epochs,
    format_score,
    rank,
    read_leaderboard,
    to_toml,
    trial_record,
    write_leaderboard,
)


def finished_trial(number: int, val_loss: float, val_accuracy: float) -> dict:
    metrics = {"val_loss": val_loss, "val_accuracy": val_accuracy, "best_epoch": 2, "epochs_run": 4, "seconds": 1.0}
    return trial_record(number, {"learning_rate": 0.01 * number}, metrics, "val_loss")


def test_trials_rank_best_first_by_the_objective_and_a_diverged_one_last():
    records = [finished_trial(1, 0.5, 0.8), finished_trial(2, float("nan"), 0.3), finished_trial(3, 0.2, 0.8),
               finished_trial(4, 0.5, 0.9)]
    assert records[1]["objective"] is None and records[1]["val_loss"] is None  # NaN is not a score
    by_loss = rank(records, "val_loss")
    assert [r["trial"] for r in by_loss] == [3, 1, 4, 2]  # equal losses: the earlier trial first
    assert [r["rank"] for r in by_loss] == [1, 2, 3, 4]
    by_accuracy = rank([{**r, "objective": r["val_accuracy"]} for r in records], "val_accuracy")
    assert [r["trial"] for r in by_accuracy] == [4, 1, 3, 2]


def test_a_solved_trial_records_its_penalty_instead_of_epochs():
    solved = trial_record(1, {"dropout": 0.0}, {"val_loss": 0.1, "val_accuracy": 1.0, "seconds": 0.5,
                                                "solver": {"penalty_C": 3.0, "folds": 5}}, "val_loss")
    assert solved["penalty_C"] == 3.0 and "solver" not in solved and format_epochs(solved) == "solved"
    per_label = trial_record(2, {}, {"val_loss": 0.1, "seconds": 0.5, "solver": {
        "one_vs_rest": True, "per_label": [{"penalty_C": 1.0}, None, {"penalty_C": 10.0}]}}, "val_loss")
    assert per_label["penalty_C"] == [1.0, None, 10.0]  # a label without images has none
    assert format_epochs(finished_trial(3, 0.2, 0.9)) == "2/4"


def test_scores_show_four_decimals_or_four_digits_once_they_blow_up():
    assert (format_score(0.123456), format_score(None), format_score(3.2e7)) == ("0.1235", "diverged", "3.2e+07")


def test_the_leaderboard_is_written_and_read_back(tmp_path):
    records = [finished_trial(1, 0.5, 0.8), finished_trial(2, 0.25, 0.9)]
    records[1]["params"] = {"dense": [512, 128], "optimizer": "sgd"}
    written = write_leaderboard(tmp_path, records, "val_loss", "random")
    document = json.loads((tmp_path / "leaderboard.json").read_text())
    assert (document["objective"], document["direction"], document["search"]) == ("val_loss", "minimise", "random")
    assert document["trials"] == written and [r["trial"] for r in written] == [2, 1]
    assert read_leaderboard(tmp_path) == [{k: v for k, v in r.items() if k != "rank"} for r in written]
    rows = list(csv.DictReader(io.StringIO((tmp_path / "leaderboard.csv").read_text())))
    assert [row["trial"] for row in rows] == ["2", "1"]
    # Every searched setting has a column, empty where a trial did not set it.
    assert (rows[0]["dense"], rows[0]["optimizer"], rows[0]["learning_rate"]) == ("512,128", "sgd", "")
    assert (rows[1]["learning_rate"], rows[1]["val_loss"], rows[1]["epochs_run"]) == ("0.01", "0.5", "4")
    assert read_leaderboard(tmp_path / "nothing-yet") == []


def test_best_toml_reads_back_as_the_settings_it_was_written_from():
    settings = {"model": "tinynet", "dense": [512, 128], "learning_rate": 0.000312346, "epochs": None,
                "multi_label": False, "seed": 0, "data": 'C:\\images "new"', "stages": ["block3:1:1e-05"],
                "momentum": 1e-300}
    text = to_toml(settings, "Best of 4 trial(s).\nRun it with: tlcli train --config best.toml DATA")
    assert text.startswith("# Best of 4 trial(s).\n# Run it with:")
    assert tomllib.loads(text) == {key: value for key, value in settings.items() if value is not None}


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
