"""Which wire shape a vendor actually used, where its page allows two readings.

The adapters accept both plausible shapes (data wrapped or bare, flat or nested telemetry keys, readings
in any order, ...) and call `record(backend, aspect, shape, pinned=...)` each time they meet one. The
meeting is counted by the `WireShapes` recorder of the current context: each app has its own (its
`Metrics` exports it as `facade_vendor_wire_shapes_total{backend,aspect,shape}`) and puts it in the
context where its vendor work starts (each request, the background tasks), so two apps in one process
never share counts. The first time a recorder meets a shape that is *not* the one
docs/vendors/<vendor>.md pins, one WARNING says so, naming the aspect and the shape (never a value from
the payload). `python -m app.doctor` reports the same aspects against a live vendor.

Labels are closed sets: `backend`, `aspect` and `shape` are code-defined names, never vendor text.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from contextvars import ContextVar

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)


class WireShapes:
    """One app's count of the wire shapes its vendors used."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._announced: set[tuple[str, str, str]] = set()

    def record(self, backend: str, aspect: str, shape: str, *, pinned: bool, count: int = 1) -> None:
        """Count one meeting of `shape` for `aspect`; warn once about a shape other than the pinned one."""
        key = (backend, aspect, shape)
        with self._lock:
            self._counts[key] += count
            first = key not in self._announced
            self._announced.add(key)
        if first and not pinned:
            logger.warning(
                "%s sent %s in the %r shape, not the one its docs/vendors page pins; accepted (see `make doctor`)",
                backend,
                aspect.replace("_", " "),
                shape,
            )

    def seen(self, backend: str, aspect: str, shape: str) -> int:
        """How often `shape` was met for `aspect`."""
        with self._lock:
            return self._counts[(backend, aspect, shape)]

    def shapes_seen(self, backend: str) -> dict[str, dict[str, int]]:
        """`{aspect: {shape: count}}` for one backend."""
        with self._lock:
            result: dict[str, dict[str, int]] = {}
            for (name, aspect, shape), count in self._counts.items():
                if name == backend:
                    result.setdefault(aspect, {})[shape] = count
            return result

    def items(self) -> list[tuple[tuple[str, str, str], int]]:
        with self._lock:
            return sorted(self._counts.items())


current: ContextVar[WireShapes | None] = ContextVar("wire_shapes", default=None)
"""The recorder of the app whose work runs in this context."""


@contextlib.contextmanager
def recording(shapes: WireShapes) -> Iterator[WireShapes]:
    """Count every `record` made inside the block (and in tasks it starts) in `shapes`."""
    token = current.set(shapes)
    try:
        yield shapes
    finally:
        current.reset(token)


def record(backend: str, aspect: str, shape: str, *, pinned: bool, count: int = 1) -> None:
    """Count one meeting of `shape` in the current context's recorder; outside any (a parser used on
    its own) nothing is counted."""
    shapes = current.get()
    if shapes is not None:
        shapes.record(backend, aspect, shape, pinned=pinned, count=count)


class WireShapeCollector(Collector):
    """Exports one recorder's counts as `facade_vendor_wire_shapes_total`."""

    def __init__(self, shapes: WireShapes) -> None:
        self.shapes = shapes

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "facade_vendor_wire_shapes",
            "Vendor payloads by the shape met where the vendor's page allows two readings "
            "(aspect: data_wrapper, telemetry_keys, readings_order, audit_paging, device_paging, id_case, ...).",
            labels=["backend", "aspect", "shape"],
        )
        for (backend, aspect, shape), count in self.shapes.items():
            family.add_metric([backend, aspect, shape], count)
        yield family
