"""The live-stream metrics, registered on the app's own registry (`Metrics.registry`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class LiveMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.clients = Gauge(
            "facade_live_clients",
            "Clients connected to `/readings/live` on this replica.",
            registry=registry,
        )
        self.upstream_streams = Gauge(
            "facade_live_upstream_streams",
            "Shared upstream streams open (an IOmeter subscription per installation, a Waltero poll per "
            "device), connected or reconnecting, lingering ones included.",
            ["backend"],
            registry=registry,
        )
        self.events = Counter(
            "facade_live_events",
            "Instants (one meter, one time) received from a backend's live stream or its catch-up and fanned "
            "out to the clients watching that meter; duplicates dropped before counting.",
            ["backend"],
            registry=registry,
        )
