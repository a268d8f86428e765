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
