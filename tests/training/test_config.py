"""Training settings: every option checked once, with a one-line error naming it."""

from __future__ import annotations

import dataclasses

import pytest

from tlcli.errors import TlcliError
from tlcli.training.config import FitConfig, TrainConfig, parse_dense, split_fit_settings


@pytest.mark.parametrize("value, layers", [
    ("512,128", (512, 128)), (" 64 , 8 ", (64, 8)), ([256], (256,)), (256, (256,)),
    ("", ()), ("none", ()), (None, ()), (0, ()), ([], ()), ("8,", (8,)),
])
def test_dense_layers_read_from_the_command_line_or_toml(value, layers):
    assert parse_dense(value) == layers


@pytest.mark.parametrize("value, message", [
    ("12,x", "--dense '12,x' is not a list of layer sizes. Use e.g. --dense 256 or --dense 512,128."),
    ("64,0", "--dense '64,0': layer sizes must be positive. Use e.g. --dense 256."),
    ([-8], "--dense [-8]: layer sizes must be positive."),
])
def test_a_bad_head_layout_is_refused(value, message):
    with pytest.raises(TlcliError) as error:
        parse_dense(value)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize("settings, message", [
    ({"optimizer": "adagrad"}, "--optimizer 'adagrad' is not one of: adam, adamw, sgd, rmsprop."),
    ({"schedule": "step"}, "--schedule 'step' is not one of: constant, cosine, plateau."),
    ({"class_weight": "inverse"}, "--class-weight 'inverse' is not one of: none, balanced."),
    ({"learning_rate": 0.0}, "--learning-rate 0.0 is out of range: it must be more than 0."),
    ({"epochs": 0}, "--epochs 0 is out of range: it must be at least 1."),
    ({"batch_size": 0}, "--batch-size 0 is out of range: it must be at least 1."),
    ({"early_stopping": -1}, "--early-stopping -1 is out of range: it must be at least 0."),
    ({"weight_decay": -0.1}, "--weight-decay -0.1 is out of range: it must be at least 0."),
    ({"label_smoothing": 1.0}, "--label-smoothing 1.0 is out of range. Use a value in [0, 1)."),
])
def test_bad_fitting_settings_are_refused_naming_the_option(settings, message):
    with pytest.raises(TlcliError) as error:
        FitConfig(**settings)
    assert str(error.value) == message


def test_bad_training_settings_are_refused_naming_the_option(colour_dataset):
    def refused(**settings) -> str:
        with pytest.raises(TlcliError) as error:
            TrainConfig(data=colour_dataset, **{"model": "tinynet", **settings})
        return str(error.value)

    assert refused(model="resnet18").startswith("Unknown model 'resnet18'")
    assert refused(dropout=1.0) == "--dropout 1.0 is out of range. Use a value in [0, 1)."
    assert refused(head_solver="newton").startswith("--head-solver 'newton' is not one of: auto, lbfgs, gradient.")
    assert refused(activation="swish").startswith("--activation 'swish' is not one of:")
    assert "--multi-label needs a label file" in refused(multi_label=True)


def test_a_config_is_written_flat_and_read_back(colour_dataset):
    config = TrainConfig(data=colour_dataset, model="tinynet", dense=(8,), fit=FitConfig(learning_rate=0.01, epochs=3))
    document = config.to_dict()
    assert "fit" not in document
    assert (document["learning_rate"], document["epochs"], document["dense"]) == (0.01, 3, (8,))
    rest, fit = split_fit_settings(document)
    assert fit == config.fit and TrainConfig(**rest, fit=fit) == config
    assert set(rest) == {field.name for field in dataclasses.fields(TrainConfig)} - {"fit"}
