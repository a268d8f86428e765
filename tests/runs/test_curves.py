"""The run's plots, as a user reads them: curves.png (loss and accuracy per epoch, a dotted line
and the stage's name where a fine-tuning stage begins), penalty.png and lr_find.png."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tlcli.runs import curves


@pytest.fixture
def drawn(monkeypatch):
    """Every figure the module saves, looked at as it is saved (and saved as usual)."""
    figures = []
    save = curves._save

    def looking(figure, path):
        figures.append([{
            "title": axis.get_title(),
            "lines": [(list(line.get_xdata()), list(line.get_ydata()), line.get_label(), line.get_linestyle())
                      for line in axis.get_lines()],
            "texts": [(text.get_position()[0], text.get_text()) for text in axis.texts],
            "xscale": axis.get_xscale(),
        } for axis in figure.axes])
        save(figure, path)

    monkeypatch.setattr(curves, "_save", looking)
    return figures


def history_row(epoch, stage, loss, accuracy, val_loss="", val_accuracy=""):
    """A row as history.csv holds it: strings, empty where there was no value."""
    return {"epoch": str(epoch), "stage": stage, "loss": str(loss), "accuracy": str(accuracy),
            "val_loss": str(val_loss), "val_accuracy": str(val_accuracy)}


def test_curves_show_every_epoch_and_mark_where_each_stage_begins(drawn, tmp_path):
    rows = [history_row(1, "train", 1.0, 0.4, 1.1, 0.3), history_row(2, "train", 0.8, 0.6, 0.9, 0.5),
            history_row(3, "stage1-block3", 0.5, 0.8, 0.7, 0.7), history_row(4, "stage2-block2", 0.4, 0.9)]
    curves.plot_curves(rows, tmp_path / "curves.png")
    with Image.open(tmp_path / "curves.png") as picture:
        assert picture.format == "PNG" and picture.size == (1000, 400)
    (loss, accuracy), = drawn
    assert (loss["title"], accuracy["title"]) == ("loss", "accuracy")
    assert loss["lines"][:2] == [([1, 2, 3, 4], [1.0, 0.8, 0.5, 0.4], "loss", "-"),
                                 ([1, 2, 3], [1.1, 0.9, 0.7], "val loss", "--")]  # epoch 4 has no val_loss
    assert accuracy["lines"][0][1] == [0.4, 0.6, 0.8, 0.9]
    boundaries = [line[0] for line in loss["lines"][2:]]
    assert boundaries == [[2.5, 2.5], [3.5, 3.5]] and all(line[3] == ":" for line in loss["lines"][2:])
    assert loss["texts"] == [(3, "stage1-block3"), (4, "stage2-block2")]


def test_a_training_without_validation_plots_its_training_curves_alone(drawn, tmp_path):
    curves.plot_curves([history_row(1, "train", 0.7, 0.5)], tmp_path / "curves.png")
    (loss, accuracy), = drawn
    assert [line[2] for line in loss["lines"]] == ["loss"] and [line[2] for line in accuracy["lines"]] == ["accuracy"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["curves.png"]


def test_the_penalty_path_marks_the_chosen_penalty_and_is_skipped_without_one(drawn, tmp_path):
    from tlcli.training.head_solver import LinearSolution

    path = [{"C": 0.1, "cv_accuracy": 0.6, "cv_log_loss": 0.9}, {"C": 1.0, "cv_accuracy": 0.8, "cv_log_loss": 0.5},
            {"C": 10.0, "cv_accuracy": 0.7, "cv_log_loss": 0.7}]
    weights = (np.zeros((4, 2), np.float32), np.zeros(2, np.float32))
    curves.plot_penalty_path(LinearSolution(*weights, penalty=1.0, folds=5, path=path), tmp_path / "penalty.png")
    (accuracy, log_loss), = drawn
    assert accuracy["title"] == "5-fold cross-validated accuracy" and accuracy["xscale"] == "log"
    assert accuracy["lines"][0][:2] == ([0.1, 1.0, 10.0], [0.6, 0.8, 0.7])
    assert log_loss["lines"][0][1] == [0.9, 0.5, 0.7]
    assert accuracy["lines"][1][0] == [1.0, 1.0] and accuracy["lines"][1][2] == "chosen C = 1"
    assert (tmp_path / "penalty.png").read_bytes()[:4] == b"\x89PNG"

    curves.plot_penalty_path(LinearSolution(*weights, penalty=1.0, folds=0), tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists() and len(drawn) == 1


@pytest.mark.parametrize("suggestion, title", [
    (0.01, "Suggested rate 0.01 (steepest rule); the test blew up"),
    (None, "The loss never rose: none suggested; the test blew up"),
])
def test_the_range_test_plot_names_its_suggestion_or_says_there_is_none(drawn, tmp_path, suggestion, title):
    from tlcli.training.range_test import RangeTest

    rates = np.geomspace(1e-4, 1.0, 5)
    losses = np.array([1.0, 0.9, 0.6, 0.8, 3.0])
    test = RangeTest(rates, losses, losses.copy(), suggestion, "blew up", rule="steepest")
    curves.plot_range_test(test, tmp_path / "lr_find.png")
    (axis,), = drawn
    assert axis["title"] == title and axis["xscale"] == "log"
    assert [line[2] for line in axis["lines"]] == ["loss of each step", "smoothed loss"] + (
        ["suggested 0.01"] if suggestion else [])
    assert (tmp_path / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
