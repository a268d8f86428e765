"""The learning-rate range test (Smith, 2017; fastai's `lr_find`): which rate to fine-tune at.

The rate grows exponentially, one optimiser step at a time, from `start` to `end`, while the
training loss is recorded; it stops once the loss blows up. The model's weights are put back
afterwards, so the test changes nothing. The suggestion follows the edge rule: a third of the
rate at which the loss first rose to three times its lowest (smoothed) value, the edge past
which the steps undo what the model knows.

Why not the valley rule (halfway down the longest fall of the smoothed loss)? Fine-tuning starts
from a fitted head, whose loss on augmented batches does not fall with the rate: it scatters
(0.1 to 0.5 on one transfer, bench/finetune_value.py) until it blows up. The valley rule then
read the scatter as a fall and suggested 1.4e-6 to 1.9e-6, or nothing, where the by-hand grid
fine-tunes best at 1e-5 to 1e-4. The edge rule suggested 1.9e-5 to 3.1e-5 on the same runs.
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
RISE = 3.0  # the loss has risen when two steps running are this many times its lowest (or LOSS_FLOOR)
BELOW = 3.0  # the suggestion: the rate at which it rose, divided by this
RULE = "edge"


@dataclass(frozen=True)
class RangeTest:
    rates: np.ndarray  # one per step taken
    losses: np.ndarray  # the training loss of each step
    smoothed: np.ndarray
    suggestion: float | None  # None when the loss never rose, or rose from the start
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


def edge(losses: np.ndarray, blew_up: bool = False) -> int | None:
    """The first step, once the average has settled, whose loss and the next's are RISE times the
    lowest smoothed loss before it (or LOSS_FLOOR): two steps, so that one bad batch is not a
    rise. A loss that turned infinite rose at the step after the last recorded one. None if the
    loss never rose."""
    smoothed = smooth(losses)
    for index in range(SETTLED, len(losses)):
        limit = RISE * max(float(smoothed[SETTLED - 1 : index].min()), LOSS_FLOOR)
        following = losses[index + 1] if index + 1 < len(losses) else (np.inf if blew_up else 0.0)
        if losses[index] > limit and following > limit:
            return index
    return len(losses) if blew_up and len(losses) >= SETTLED else None


def suggest(rates: np.ndarray, losses: np.ndarray, blew_up: bool = False) -> float | None:
    """The edge rule's rate: a third of the rate at which the loss rose, if that is within the
    rates tried (a loss that rose at once means the test started too high)."""
    index = edge(losses, blew_up)
    if index is None or index >= len(rates):
        return None
    rate = float(rates[index]) / BELOW
    return rate if rate >= rates[0] else None


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
    return RangeTest(
        rates[: len(losses)], losses, smooth(losses), suggest(rates, losses, recorder.blew_up),
        "blew up" if recorder.blew_up else "reached the end",
    )


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
