from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from prometheus_client import CollectorRegistry, Counter

from app.shared.tier import RedisTier
from tests.support.redis_server import RedisDeployment


class Recorder:
    """A real Prometheus counter behind the tier's `record` callback; `value(op, outcome)` reads a sample."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.counter = Counter(
            "facade_shared_cache_operations", "test", ["operation", "outcome"], registry=self.registry
        )

    def __call__(self, operation: str, outcome: str) -> None:
        self.counter.labels(operation, outcome).inc()

    def value(self, operation: str, outcome: str) -> float:
        found = self.registry.get_sample_value(
            "facade_shared_cache_operations_total", {"operation": operation, "outcome": outcome}
        )
        return found or 0.0


@pytest.fixture
async def make_tier(any_redis: RedisDeployment) -> AsyncIterator[Callable[..., RedisTier]]:
    """Build started tiers against the test's Redis of each mode (one per simulated replica, all with
    the test's own key prefix); closed after. Tests that kill or pause Redis parametrize
    `redis_mode` to `standalone` and use `redis_server`."""
    made: list[RedisTier] = []
    prefix = f"t{uuid.uuid4().hex[:12]}"

    async def factory(**kw: object) -> RedisTier:
        kw.setdefault("prefix", prefix)
        kw.setdefault("mode", any_redis.mode)
        kw.setdefault("sentinels", any_redis.sentinels)
        kw.setdefault("probe_every", 0.05)
        # Two cores shared by several busy processes can leave this one unscheduled for 100 ms: the
        # tests of fleet behaviour give Redis a second, the tests of timeouts set their own.
        kw.setdefault("timeout", 1.0)
        tier = RedisTier(str(kw.pop("url", any_redis.url)), **kw)  # type: ignore[arg-type]
        await tier.start()
        made.append(tier)
        return tier

    yield factory  # type: ignore[misc]
    for tier in made:
        await tier.aclose()
