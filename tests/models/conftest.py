"""Backbones built once per session for the model tests, which only read them."""

from __future__ import annotations

import pytest

from tlcli.models.backbones import get_backbone
from tlcli.models.weights import WeightsSource, build_base


class _Bases(dict):
    """{name: base}, each randomly initialised at its minimum size when first asked for: the fast
    suite builds TinyNet alone, the whole suite each real backbone once."""

    def __missing__(self, name: str):
        spec = get_backbone(name)
        self[name] = build_base(spec, spec.min_size, WeightsSource("none"))
        return self[name]


@pytest.fixture(scope="session")
def bases() -> _Bases:
    return _Bases()
