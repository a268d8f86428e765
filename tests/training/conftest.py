"""Fixtures of the training tests: Ctrl-C at a chosen epoch, and a run of a real backbone for
the errors that name its blocks and layers."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import invoke


@pytest.fixture
def interrupt_after(monkeypatch):
    """`interrupt_after(epochs)` presses Ctrl-C as the `epochs`-th epoch's backup is written
    (counted over every fit of the command: a fine-tuning's stages too). A process finishes
    writing the backup before it ends, so the test waits for it too. Returns what takes the
    Ctrl-C away again, for the --resume that follows."""
    from tlcli.training.callbacks import Checkpoint

    saved = Checkpoint.on_epoch_end

    def interrupt(epochs: int):
        ended = []

        def save_then_interrupt(self, epoch, logs=None):
            saved(self, epoch, logs)
            ended.append(epoch)
            if len(ended) == epochs:
                self._writer.wait()
                raise KeyboardInterrupt

        monkeypatch.setattr(Checkpoint, "on_epoch_end", save_then_interrupt)
        return lambda: monkeypatch.setattr(Checkpoint, "on_epoch_end", saved)

    return interrupt


@pytest.fixture(scope="session")
def vgg16_run(colour_dataset, tmp_path_factory) -> Path:
    """A VGG16 run (32 px, random weights, solved head) on the session's colour dataset, for the
    errors that name VGG16's blocks and its 19 layers. tests/tune/conftest.py has the same
    fixture: whichever runs first trains it, the other reads it."""
    run = tmp_path_factory.getbasetemp() / "vgg16-run"
    if not (run / "model.keras").is_file() or (run / ".in-progress").exists():
        invoke("train", colour_dataset, "--model", "vgg16", "--weights", "none", "--image-size", 32, "--quiet",
               "--overwrite", "--out", run)
    return run
