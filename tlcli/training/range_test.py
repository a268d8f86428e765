"""The learning-rate range test (Smith, 2017; fastai's `lr_find`): which rate to fine-tune at.

The rate grows exponentially, one optimiser step at a time, from `start` to `end`, while the
training loss is recorded; it stops once the loss blows up. The model's weights are put back
afterwards, so the test changes nothing. The suggestion follows the valley rule: the longest
stretch over which the smoothed loss keeps falling, and the rate halfway along it, where the loss
falls steadily, well before it turns.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from tlcli.runtime import import_keras
from tlcli.training.config import FitConfig
from tlcli.training.fit import compile_model

keras = import_keras()

START, END, STEPS = 1e-7, 1.0, 100
SMOOTHING = 0.9  # the exponential moving average's weight on the past (about a 10-step window)
BLOW_UP = 4.0  # stop when the smoothed loss exceeds this many times its lowest value (and its first)
# ... or this many times LOSS_FLOOR, when the lowest is below it: a head fitted to a loss near zero
# (2e-4 on its training images) wobbles to four times that at harmless rates, which is no divergence.
LOSS_FLOOR = 0.05  # nats: the right class at about 95%
# The lowest and the first smoothed loss are read once the average has seen this many steps: before,
# it is a few batches' losses, and on augmented batches one of them may be a third of the rest.
SETTLED = 10
MIN_FALL = 0.05  # a suggestion needs the loss to fall by 5% or more along the valley
RULE = "valley"


@dataclass(frozen=True)
class RangeTest:
    rates: np.ndarray  # one per step taken
    losses: np.ndarray  # the training loss of each step
    smoothed: np.ndarray
    suggestion: float | None  # None when the loss never fell
    stopped: str  # "blew up" or "reached the end"
    rule: str = RULE

    def to_dict(self) -> dict:
        return {
            "suggestion": self.suggestion, "rule": self.rule, "stopped": self.stopped, "steps": len(self.rates),
            "rates": self.rates.tolist(), "losses": self.losses.tolist(), "smoothed": self.smoothed.tolist(),
        }


def smooth(losses: np.ndarray, weight: float = SMOOTHING) -> np.ndarray:
    """The bias-corrected exponential moving average, as fastai draws it."""
    average, smoothed = 0.0, np.empty(len(losses))
    for index, loss in enumerate(losses):
        average = weight * average + (1 - weight) * loss
        smoothed[index] = average / (1 - weight ** (index + 1))
    return smoothed


def valley(smoothed: np.ndarray, losses: np.ndarray | None = None) -> int | None:
    """The index halfway along the longest stretch of falling loss (the longest decreasing
    subsequence of the smoothed loss); None unless the loss clearly fell along it (see _fell)."""
    if len(smoothed) < 3:
        return None
    longest = np.ones(len(smoothed), int)  # the longest falling run ending at each index
    start_of = np.arange(len(smoothed))
    for index in range(1, len(smoothed)):
        for earlier in range(index):
            if smoothed[index] < smoothed[earlier] and longest[earlier] + 1 > longest[index]:
                longest[index], start_of[index] = longest[earlier] + 1, start_of[earlier]
    end = int(np.argmax(longest))
    begin = int(start_of[end])
    if end - begin < 3 or not _fell((smoothed if losses is None else losses)[begin : end + 1]):
        return None
    return begin + (end - begin) // 2


def _fell(losses: np.ndarray) -> bool:
    """Whether the steps' losses at the end of a stretch are below those at its start by MIN_FALL
    and by twice the standard error of the difference: small batches scatter the loss of each
    step, and a smoothed curve through scatter still has stretches that seem to fall."""
    quarter = max(2, len(losses) // 4)
    first, last = losses[:quarter], losses[-quarter:]
    fall = float(np.mean(first) - np.mean(last))
    error = float(np.sqrt((np.var(first, ddof=1) + np.var(last, ddof=1)) / quarter))
    return fall > MIN_FALL * float(np.mean(first)) and fall > 2 * error


def range_test(model, batches, fit: FitConfig, *, start: float = START, end: float = END,
               steps: int = STEPS) -> RangeTest:
    """Run the range test on `model` (compiled here with fit's optimiser, at a constant rate set
    before each step) over endless `batches`; the weights are restored afterwards."""
    rates = start * (end / start) ** (np.arange(steps) / max(1, steps - 1))
    weights = model.get_weights()
    recorder = _Recorder(rates)
    with model.distribute_strategy.scope():
        compile_model(model, dataclasses.replace(fit, schedule="constant"), float(rates[0]), steps)
    try:
        # One step an epoch: each epoch's loss is its one batch's, and a callback sets the rate between.
        model.fit(batches, epochs=steps, steps_per_epoch=1, verbose=0, callbacks=[recorder])
    finally:
        model.set_weights(weights)
    losses = np.asarray(recorder.losses)
    smoothed = smooth(losses)
    turn = _lowest_before_blow_up(smoothed) + 1
    index = valley(smoothed[:turn], losses[:turn]) if len(losses) else None
    return RangeTest(
        rates[: len(losses)], losses, smoothed, None if index is None else float(rates[index]),
        "blew up" if recorder.blew_up else "reached the end",
    )


def _lowest_before_blow_up(smoothed: np.ndarray) -> int:
    """The last index before the loss starts its final climb (the whole curve if it never does),
    the average settled (SETTLED steps) or not, for a short curve."""
    settled = SETTLED - 1 if len(smoothed) > SETTLED else 0
    return settled + int(np.argmin(smoothed[settled:])) if len(smoothed) else 0


class _Recorder(keras.callbacks.Callback):
    def __init__(self, rates: np.ndarray):
        super().__init__()
        self.rates, self.losses, self.blew_up = rates, [], False
        self._average, self._lowest, self._first = 0.0, np.inf, np.inf

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate.assign(float(self.rates[epoch]))

    def on_epoch_end(self, epoch, logs=None):
        loss = float(logs["loss"])
        if not np.isfinite(loss):
            self.blew_up, self.model.stop_training = True, True
            return
        self.losses.append(loss)
        self._average = SMOOTHING * self._average + (1 - SMOOTHING) * loss
        smoothed = self._average / (1 - SMOOTHING ** len(self.losses))
        if len(self.losses) < SETTLED:
            return
        self._lowest = min(self._lowest, smoothed)
        self._first = smoothed if len(self.losses) == SETTLED else self._first
        if diverged(smoothed, self._lowest, self._first):
            self.blew_up, self.model.stop_training = True, True


def diverged(smoothed: float, lowest: float, first: float) -> bool:
    """Whether the smoothed loss has blown up: BLOW_UP times its lowest (or LOSS_FLOOR, if the
    lowest is below it), and above where it began: a loss that fell to nearly 0 may wobble up and
    mean nothing."""
    return smoothed > BLOW_UP * max(lowest, LOSS_FLOOR) and smoothed > first
