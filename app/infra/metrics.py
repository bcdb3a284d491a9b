"""Every Prometheus metric the service exports, documented where it is defined.

One `Metrics` per app, on its own registry (tests build many apps). Labels are closed sets: `route` is
a path template (never a raw path or an id), `backend` and `operation` are code-defined names, and
`status` is an HTTP status code. No label ever carries caller input.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from app.infra.tolerance import WireShapeCollector

# Buckets from a 1 ms cache hit to a 10 s upstream deadline.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    15.0,
)


class HttpStats(Collector):
    """The per-request metrics, on every request's path (cache hits included), kept as plain ints and
    floats and exported at scrape time: a prometheus-client `Counter.inc` takes a lock and a
    `Histogram.observe` walks its buckets under one, which measured as a fifth of a cache hit's cost.
    Everything runs on the event loop thread, so no lock is needed.

    - `facade_http_requests_total{method,route,status}`: client requests answered.
    - `facade_http_request_duration_seconds{method,route}`: time to answer, in `LATENCY_BUCKETS`.
    - `facade_http_requests_in_flight`: client requests being answered right now.
    """

    def __init__(self) -> None:
        self.in_flight = 0
        self._counts: dict[tuple[str, str, int], int] = {}
        self._durations: dict[tuple[str, str], list[float]] = {}  # per-bucket counts, then sum

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        self._counts[key] = self._counts.get(key, 0) + 1
        timing = self._durations.get((route, method))
        if timing is None:
            timing = self._durations[(route, method)] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        timing[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        timing[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "facade_http_requests",
            "Client requests answered, by route template, method and status.",
            labels=["method", "route", "status"],
        )
        for (route, method, status), count in list(self._counts.items()):
            requests.add_metric([method, route, str(status)], count)
        yield requests
        durations = HistogramMetricFamily(
            "facade_http_request_duration_seconds",
            "Time to answer a client request, by route template.",
            labels=["method", "route"],
        )
        for (route, method), timing in list(self._durations.items()):
            cumulative: float = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, in_bucket in zip((*LATENCY_BUCKETS, math.inf), timing, strict=False):
                cumulative += in_bucket
                buckets.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
            durations.add_metric([method, route], buckets, sum_value=timing[-1])
        yield durations
        yield GaugeMetricFamily(
            "facade_http_requests_in_flight", "Client requests being answered right now.", value=self.in_flight
        )


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.http = HttpStats()
        r.register(self.http)
        r.register(WireShapeCollector())  # facade_vendor_wire_shapes_total, process-wide (app.infra.tolerance)
        self.upstream_requests = Counter(
            "facade_upstream_requests",
            "Calls to a vendor, each attempt counted; outcome is `ok`, an HTTP "
            "status class (`4xx`, `5xx`), `429`, `timeout` or `error` (connection).",
            ["backend", "operation", "outcome"],
            registry=r,
        )
        self.upstream_duration = Histogram(
            "facade_upstream_request_duration_seconds",
            "Duration of one vendor call (one attempt).",
            ["backend", "operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_retries = Counter(
            "facade_upstream_retries",
            "Vendor calls retried, by reason (`429`, `5xx`, `connect`).",
            ["backend", "reason"],
            registry=r,
        )
        self.cache_lookups = Counter(
            "facade_cache_lookups",
            "Cache lookups by cache and result (`hit`, `miss`, `stale`, `coalesced`).",
            ["cache", "result"],
            registry=r,
        )
        self.cache_entries = Gauge(
            "facade_cache_entries",
            "Entries held per cache (sampled at scrape).",
            ["cache"],
            registry=r,
        )
        self.cache_bytes = Gauge(
            "facade_cache_bytes",
            "Estimated bytes held per cache (sampled at scrape); bounded by FACADE_CACHE_MAX_BYTES.",
            ["cache"],
            registry=r,
        )
        self.coalesced = Counter(
            "facade_coalesced_requests",
            "Requests that waited on an identical in-flight upstream call instead of making their own.",
            ["cache"],
            registry=r,
        )
        self.token_refreshes = Counter(
            "facade_token_refreshes",
            "Successful vendor logins / token renewals.",
            ["backend"],
            registry=r,
        )
        self.token_refresh_failures = Counter(
            "facade_token_refresh_failures",
            "Vendor logins that failed (rejected, throttled, unreachable).",
            ["backend"],
            registry=r,
        )
        self.token_expiry = Gauge(
            "facade_token_expiry_timestamp_seconds",
            "When the current vendor token ends (Unix time); 0 if none.",
            ["backend"],
            registry=r,
        )
        self.circuit_state = Gauge(
            "facade_circuit_state",
            "Circuit breaker per backend: 0 closed, 1 half-open, 2 open.",
            ["backend"],
            registry=r,
        )
        self.corrections_evicted = Counter(
            "facade_correction_evictions",
            "Cache entries evicted because the vendor reported corrections.",
            ["backend"],
            registry=r,
        )
        self.shared_cache_operations = Counter(
            "facade_shared_cache_operations",
            "Commands to the shared tier (Redis, with FACADE_REDIS_URL) by operation (`lookup`, `get`, `set`, "
            "`lock`, `publish`, `evict`, `token_*`, `lease`, `watermark_*`, `cursor_key`, `ping`, ...) and outcome: "
            "`ok`, `hit`, `miss`, `acquired`, `busy`, ...; `timeout`, `error`, or `skipped` while an outage is known.",
            ["operation", "outcome"],
            registry=r,
        )
