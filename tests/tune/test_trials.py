"""What every search shares: its settings, checked once, and the validation images its trials
are compared on."""

from __future__ import annotations

import json

import pytest

from helpers import invoke
from tlcli.errors import TlcliError
from tlcli.tune.space import Range
from tlcli.tune.trials import TuneConfig

COMMON = ("--model", "tinynet", "--weights", "none", "--image-size", 32, "--epochs", 2, "--quiet")


@pytest.mark.parametrize("settings, message", [
    ({"search": "annealing"}, "--search 'annealing' is not one of: grid, random, bayesian, hyperband."),
    ({"objective": "accuracy"}, "--objective 'accuracy' is not one of: val_loss, val_accuracy."),
    ({"trials": 0}, "--trials 0 is out of range: it must be at least 1."),
], ids=["search", "objective", "trials"])
def test_search_settings_are_checked_before_any_trial(colour_dataset, settings, message):
    from tlcli.tune.head import settings_from

    base = settings_from({"model": "tinynet", "weights": "none"}, colour_dataset)
    with pytest.raises(TlcliError) as error:
        TuneConfig(base=base, **settings)
    assert str(error.value) == message


def test_a_search_is_described_as_resume_compares_it(colour_dataset, tiny_run, tmp_path):
    from tlcli.tune import finetune, head

    base = head.settings_from({"model": "tinynet", "weights": "none", "dense": "8"}, colour_dataset)
    config = TuneConfig(base=base, space={"learning_rate": Range(1e-4, 1e-2, log=True), "dense": [(), (8,)]},
                        search="random", trials=3, out=tmp_path / "out")
    description = config.description()
    assert config.kind == "head" and description["kind"] == "head"
    assert description["space"] == {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}, "dense": [[], [8]]}
    assert "out" not in description["base"] and description["base"]["dense"] == [8]
    assert json.loads(json.dumps(description)) == description  # what tune.json holds and reads back
    assert "trials" not in description  # a resumed search may run more of them
    fine = TuneConfig(base=finetune.settings_from({}, None, tiny_run), space={"unfreeze": ["block3"]})
    assert fine.kind == "finetune" and fine.description()["base"]["source"] == str(tiny_run)


def test_a_dataset_without_validation_images_is_refused(flat_dataset, tmp_path):
    result = invoke("tune", flat_dataset, *COMMON, "--val-split", 0, "--out", tmp_path / "out", expect=2)
    assert "has no validation images" in result.output and "--val-split" in result.output
    assert not (tmp_path / "out").exists()
