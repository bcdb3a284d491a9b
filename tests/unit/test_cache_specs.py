"""One table for cache kinds: every data cache, its shared-tier codec, its byte share and what a
correction evicts come from `CACHE_SPECS`."""

from __future__ import annotations

import pytest

from app.core.caches import CACHE_SPECS, Caches, build_caches, data_cache_bytes
from app.core.fleet import CACHE_KINDS
from app.infra.config import RESPONSES_BYTE_SHARE, Settings
from app.infra.metrics import Metrics


def test_built_caches_follow_the_table() -> None:
    settings = Settings(FACADE_TTL_NOT_FOUND=12, FACADE_CACHE_MAXSIZE_DAILY=7)
    caches = build_caches(settings, lambda: 0.0, Metrics())
    assert list(caches) == [spec.name for spec in CACHE_SPECS]
    assert {n: c._negative_ttl for n, c in caches.items()} == {
        "meters": 0.0,
        "meter": 12,
        "readings": 12,
        "daily": 0.0,
        "device_status": 12,
        "changes": 0.0,
    }
    assert caches["daily"].max_bytes == data_cache_bytes(settings, "daily") == int(settings.cache_max_bytes * 0.2)
    assert caches["daily"]._floor == caches["daily"].max_bytes // 7  # the entry count sets the size floor
    assert [c.name for c in caches.correctable()] == ["readings", "daily"]


def test_byte_shares_stay_within_the_budget() -> None:
    assert sum(spec.byte_share for spec in CACHE_SPECS) + RESPONSES_BYTE_SHARE <= 1.0


def test_the_shared_tier_codecs_come_from_the_table() -> None:
    assert {n: k.name for n, k in CACHE_KINDS.items()} == {s.name: s.name for s in CACHE_SPECS}


def test_a_cache_set_missing_a_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="daily"):
        Caches({})
