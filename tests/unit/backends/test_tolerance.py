"""Each app's record of which wire shape a vendor used: counted, exported, warned once per recorder,
and never shared between two apps in one process."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from app.infra import tolerance
from app.infra.metrics import Metrics
from app.infra.tolerance import WireShapeCollector, WireShapes


def sample(registry: CollectorRegistry, aspect: str, shape: str) -> float | None:
    return registry.get_sample_value(
        "facade_vendor_wire_shapes_total", {"backend": "testvendor", "aspect": aspect, "shape": shape}
    )


def test_each_meeting_is_counted_and_exported(caplog: pytest.LogCaptureFixture) -> None:
    shapes = WireShapes()
    registry = CollectorRegistry()
    registry.register(WireShapeCollector(shapes))
    with caplog.at_level(logging.WARNING, logger="app.infra.tolerance"), tolerance.recording(shapes):
        tolerance.record("testvendor", "wrapper_a", "bare", pinned=False)
        tolerance.record("testvendor", "wrapper_a", "bare", pinned=False, count=4)
        tolerance.record("testvendor", "wrapper_a", "wrapped", pinned=True)
    assert sample(registry, "wrapper_a", "bare") == 5
    assert shapes.seen("testvendor", "wrapper_a", "wrapped") == 1
    warnings = [r for r in caplog.records if "wrapper a" in r.getMessage()]
    assert len(warnings) == 1  # once per recorder, and never for the pinned shape
    assert "'bare'" in warnings[0].getMessage()
    assert warnings[0].levelno == logging.WARNING
    assert shapes.shapes_seen("testvendor") == {"wrapper_a": {"bare": 5, "wrapped": 1}}


def test_two_apps_keep_their_own_counts() -> None:
    first, second = Metrics(), Metrics()
    with tolerance.recording(first.wire_shapes):
        tolerance.record("testvendor", "wrapper_b", "nested", pinned=False)
    assert sample(first.registry, "wrapper_b", "nested") == 1
    assert sample(second.registry, "wrapper_b", "nested") is None


def test_outside_any_recorder_nothing_is_counted() -> None:
    shapes = WireShapes()
    token = tolerance.current.set(None)
    try:
        tolerance.record("testvendor", "wrapper_c", "bare", pinned=False)
    finally:
        tolerance.current.reset(token)
    assert shapes.seen("testvendor", "wrapper_c", "bare") == 0
