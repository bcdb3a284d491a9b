"""Which wire shape a vendor actually used, where its page allows two readings.

The adapters accept both plausible shapes (data wrapped or bare, flat or nested telemetry keys, readings
in any order, ...) and call `record(backend, aspect, shape, pinned=...)` each time they meet one. The
count is process-wide and exported as `facade_vendor_wire_shapes_total{backend,aspect,shape}` by
`WireShapeCollector` (registered on each app's metrics registry); the first time a shape that is *not*
the one UPSTREAMS.md pins is seen, one WARNING per process says so, naming the aspect and the shape
(never a value from the payload). `python -m app.doctor` reports the same aspects against a live vendor.

Labels are closed sets: `backend`, `aspect` and `shape` are code-defined names, never vendor text.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_counts: Counter[tuple[str, str, str]] = Counter()
_announced: set[tuple[str, str, str]] = set()


def record(backend: str, aspect: str, shape: str, *, pinned: bool, count: int = 1) -> None:
    """Count one meeting of `shape` for `aspect`; warn once per process about a shape other than the pinned one."""
    key = (backend, aspect, shape)
    with _lock:
        _counts[key] += count
        first = key not in _announced
        _announced.add(key)
    if first and not pinned:
        logger.warning(
            "%s sent %s in the %r shape, not the one UPSTREAMS.md pins; accepted (see `make doctor`)",
            backend,
            aspect.replace("_", " "),
            shape,
        )


def seen(backend: str, aspect: str, shape: str) -> int:
    """How often `shape` was met for `aspect` in this process (tests, the doctor)."""
    with _lock:
        return _counts[(backend, aspect, shape)]


def shapes_seen(backend: str) -> dict[str, dict[str, int]]:
    """`{aspect: {shape: count}}` for one backend."""
    with _lock:
        result: dict[str, dict[str, int]] = {}
        for (name, aspect, shape), count in _counts.items():
            if name == backend:
                result.setdefault(aspect, {})[shape] = count
        return result


class WireShapeCollector(Collector):
    """Exports the process-wide counts as `facade_vendor_wire_shapes_total`."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "facade_vendor_wire_shapes",
            "Vendor payloads by the shape met where the vendor's page allows two readings "
            "(aspect: data_wrapper, telemetry_keys, readings_order, audit_paging, device_paging, id_case, ...).",
            labels=["backend", "aspect", "shape"],
        )
        with _lock:
            items = sorted(_counts.items())
        for (backend, aspect, shape), count in items:
            family.add_metric([backend, aspect, shape], count)
        yield family
