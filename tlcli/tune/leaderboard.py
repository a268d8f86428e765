"""A search's results: one record per finished trial, ranked, written as JSON, CSV and TOML."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from tlcli.runs.atomic import write_atomic, write_json
from tlcli.runs.names import LEADERBOARD

OBJECTIVES = {"val_loss": "minimise", "val_accuracy": "maximise"}
_RESULTS = ("val_loss", "val_accuracy", "best_epoch", "epochs_run", "seconds")


def trial_record(number: int, params: dict, metrics: dict, objective: str) -> dict:
    """A finished trial: its values, its scores, and any further facts its search measured."""
    def finite(value):
        return value if value is not None and math.isfinite(value) else None

    val_loss, val_accuracy = finite(metrics.get("val_loss")), finite(metrics.get("val_accuracy"))
    values = {"val_loss": val_loss, "val_accuracy": val_accuracy}
    facts = {key: value for key, value in metrics.items() if key not in _RESULTS and key != "solver"}
    if "solver" in metrics and metrics["solver"].get("one_vs_rest"):  # one C per label
        facts["penalty_C"] = [label and label["penalty_C"] for label in metrics["solver"]["per_label"]]
    elif "solver" in metrics:  # a solved head: its cross-validated penalty instead of epochs
        facts["penalty_C"] = metrics["solver"]["penalty_C"]
    return {
        "trial": number,
        "params": params,
        "objective": values[objective],
        "val_loss": val_loss,
        "val_accuracy": val_accuracy,
        "best_epoch": metrics.get("best_epoch"),
        "epochs_run": metrics.get("epochs_run"),
        "seconds": metrics["seconds"],
        **facts,
    }


def format_epochs(record: dict) -> str:
    """'best/run' epochs of a trained trial; 'solved' for a solved head."""
    if record.get("epochs_run") is None:
        return "solved"
    return f"{record['best_epoch']}/{record['epochs_run']}"


def format_score(value: float | None) -> str:
    """Four decimals, or four significant digits for a loss that blew up."""
    if value is None:
        return "diverged"
    return f"{value:.4f}" if abs(value) < 1e5 else f"{value:.4g}"


def better(score: float, than: float, objective: str) -> bool:
    return score < than if OBJECTIVES[objective] == "minimise" else score > than


def rank(records: list[dict], objective: str) -> list[dict]:
    """Best first; a trial whose loss diverged (no finite objective) ranks last."""
    sign = 1 if OBJECTIVES[objective] == "minimise" else -1
    ordered = sorted(records, key=lambda r: (r["objective"] is None, sign * (r["objective"] or 0), r["trial"]))
    return [{"rank": position, **record} for position, record in enumerate(ordered, start=1)]


def read_leaderboard(path: Path) -> list[dict]:
    """The finished trials recorded in a tuning directory (none if it has no leaderboard yet)."""
    leaderboard = path / LEADERBOARD
    if not leaderboard.is_file():
        return []
    trials = json.loads(leaderboard.read_text())["trials"]
    return [{key: value for key, value in record.items() if key != "rank"} for record in trials]


def write_leaderboard(out_dir: Path, records: list[dict], objective: str, search: str) -> list[dict]:
    """leaderboard.json and leaderboard.csv, each replaced atomically; returns the ranked trials."""
    leaderboard = rank(records, objective)
    write_json(out_dir / LEADERBOARD, {
        "objective": objective,
        "direction": OBJECTIVES[objective],
        "search": search,
        "trials": leaderboard,
    })
    write_atomic(out_dir / "leaderboard.csv", leaderboard_csv(leaderboard))
    return leaderboard


def leaderboard_csv(leaderboard: list[dict]) -> str:
    """One row per trial, best first: rank, the trial's values, its results."""
    names = sorted({key for record in leaderboard for key in record["params"]})
    known = {"rank", "trial", "params", "objective", *_RESULTS}
    facts = sorted({key for record in leaderboard for key in record} - known)
    results = [*_RESULTS, *facts]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["rank", "trial", *names, *results])
    for record in leaderboard:
        row = [record["rank"], record["trial"]]
        row += [format_value(record["params"].get(name, "")) for name in names]
        row += [record.get(column) if record.get(column) is not None else "" for column in results]
        writer.writerow(row)
    return buffer.getvalue()


def format_value(value) -> str:
    if isinstance(value, list):
        return ",".join(str(unit) for unit in value) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def format_params(params: dict) -> str:
    return " ".join(f"{key}={format_value(value)}" for key, value in sorted(params.items()))


def to_toml(settings: dict, comment: str = "") -> str:
    """Settings as TOML (the standard library reads TOML but does not write it): a dict value is a
    table of flat settings, after the others."""
    lines = [f"# {line}" for line in comment.splitlines()]
    tables = {key: value for key, value in settings.items() if isinstance(value, dict)}
    for key, value in settings.items():
        if value is not None and key not in tables:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables.items():
        lines += [f"[{name}]", *(f"{key} = {_toml_value(value)}" for key, value in table.items() if value is not None)]
    return "\n".join(lines) + "\n"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's
