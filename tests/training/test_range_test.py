"""The learning-rate range test's suggestion: the edge rule (a third of the rate at which the loss rose)."""

from __future__ import annotations

import numpy as np
import pytest

from tlcli.training.range_test import LOSS_FLOOR, SETTLED, diverged, edge, smooth, suggest

RATES = np.geomspace(1e-7, 1, 100)


def _fitted_head_curve(seed: int = 0) -> np.ndarray:
    """A fitted head's loss on augmented batches, as measured on a transfer (bench/finetune_value.py):
    scattered between 0.1 and 0.5 with no fall, until it climbs from 6e-5."""
    rng = np.random.default_rng(seed)
    losses = np.clip(rng.normal(0.28, 0.12, len(RATES)), 0.05, None)
    return np.where(RATES > 6e-5, 0.3 * (RATES / 6e-5) ** 2, losses)


def test_the_suggestion_on_a_fitted_heads_scatter_is_a_third_of_where_it_climbs():
    """The valley rule read this scatter as a fall and suggested about 1.5e-6 on the real curves."""
    for seed in range(5):
        losses = _fitted_head_curve(seed)
        rate = suggest(RATES, losses)
        assert rate is not None and 6e-5 / 3 <= rate <= 2e-4 / 3, seed


def test_a_falling_then_climbing_loss_is_suggested_below_where_it_climbs():
    losses = np.where(RATES < 1e-5, 2.0, np.clip(2.0 - 0.6 * np.log10(RATES / 1e-5), 0.3, None))
    losses = np.where(RATES > 3e-3, 0.3 * (RATES / 3e-3) ** 3, losses)
    index = edge(losses)
    assert index is not None and RATES[index] > 3e-3  # past the lowest loss, where it climbs
    assert suggest(RATES, losses) == pytest.approx(RATES[index] / 3) and suggest(RATES, losses) < 3e-3


def test_one_bad_batch_is_not_a_rise():
    losses = np.full(60, 0.3)
    losses[30] = 5.0
    assert edge(losses) is None and suggest(RATES[:60], losses) is None


@pytest.mark.parametrize("curve", ["flat", "falling"])
def test_no_suggestion_when_the_loss_never_rises(curve):
    losses = {"flat": np.full(100, 1.0), "falling": np.linspace(2.0, 0.5, 100)}[curve]
    assert suggest(RATES, losses) is None


def test_a_loss_that_turned_infinite_rose_at_the_next_rate():
    losses = _fitted_head_curve()[:40]  # the scatter, then nan at step 40
    assert edge(losses, blew_up=True) == 40
    assert suggest(RATES, losses, blew_up=True) == pytest.approx(RATES[40] / 3)


def test_a_loss_that_rose_at_once_suggests_nothing():
    losses = np.concatenate([np.full(SETTLED, 0.3), np.full(20, 5.0)])
    rates = np.geomspace(1.0, 10.0, len(losses))  # a third of the first rate is below the test's start
    assert edge(losses) == SETTLED and suggest(rates, losses) is None


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


def test_a_near_zero_loss_rises_only_past_the_floor():
    """From 2e-4, a rise to 8e-4 is noise, not the edge: the edge is judged against LOSS_FLOOR."""
    losses = np.full(60, 2e-4)
    losses[20:] = 8e-4
    assert edge(losses) is None
    losses[40:] = 4 * LOSS_FLOOR
    assert edge(losses) == 40


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
