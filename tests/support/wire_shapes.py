"""Each test counts vendor wire shapes in a recorder of its own (`tests/conftest.py` sets it)."""

from __future__ import annotations

from app.infra import tolerance
from app.infra.tolerance import WireShapes


def current_shapes() -> WireShapes:
    shapes = tolerance.current.get()
    assert shapes is not None, "tests/conftest.py sets a recorder for every test"
    return shapes
