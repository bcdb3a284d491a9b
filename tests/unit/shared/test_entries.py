import subprocess
import sys
from datetime import UTC, date, datetime

import pytest
from pydantic import BaseModel

from app.backends.base import ChangesPage
from app.domain.models import Change, DailyConsumption, DeviceStatus, Reading
from app.shared.entries import EntryKind, SharedEntries, SharedEntry, key_digest
from app.shared.tier import RedisTier
from tests.support.clock import FakeClock
from tests.support.redis_server import RedisServer
from tests.unit.shared.conftest import Recorder

T0 = datetime(2026, 5, 19, 6, 15, tzinfo=UTC)


def readings() -> list[Reading]:
    return [
        Reading(meter_id="iometer:m1", time=T0, quantity="energy_import", obis="1-0:1.8.0", value=12.5, unit="kWh"),
        Reading(meter_id="iometer:m1", time=T0, quantity="power", obis="1-0:16.7.0", value=230.0, unit="W"),
    ]


async def test_values_round_trip_with_their_times_and_tags(make_tier):
    clock = FakeClock()
    tier = await make_tier()
    entries = SharedEntries(tier, clock)
    now = clock()
    daily = DailyConsumption(
        meter_id="waltero:w", date=date(2026, 5, 19), consumption=None, unit="m3", complete=False, source="upstream"
    )
    status = DeviceStatus(
        device_id="iometer:d",
        backend="iometer",
        online=True,
        last_seen=T0,
        battery_percent=80,
        battery_voltage=None,
        power_source="battery",
        rssi_dbm=-70.5,
        details={"bridge": {"ok": True}},
    )
    change = Change(
        id="waltero:c",
        backend="waltero",
        meter_id="waltero:w",
        time=T0,
        previous_value=1.0,
        new_value=2.0,
        unit="m3",
        actor="user",
        changed_at=T0,
    )
    cases = [
        (EntryKind("readings", list[Reading]), readings()),
        (EntryKind("daily", list[DailyConsumption]), [daily]),
        (EntryKind("device_status", DeviceStatus), status),
        (EntryKind("changes", ChangesPage), ChangesPage([change], "next-token")),
    ]
    for kind, value in cases:
        entry = SharedEntry(value, now, now + 60, now + 660, frozenset({"iometer:m1", "iometer:*"}))
        await entries.put(kind, ("iometer", "k"), entry, since=await entries.sequence())
        got = await entries.get(kind, ("iometer", "k"))
        assert got is not None
        assert (got.value, got.created, got.fresh_until, got.stale_until, got.tags) == (
            entry.value,
            entry.created,
            entry.fresh_until,
            entry.stale_until,
            entry.tags,
        )
        assert set(got.generations) == {"iometer:m1", "iometer:*"}
    ttl_ms = await tier.client.pttl(entries.key(cases[0][0], ("iometer", "k")))
    assert 655_000 < ttl_ms <= 660_000  # lives through its stale window, no longer


async def test_a_changed_shape_never_reads_an_old_entry(make_tier):
    class V1(BaseModel):
        a: int

    class V2(BaseModel):
        a: int
        b: str

    rec = Recorder()
    tier = await make_tier(record=rec)
    clock = FakeClock()
    entries = SharedEntries(tier, clock)
    old, new = EntryKind("meter", V1), EntryKind("meter", V2)
    assert old.version != new.version
    await entries.put(
        old, "k", SharedEntry(V1(a=1), clock(), clock() + 10, clock() + 10), since=await entries.sequence()
    )
    assert await entries.get(new, "k") is None
    # Garbage under the current key (e.g. a foreign writer) is a miss, counted as corrupt, not an error.
    await tier.client.set(entries.key(new, "k"), b'{"c":1}\n{"a":"x"}')
    assert await entries.get(new, "k") is None
    assert rec.value("get", "corrupt") == 1.0


def test_key_digest_is_the_same_in_every_process():
    key = ("waltero", (frozenset({"a", "b", "c", "d"}), date(2026, 5, 1), T0, "Europe/Berlin", None, 3))
    code = (
        "from datetime import UTC, date, datetime; from app.shared.entries import key_digest; "
        "print(key_digest(('waltero', (frozenset({'a','b','c','d'}), date(2026,5,1), "
        "datetime(2026,5,19,6,15,tzinfo=UTC), 'Europe/Berlin', None, 3))))"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code], env={"PYTHONHASHSEED": seed}, capture_output=True, text=True, check=True
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert digests == {key_digest(key)}
    assert key_digest(("waltero", "a")) != key_digest(("waltero", "b"))


