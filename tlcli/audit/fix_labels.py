"""`--fix-labels FILE.csv`: a label file with the given labels and, in a column of its own, the
labels the audit suggests, for every image it read: nothing removed.

`tlcli train DATA --labels FILE.csv` trains on the given labels, as before the audit;
`--label-columns label=suggested_label` trains on the suggested ones (the given label wherever
the audit doubts nothing). The split column keeps each image in the split the audit saw it in.
The other columns say why: the label's quality, the near-duplicate group, the outlier flag.
Paths are relative to DATA (to a pack's source folder for a pack), absolute when outside it.
"""

from __future__ import annotations

from tlcli.audit.findings import Findings
from tlcli.runs.atomic import signed_csv
from tlcli.storage import relative_name

FIX_FIELDS = ("path", "label", "suggested_label", "split", "label_issue", "label_quality", "duplicate_group",
              "outlier")


def fix_labels_csv(findings: Findings) -> str:
    """The label file's text, signed as tlcli's (runs.atomic.signed_csv)."""
    images, errors = findings.images, findings.label_errors
    base = images.source if images.source is not None else images.root
    flagged = set(errors.flagged.tolist()) if errors is not None else set()
    group_of = {member: number for number, group in enumerate(findings.duplicates.groups, start=1)
                for member in group.members}
    outliers = set(findings.outliers.flagged.tolist())
    rows = []
    for position, (sample, split) in enumerate(zip(images.samples, images.splits)):
        given = images.given(position)
        doubted = position in flagged
        checked = errors is not None and errors.suggested[position] >= 0
        rows.append((relative_name(base, sample.path), given,
                     images.class_names[errors.suggested[position]] if doubted else given, split,
                     "yes" if doubted else "", f"{errors.quality[position]:.4f}" if checked else "",
                     group_of.get(position, ""), "yes" if position in outliers else ""))
    for sample, split in images.unread:  # kept, with nothing to say of them
        given = images.label_text(sample)
        rows.append((relative_name(base, sample.path), given, given, split, "", "", "", ""))
    return signed_csv(FIX_FIELDS, rows)
