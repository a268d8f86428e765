"""What an audit read and what it found, handed from the sections to the reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from tlcli.audit.duplicates import Duplicates
from tlcli.audit.label_errors import LabelErrors
from tlcli.audit.outliers import Outliers
from tlcli.data.dataset import Sample
from tlcli.storage import Location


@dataclass
class AuditedImages:
    """The images whose features were read, in split order, with what the dataset says of them."""

    root: Location  # DATA (a pack's own folder for a pack)
    class_names: tuple[str, ...]
    samples: list[Sample]
    splits: list[str]  # each image's split
    features: np.ndarray  # images x features, as the frozen backbone pooled them
    multi_label: bool = False
    delimiter: str = " "  # what joins a multi-label image's labels
    source: Location | None = None  # the folder the images' paths are named from (a pack's source); None: root
    unread: list[tuple[Sample, str]] = field(default_factory=list)  # (image, split) the backbone could not decode

    @property
    def labels(self) -> np.ndarray:
        return np.array([sample.label for sample in self.samples], np.int64)

    def given(self, position: int) -> str:
        """The image's label as the dataset gives it (a multi-label image's labels, joined)."""
        return self.label_text(self.samples[position])

    def label_text(self, sample: Sample) -> str:
        if sample.targets is not None:
            return self.delimiter.join(name for name, on in zip(self.class_names, sample.targets) if on)
        return self.class_names[sample.label]

    def paths(self, positions: Sequence[int]) -> list[str]:
        return [str(self.samples[position].path) for position in positions]


@dataclass
class Findings:
    images: AuditedImages
    label_errors: LabelErrors | None  # None: no label could be checked (see the notes)
    duplicates: Duplicates
    outliers: Outliers
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per step, once the features were ready
    neighbour_search: dict = field(default_factory=dict)  # exact or approximate, and the images searched again exactly
