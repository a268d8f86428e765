"""The audit's report: one JSON document (audit.json, and `--json`), a CSV per section, and
pictures, all rendered before any is written."""

from __future__ import annotations

import csv
import io
import json
from typing import Sequence

import numpy as np

from tlcli.audit.duplicates import DUPLICATE_SHARE
from tlcli.audit.findings import Findings
from tlcli.audit.outliers import OUTLIER_Z
from tlcli.audit.pictures import ROW_TILES, Tile, gallery_png, sheet_png
from tlcli.data.dataset import encoded_images
from tlcli.runs.names import AUDIT_JSON

LABEL_ERRORS_CSV, LABEL_ERRORS_PNG = "label_errors.csv", "label_errors.png"
DUPLICATES_CSV, DUPLICATES_PNG = "duplicates.csv", "duplicates.png"
OUTLIERS_CSV, OUTLIERS_PNG = "outliers.csv", "outliers.png"
REPORT_NAMES = (AUDIT_JSON, LABEL_ERRORS_CSV, LABEL_ERRORS_PNG, DUPLICATES_CSV, DUPLICATES_PNG, OUTLIERS_CSV,
                OUTLIERS_PNG)
FARTHEST = 20  # outliers listed in the document even when fewer are flagged
GALLERY = 24  # images in a gallery
GROUPS_SHOWN = 12  # duplicate groups in their picture


def audit_document(findings: Findings, described: dict) -> dict:
    """Everything the audit found, as audit.json and --json hold it; `described` says what was
    audited (the data, the backbone)."""
    images = findings.images
    return {
        **described,
        "images": len(images.samples),
        "classes": list(images.class_names),
        "splits": {split: images.splits.count(split) for split in dict.fromkeys(images.splits)},
        "label_errors": _label_section(findings),
        "duplicates": _duplicate_section(findings),
        "outliers": _outlier_section(findings),
        "neighbour_search": findings.neighbour_search,
        "notes": findings.notes,
        "seconds": {step: round(seconds, 3) for step, seconds in findings.seconds.items()},
    }


def _label_section(findings: Findings) -> dict | None:
    errors, images = findings.label_errors, findings.images
    if errors is None:
        return None
    rows = [{"rank": rank, "path": str(images.samples[position].path), "split": images.splits[position],
             "given": images.given(position), "suggested": images.class_names[errors.suggested[position]],
             "suggested_probability": round(float(errors.confidence[position]), 4),
             "label_quality": round(float(errors.quality[position]), 4)}
            for rank, position in enumerate(errors.flagged.tolist(), start=1)]
    return {"checked": len(errors.audited), "found": len(rows), "folds": errors.folds, "penalty_C": errors.penalty,
            "method": "out-of-fold probabilities of the solved head, cleanlab find_label_issues "
                      "(prune by noise rate), ranked by self-confidence",
            "rows": rows}


def _duplicate_section(findings: Findings) -> dict:
    duplicates, images = findings.duplicates, findings.images
    groups = [{"group": number, "leakage": group.leakage, "splits": group.splits,
               "similarity": round(group.similarity, 6),
               "images": [{"path": str(images.samples[member].path), "split": images.splits[member],
                           "label": images.given(member)} for member in group.members]}
              for number, group in enumerate(duplicates.groups, start=1)]
    return {"groups": len(groups), "leakage_groups": len(duplicates.leaking), "pairs": duplicates.pairs,
            "images": sum(len(group["images"]) for group in groups),
            "threshold_similarity": round(duplicates.threshold, 6),
            "typical_nearest_distance": round(duplicates.typical_distance, 6), "share": DUPLICATE_SHARE,
            "rows": groups}


def _outlier_section(findings: Findings) -> dict:
    outliers = findings.outliers
    shown = outliers.ranked[:max(FARTHEST, len(outliers.flagged))]
    return {"found": len(outliers.flagged), "cutoff": None if not np.isfinite(outliers.cutoff) else
            round(outliers.cutoff, 6), "modified_z": OUTLIER_Z, "rows": _outlier_rows(findings, shown)}


def _outlier_rows(findings: Findings, positions) -> list[dict]:
    outliers, images = findings.outliers, findings.images
    flagged = set(outliers.flagged.tolist())
    return [{"rank": rank, "path": str(images.samples[position].path), "split": images.splits[position],
             "label": images.given(position), "score": round(float(outliers.scores[position]), 6),
             "flagged": position in flagged}
            for rank, position in enumerate(np.asarray(positions).tolist(), start=1)]


def report_files(findings: Findings, document: dict) -> dict[str, str | bytes]:
    """Every report file's name and content."""
    labels, duplicates = document["label_errors"], document["duplicates"]
    duplicate_rows = [{"group": group["group"], "leakage": group["leakage"], "similarity": group["similarity"], **image}
                      for group in duplicates["rows"] for image in group["images"]]
    outlier_rows = _outlier_rows(findings, findings.outliers.ranked)
    return {
        AUDIT_JSON: json.dumps(document, indent=2) + "\n",
        LABEL_ERRORS_CSV: _csv(labels["rows"] if labels else [], ("rank", "path", "split", "given", "suggested",
                                                                  "suggested_probability", "label_quality")),
        LABEL_ERRORS_PNG: _label_gallery(findings, labels),
        DUPLICATES_CSV: _csv(duplicate_rows, ("group", "leakage", "similarity", "path", "split", "label")),
        DUPLICATES_PNG: _duplicate_sheet(findings),
        OUTLIERS_CSV: _csv(outlier_rows, ("rank", "path", "split", "label", "score", "flagged")),
        OUTLIERS_PNG: _outlier_gallery(findings, outlier_rows[:GALLERY]),
    }


def _csv(rows: Sequence[dict], fields: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _encoded(findings: Findings, positions: Sequence[int]) -> list[bytes | None]:
    return encoded_images([findings.images.samples[position] for position in positions])


def _label_gallery(findings: Findings, section: dict | None) -> bytes:
    if section is None:
        return gallery_png([], "no label was checked (see audit.json's notes)")
    positions = findings.label_errors.flagged[:GALLERY].tolist()
    rows = section["rows"][:GALLERY]
    tiles = [Tile(image, (_name(row["path"]), f"given {row['given']}",
                          f"-> {row['suggested']} ({row['suggested_probability']:.2f})"), alert=True)
             for image, row in zip(_encoded(findings, positions), rows)]
    return gallery_png(tiles, "no likely label error")


def _duplicate_sheet(findings: Findings) -> bytes:
    images, rows = findings.images, []
    for group in findings.duplicates.groups[:GROUPS_SHOWN]:
        members = group.members[:ROW_TILES]
        head = "LEAKAGE " if group.leakage else ""
        rows.append([Tile(image, (_name(images.samples[member].path), f"{head}{images.splits[member]}",
                                  images.given(member)), alert=group.leakage)
                     for image, member in zip(_encoded(findings, members), members)])
    return sheet_png(rows, "no near-duplicates")


def _outlier_gallery(findings: Findings, rows: Sequence[dict]) -> bytes:
    positions = findings.outliers.ranked[:len(rows)].tolist()
    tiles = [Tile(image, (_name(row["path"]), f"{row['split']} {row['label']}",
                          f"score {row['score']:.3g}" + (" OUTLIER" if row["flagged"] else "")), alert=row["flagged"])
             for image, row in zip(_encoded(findings, positions), rows)]
    return gallery_png(tiles, "no images")


def _name(path) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1]
