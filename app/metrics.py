"""Every Prometheus metric the service exports, documented where it is defined.

One `Metrics` per app, on its own registry (tests build many apps). Labels are closed sets: `route` is
a path template (never a raw path or an id), `backend` and `operation` are code-defined names, and
`status` is an HTTP status code. No label ever carries caller input.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Buckets from a 1 ms cache hit to a 10 s upstream deadline.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "facade_http_requests",
            "Client requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "facade_http_request_duration_seconds",
            "Time to answer a client request, by route template.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.http_in_flight = Gauge(
            "facade_http_requests_in_flight",
            "Client requests being answered right now.",
            registry=r,
        )
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
