"""How numbers and names read on the page: as the terminal's tables print them, so that the
browser's find meets the same text."""

from __future__ import annotations

import math

MISSING = "–"


def number(value) -> str:
    """An integer as it is, any other number to four decimals (evaluate's tables), None as a dash."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    return str(value)


def short(value) -> str:
    """A rate, a penalty or a setting: three significant digits."""
    if isinstance(value, float):
        return f"{value:.3g}"
    return number(value) if value is None or isinstance(value, (int, bool)) else str(value)


def share(value: float) -> str:
    return f"{value:.0%}"


def size(count: int) -> str:
    """A byte count as people read it: 812 KB, 4.2 MB."""
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}" if count < 10 * scale else f"{count / scale:.0f} {unit}"
    return f"{count} bytes"


def file_name(path: str) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def setting(value) -> str:
    """A recorded option's value: lists joined, nothing as "none"."""
    if value is None or value == [] or value == ():
        return "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value)
    return short(value)
