"""The process-wide record of which wire shape a vendor used: counted, exported, warned once."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from app.infra import tolerance
from app.infra.metrics import Metrics
from app.infra.tolerance import WireShapeCollector


def sample(registry: CollectorRegistry, aspect: str, shape: str) -> float | None:
    return registry.get_sample_value(
        "facade_vendor_wire_shapes_total", {"backend": "testvendor", "aspect": aspect, "shape": shape}
    )


def test_each_meeting_is_counted_and_exported(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    registry.register(WireShapeCollector())
    before = sample(registry, "wrapper_a", "bare") or 0.0
    with caplog.at_level(logging.WARNING, logger="app.infra.tolerance"):
        tolerance.record("testvendor", "wrapper_a", "bare", pinned=False)
        tolerance.record("testvendor", "wrapper_a", "bare", pinned=False, count=4)
        tolerance.record("testvendor", "wrapper_a", "wrapped", pinned=True)
    assert sample(registry, "wrapper_a", "bare") == before + 5
    assert tolerance.seen("testvendor", "wrapper_a", "wrapped") >= 1
    warnings = [r for r in caplog.records if "wrapper a" in r.getMessage()]
    assert len(warnings) == 1  # once per process, and never for the pinned shape
    assert "'bare'" in warnings[0].getMessage()
    assert warnings[0].levelno == logging.WARNING
    assert tolerance.shapes_seen("testvendor")["wrapper_a"]["bare"] == before + 5


def test_every_app_exports_the_counts() -> None:
    tolerance.record("testvendor", "wrapper_b", "nested", pinned=False)
    metrics = Metrics()
    assert sample(metrics.registry, "wrapper_b", "nested") == tolerance.seen("testvendor", "wrapper_b", "nested")