async def test_bumping_a_tag_invalidates_every_entry_carrying_it(make_tier):
    tier = await make_tier()
    clock = FakeClock()
    entries = SharedEntries(tier, clock)
    kinds = EntryKind("readings", list[Reading]), EntryKind("daily", list[DailyConsumption])
    now = clock()
    since = await entries.sequence()
    await entries.put(
        kinds[0], "r1", SharedEntry(readings(), now, now + 60, now + 60, frozenset({"iometer:m1"})), since=since
    )
    await entries.put(
        kinds[0], "r2", SharedEntry(readings(), now, now + 60, now + 60, frozenset({"iometer:m2"})), since=since
    )
    daily = SharedEntry([], now, now + 60, now + 60, frozenset({"iometer:m1", "iometer:*"}))
    await entries.put(kinds[1], "d1", daily, since=since)
    assert await tier.client.ttl(entries.generations_key) == -1  # the counters never expire
    assert await entries.bump({"iometer:m1"}) == 1
    assert await entries.get(kinds[0], "r1") is None
    assert await entries.get(kinds[1], "d1") is None
    assert (await entries.get(kinds[0], "r2")) is not None
    # A load that started before the bump stores nothing: its value may predate the correction.
    assert not await entries.put(
        kinds[0], "r3", SharedEntry(readings(), now, now + 60, now + 60, frozenset({"iometer:m3"})), since=since
    )
    assert await entries.get(kinds[0], "r3") is None


async def test_an_evicted_counter_invalidates_and_never_resurrects(make_tier):
    tier = await make_tier()
    clock = FakeClock()
    entries = SharedEntries(tier, clock)
    kind = EntryKind("readings", list[Reading])
    now = clock()
    old = SharedEntry(readings(), now, now + 60, now + 60, frozenset({"iometer:m1"}))
    await entries.put(kind, "r1", old, since=await entries.sequence())
    await entries.bump({"iometer:m1"})
    await tier.client.delete(entries.generations_key)  # what maxmemory eviction would do
    assert await entries.get(kind, "r1") is None  # missing counter: invalid, not "no correction"
    await entries.generations({"iometer:m1"})  # recreated by the next load, with a new token
    assert await entries.get(kind, "r1") is None


async def test_an_entry_larger_than_the_bound_is_not_shared(make_tier):
    rec = Recorder()
    tier = await make_tier(record=rec)
    clock = FakeClock()
    entries = SharedEntries(tier, clock, max_entry_bytes=600)
    kind = EntryKind("readings", list[Reading])
    now = clock()
    await entries.put(
        kind, "small", SharedEntry(readings()[:1], now, now + 60, now + 60), since=await entries.sequence()
    )
    await entries.put(kind, "big", SharedEntry(readings() * 5, now, now + 60, now + 60), since=await entries.sequence())
    assert await entries.get(kind, "small") is not None
    assert await entries.get(kind, "big") is None
    assert rec.value("set", "too_large") == 1.0


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru"])
async def test_under_memory_pressure_a_correction_still_reaches_every_copy(tmp_path, policy):
    """Redis evicts what it likes under `maxmemory`; after a bump, no replica reads the old value of
    the corrected meter, whatever survived (with tag index sets, 17-38 % of copies outlived theirs)."""
    server = RedisServer(
        tmp_path, args=["--maxmemory", "3mb", "--maxmemory-policy", policy, "--maxmemory-samples", "10"]
    )
    server.start()
    tiers = []
    try:
        for _ in range(3):
            tier = RedisTier(server.url, prefix="mem", timeout=2.0)
            await tier.start()
            tiers.append(tier)
        clock = FakeClock()
        replicas = [SharedEntries(t, clock) for t in tiers]
        kind = EntryKind("readings", list[Reading])
        now = clock()
        meters = [f"iometer:m{i}" for i in range(20)]
        stored = 0
        # ~5 MB of entries into 3 MB: Redis evicts as it goes. The last few are the meter to correct
        # (the most recently written survive LRU), so the test does not depend on which ones it evicted.
        total = 405
        for n in range(total):
            meter = meters[n % 20] if n < 400 else meters[3]
            rows = [
                Reading(meter_id=meter, time=T0, quantity="power", obis="1-0:16.7.0", value=float(n + k), unit="W")
                for k in range(40)
            ]
            entry = SharedEntry(rows, now, now + 3600, now + 3600, frozenset({meter, "iometer:*"}))
            writer = replicas[n % 3]
            stored += await writer.put(kind, ("iometer", n), entry, since=await writer.sequence())
        info = await tiers[0].client.info("stats")
        assert info["evicted_keys"] > 0  # the pressure is real
        survivors = [n for n in range(total) if await replicas[0].get(kind, ("iometer", n)) is not None]
        corrected = [n for n in survivors if n % 20 == 3 or n >= 400]
        assert corrected  # some copies of the meter to correct are still there
        await replicas[1].bump({"iometer:m3"})
        for reader in replicas:
            for n in survivors:
                got = await reader.get(kind, ("iometer", n))
                if n in corrected:
                    assert got is None, n  # invalid everywhere, whatever Redis kept or dropped
        # the other meters' copies are still served (a bump is not a flush)
        others = [await replicas[2].get(kind, ("iometer", n)) for n in survivors if n not in corrected]
        assert any(got is not None for got in others)
    finally:
        for tier in tiers:
            await tier.aclose()
        server.stop()
