"""The data caches, one row each: what a cache holds and how it lives. Everything that treats caches by
kind (building them, their byte budget, the shared tier's codecs, negative answers, which ones a
correction evicts) reads this table; the response cache of whole HTTP answers is `app.api.http_cache`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from app.backends.base import ChangesPage
from app.core.chunks import Chunk
from app.domain.models import DailyConsumption, DeviceStatus, Meter
from app.guard.cache import SharedTier, SingleFlightCache
from app.infra.config import Settings
from app.infra.metrics import Metrics
from app.infra.timeutil import Clock


@dataclass(frozen=True, slots=True)
class CacheSpec:
    name: str
    """The cache's name: its metric label and key prefix in the shared tier."""
    value: Any
    """The type of a stored value (the shared tier decodes it back to this)."""
    ttl_setting: str | None
    """The `Settings` field of its freshness; None where the TTL depends on the window asked (past
    windows `FACADE_TTL_PAST`, recent ones `FACADE_TTL_RECENT`)."""
    negative: bool
    """Whether a not-found answer is cached too (for `FACADE_TTL_NOT_FOUND`)."""
    correctable: bool
    """Whether a vendor correction can change what it holds: the corrections feed evicts it by meter."""
    byte_share: float
    """Its share of `FACADE_CACHE_MAX_BYTES`."""
    size_setting: str
    """The `Settings` field of its entry count."""


CACHE_SPECS: tuple[CacheSpec, ...] = (
    CacheSpec("meters", list[Meter], "ttl_meters", False, False, 0.05, "cache_maxsize"),
    CacheSpec("meter", Meter, "ttl_meters", True, False, 0.05, "cache_maxsize"),
    CacheSpec("readings", Chunk, None, True, True, 0.25, "cache_maxsize_readings"),
    CacheSpec("daily", list[DailyConsumption], None, False, True, 0.2, "cache_maxsize_daily"),
    CacheSpec("device_status", DeviceStatus, "ttl_device_status", True, False, 0.05, "cache_maxsize"),
    CacheSpec("changes", ChangesPage, "ttl_changes", False, False, 0.05, "cache_maxsize_changes"),
)
SPECS: Mapping[str, CacheSpec] = {spec.name: spec for spec in CACHE_SPECS}


class Caches(Mapping[str, SingleFlightCache]):
    """The built data caches by name, with the table's rows beside them."""

    def __init__(self, caches: Mapping[str, SingleFlightCache]) -> None:
        missing = set(SPECS) - set(caches)
        if missing:
            raise ValueError(f"caches missing: {sorted(missing)}")
        self._caches = dict(caches)

    def __getitem__(self, name: str) -> SingleFlightCache:
        return self._caches[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._caches)

    def __len__(self) -> int:
        return len(self._caches)

    def correctable(self) -> list[SingleFlightCache]:
        """The caches a correction can make wrong (evicted by meter, dropped after a missed broadcast)."""
        return [self._caches[spec.name] for spec in CACHE_SPECS if spec.correctable]


def build_caches(settings: Settings, clock: Clock, metrics: Metrics, tier: SharedTier | None = None) -> Caches:
    """The data caches of the table, shared by every backend (keys start with the backend's name)."""
    return Caches(
        {
            spec.name: SingleFlightCache(
                spec.name,
                maxsize=int(getattr(settings, spec.size_setting)),
                max_bytes=data_cache_bytes(settings, spec.name),
                timer=clock,
                stale_if_error=settings.stale_if_error,
                negative_ttl=settings.negative_ttl if spec.negative else 0.0,
                metrics=metrics,
                tier=tier,
            )
            for spec in CACHE_SPECS
        }
    )


def data_cache_bytes(settings: Settings, name: str) -> int:
    """Cache `name`'s share of `FACADE_CACHE_MAX_BYTES`."""
    return int(settings.cache_max_bytes * SPECS[name].byte_share)
