"""A run directory as training writes it (its files: `runs.directory`).

It is claimed before any model is built, started with config.json and labels.txt once the model
is built or loaded, and finished with the model and its reports. Under several workers only the
chief writes the folder the command was given; every other worker writes the same files into a
scratch folder of its own (stable, so that --resume finds its state), removed when the run ends.
Where a worker's scratch folder is comes from the caller (`distribute.placement.worker_run_dir`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from tlcli.errors import TlcliError
from tlcli.runs.atomic import save_model_atomic, write_atomic, write_json
from tlcli.runs.curves import plot_curves
from tlcli.runs.directory import claim_run_dir, prepare_run_dir, read_json, resumable
from tlcli.runs.history import History
from tlcli.runs.names import CONFIG, CURVES, LABELS, METRICS, MODEL
from tlcli.runs.outputs import finish_run_dir


@dataclass(frozen=True)
class RunDir:
    """This process's part in writing one run directory."""

    requested: Path  # the folder the command was given (or its default): what messages name
    local: Path  # where this process writes: `requested` on the chief, a scratch folder on other workers
    is_chief: bool = True
    overwrite: bool = False
    resume: bool = False

    def claim(self, *, data: Path, sources: dict[Path, str]) -> None:
        """Lock this process's folder and refuse, before any model is built, an --out that would
        lose anything (runs.outputs.claim_output): the dataset and what the run reads among them."""
        claim_run_dir(self.local, data=data, sources=sources, **self._flags())

    def start(self, document: dict, class_names) -> Path:
        """Open the claimed folder (a finished run it replaces is set aside until this one
        finishes; --resume reopens it, refused if the settings changed) and write config.json and
        labels.txt into it; the folder."""
        run_dir = prepare_run_dir(self.local, **self._flags())
        if self.resume:
            check_same_settings(run_dir, document)
        write_json(run_dir / CONFIG, document)
        write_atomic(run_dir / LABELS, "\n".join(class_names) + "\n")
        return run_dir

    def resumable(self):
        """A block in which Ctrl-C says how to resume this run (runs.directory.resumable)."""
        return resumable(self.requested, own=self.local)

    def save(self, model, history: History, metrics: dict) -> None:
        """Write the model and its reports, then finish the run (see `save_outcome`)."""
        save_outcome(self, model, history, metrics)

    def finish(self) -> None:
        """Mark the run finished (the files tlcli wrote listed, what it replaced removed); a
        worker's scratch folder is removed: only the chief's run is kept."""
        finish_run_dir(self.local)
        if not self.is_chief:
            shutil.rmtree(self.local, ignore_errors=True)

    def _flags(self) -> dict:
        if self.is_chief:
            return {"overwrite": self.overwrite, "resume": self.resume}
        # A worker's scratch folder is its own: started afresh, unless resuming one it left.
        return {"overwrite": not self.resume, "resume": self.resume and self.local.exists()}


def save_outcome(run_dir: RunDir, model, history: History, metrics: dict) -> None:
    """Write the model and reports; every worker saves (to its own folder), only the chief keeps."""
    metrics["weights_sha256"] = weights_fingerprint(model)
    save_model_atomic(model, run_dir.local / MODEL)
    write_json(run_dir.local / METRICS, metrics)
    rows = [history.rows[key] for key in sorted(history.rows)]
    if rows:
        plot_curves(rows, run_dir.local / CURVES)
    run_dir.finish()


@contextlib.contextmanager
def trial_run(path: Path) -> Iterator[Path]:
    """A tune trial's run folder inside its search: an unfinished one starts over, and a trial
    that ends without error is finished as any run is (`RunDir.finish`)."""
    shutil.rmtree(path, ignore_errors=True)
    yield path
    RunDir(path, path).finish()


def weights_fingerprint(model) -> str:
    """A hash of every weight, to tell identical models apart from merely similar ones."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


_NOT_COMPARED = {"out", "versions"}


def check_same_settings(run_dir: Path, document: dict) -> None:
    """A resumed run must be the same run: refuse if its settings changed."""
    path = run_dir / CONFIG
    if not path.is_file():
        return
    saved = read_json(path)
    changed = sorted(
        key for key in set(saved) | set(document)
        if key not in _NOT_COMPARED and json.dumps(saved.get(key), default=str) != json.dumps(document.get(key), default=str)
    )
    if changed:
        raise TlcliError(
            f"--resume: the settings differ from the interrupted run in {run_dir} "
            f"({', '.join(changed)}). Repeat the original command with --resume, or use --overwrite."
        )
