"""The learning-rate range test's suggestion: the valley rule on the smoothed loss."""

from __future__ import annotations

import numpy as np
import pytest

from tlcli.training.range_test import LOSS_FLOOR, diverged, smooth, valley


def test_the_valley_is_halfway_down_the_longest_fall_before_the_loss_turns():
    rates = np.geomspace(1e-7, 1, 60)
    # Flat, then falling from 1e-5 to 1e-3, then blowing up.
    losses = np.where(rates < 1e-5, 1.0, np.where(rates < 1e-3, 1.0 - 0.5 * np.log10(rates / 1e-5) / 2, 0.5))
    losses = np.where(rates > 2e-3, 0.5 * (rates / 2e-3) ** 2, losses)
    index = valley(losses[: int(np.argmin(losses)) + 1])

    assert index is not None and 1e-5 <= rates[index] <= 1e-3
    assert losses[index] < 1.0 and losses[index] > losses.min()


@pytest.mark.parametrize("curve", ["flat", "noisy", "rising"])
def test_no_valley_when_the_loss_never_falls(curve):
    rng = np.random.default_rng(0)
    losses = {
        "flat": 1.0 + 0.001 * rng.standard_normal(50),
        "noisy": 1.0 + 0.3 * rng.standard_normal(50),  # small batches: a 5% fall is noise here
        "rising": np.linspace(1.0, 3.0, 50),
    }[curve]
    assert valley(smooth(losses), losses) is None


def test_smoothing_starts_at_the_first_loss_and_follows_a_constant():
    np.testing.assert_allclose(smooth(np.array([2.0, 2.0, 2.0])), [2.0, 2.0, 2.0])
    assert smooth(np.array([1.0, 3.0]))[0] == 1.0


def test_a_loss_near_zero_that_wobbles_up_has_not_diverged():
    """A solved head fits its training images to a loss of about 2e-4: the old rule (four times the
    lowest) called a wobble to 8e-4 a blow-up and ended the test before any useful rate."""
    assert not diverged(8e-4, lowest=2e-4, first=2e-4)
    assert not diverged(0.15, lowest=2e-4, first=2e-4)  # still below four times the floor
    assert diverged(4 * LOSS_FLOOR + 0.01, lowest=2e-4, first=2e-4)
    assert diverged(2.5, lowest=0.5, first=0.6) and not diverged(1.9, lowest=0.5, first=0.6)
    assert not diverged(2.5, lowest=0.5, first=3.0), "not above where it began"


def test_a_low_first_batch_of_a_noisy_curve_is_neither_its_lowest_nor_a_blow_up():
    """On augmented batches one batch's loss may be a third of the rest (seen on a fine-tuned
    VGG16's digits: 0.11, then 0.15 to 0.45): the range test once took a low first batch for the
    curve's lowest point and called the ordinary noise after it a blow-up."""
    from types import SimpleNamespace

    from tlcli.training.range_test import _Recorder

    rng = np.random.default_rng(0)
    losses = [0.1, *np.clip(rng.normal(0.35, 0.1, 60), 0.12, None)]
    recorder = _Recorder(np.geomspace(1e-7, 1e-5, len(losses)))
    recorder.set_model(SimpleNamespace(stop_training=False))
    for epoch, loss in enumerate(losses):
        recorder.on_epoch_end(epoch, {"loss": float(loss)})
    assert not recorder.blew_up and len(recorder.losses) == len(losses)

    recorder = _Recorder(np.geomspace(1e-7, 1.0, 40))  # and a real blow-up still stops it
    recorder.set_model(SimpleNamespace(stop_training=False))
    for epoch, loss in enumerate([0.35] * 20 + [0.35 * 2 ** step for step in range(1, 20)]):
        recorder.on_epoch_end(epoch, {"loss": loss})
        if recorder.blew_up:
            break
    assert recorder.blew_up and 20 < len(recorder.losses) < 39
