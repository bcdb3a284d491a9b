"""The adapters' indexes shared by a fleet (IOmeter's installations, Waltero's organizations, device
directory and device records), on a real Redis of each `FACADE_REDIS_MODE`, against the emulators in
live mode. Vendor calls are counted by the emulators themselves (`stats`), never by the facade.

The fleet here is 3 apps in one process, each with its own Redis client, caches and backends (the
multi-process fleet is `test_replicas.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from app.backends.iometer import emulator as iometer_sandbox
from app.backends.iometer.adapter import IometerBackend
from app.backends.registry import vendor_settings, vendors
from app.backends.waltero import emulator as waltero_sandbox
from app.backends.waltero.adapter import DIRECTORY_TTL, WalteroBackend
from app.factory import create_app
from app.infra.config import Settings
from app.runtime import backend_context
from app.shared.bus import Broadcast
from app.shared.entries import SharedEntries
from app.shared.flight import FleetFlight
from app.shared.indexes import SharedIndexes
from app.shared.tier import RedisTier
from tests.support.apps import API_KEY, running
from tests.support.redis_server import RedisDeployment

READINGS_METER = "11111111-1111-1111-1111-111111111101"
WALTERO_DEVICES = [
    "11111111-1111-1111-1111-111111111102",
    "11111111-1111-1111-1111-111111111104",
    "11111111-1111-1111-1111-111111111107",
    "22222222-2222-2222-2222-222222222201",
    "22222222-2222-2222-2222-222222222204",
]


def settings(redis: RedisDeployment | None, prefix: str) -> Settings:
    values: dict[str, Any] = {
        **iometer_sandbox.SANDBOX_SETTINGS,
        **waltero_sandbox.SANDBOX_SETTINGS,
        "IOMETER_URL": "http://iometer.test/api/v1/query",
        "WALTERO_URL": "http://waltero.test/prod",
        "FACADE_API_KEYS": API_KEY,
        "FACADE_CHANGES_POLL": 0,
        "FACADE_REDIS_TIMEOUT": 1.0,  # a busy 2-core test machine; the tier's own tests use short ones
        "FACADE_REQUEST_DEADLINE": 8.0,
    }
    if redis is not None:
        values.update(redis.settings)
        values["FACADE_REDIS_PREFIX"] = prefix
    return Settings(**values)


class Vendors:
    """Fresh emulators of both vendors, and their call counts."""

    def __init__(self) -> None:
        self.iometer = iometer_sandbox.create_emulator()
        self.waltero = waltero_sandbox.create_emulator()
        self.transports = {
            "iometer": httpx.ASGITransport(app=self.iometer.app),
            "waltero": httpx.ASGITransport(app=self.waltero.app),
        }

    def calls(self) -> Counter[str]:
        """Every vendor request by `<vendor>:<operation>` (logins and index listings included)."""
        found: Counter[str] = Counter()
        for name, emulator in (("iometer", self.iometer), ("waltero", self.waltero)):
            for operation, n in emulator.stats.items():
                if operation != "requests" and not operation.startswith(("field:", "auth", "tokens")):
                    found[f"{name}:{operation}"] += n
        return found

    def total(self) -> int:
        return int(self.iometer.stats["requests"] + self.waltero.stats["requests"])


@contextlib.asynccontextmanager
async def fleet(redis: RedisDeployment | None, n: int, vendors_: Vendors) -> AsyncIterator[list[httpx.AsyncClient]]:
    one = settings(redis, f"t{uuid.uuid4().hex[:12]}")
    apps = [create_app(one, transports=vendors_.transports) for _ in range(n)]
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(running(app)) for app in apps]


def requests_over_20_keys(iometer: Vendors) -> list[tuple[str, dict[str, str]]]:
    """20 keys, each needing an adapter index on a cold replica: 11 weeks of one Waltero meter's readings
    (its device record, the organizations), 5 Waltero device statuses (their records), every IOmeter
    device's status (4: the installations listing)."""
    top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    keys: list[tuple[str, dict[str, str]]] = []
    for i in range(11):  # a week apart: each its own cached chunk of readings
        start = top - timedelta(hours=100 + i * 24 * 7)
        window = {"start": start.strftime(fmt), "end": (start + timedelta(hours=1)).strftime(fmt)}
        keys.append(("/readings", {"meter_id": f"waltero:{READINGS_METER}", **window}))
    keys += [(f"/devices/waltero:{d}/status", {}) for d in WALTERO_DEVICES]
    keys += [(f"/devices/iometer:{d.id}/status", {}) for d in iometer.iometer.data.devices]
    assert len(keys) == 20
    return keys


async def send_1000(clients: list[httpx.AsyncClient], keys: list[tuple[str, dict[str, str]]]) -> list[int]:
    """The same 1,000 requests every time: request n asks key n % 20 of replica n % len(clients), 25
    users at a time."""
    statuses: list[int] = []

    async def user(j: int) -> None:
        for k in range(40):
            n = j * 40 + k
            path, params = keys[n % len(keys)]
            statuses.append((await clients[n % len(clients)].get(path, params=params)).status_code)

    await asyncio.gather(*(user(j) for j in range(25)))
    return statuses


async def test_a_cold_fleet_of_three_costs_the_vendors_what_one_replica_costs(any_redis):
    alone = Vendors()
    keys = requests_over_20_keys(alone)
    async with fleet(None, 1, alone) as clients:
        statuses = await send_1000(clients, keys)
    assert statuses == [200] * 1000
    one = alone.calls()
    # one replica's calls include its index loads: the listing, the organizations, each device's record
    assert one["iometer:Installations"] >= 1
    assert one["waltero:me"] == 1
    assert one["waltero:device"] == 1 + len(WALTERO_DEVICES)

    shared = Vendors()
    async with fleet(any_redis, 3, shared) as clients:
        statuses = await send_1000(clients, requests_over_20_keys(shared))
    assert statuses == [200] * 1000
    three = shared.calls()
    assert shared.total() <= alone.total() * 1.1, (three, one)
    # each index loaded once for the fleet, as by one replica
    for index_call in ("iometer:Installations", "waltero:me", "waltero:device"):
        assert three[index_call] == one[index_call], (index_call, three, one)


# --- the adapters themselves, two or three replicas' backends on one Redis ----------------------------


class Replica:
    def __init__(self, redis: RedisDeployment, prefix: str, vendors_: Vendors, clients: list[httpx.AsyncClient]):
        self.tier = RedisTier(redis.url, mode=redis.mode, sentinels=redis.sentinels, prefix=prefix, timeout=1.0)  # type: ignore[arg-type]
        self.bus = Broadcast(self.tier)
        self.flight = FleetFlight(SharedEntries(self.tier, time_now), self.bus, clock=time_now)
        configured = settings(redis, prefix)
        built: dict[str, Any] = {}
        for name in ("iometer", "waltero"):
            http = httpx.AsyncClient(transport=vendors_.transports[name])
            clients.append(http)
            ctx = backend_context(
                configured,
                http,
                clock=time_now,
                sleep=asyncio.sleep,
                rng=random.Random(0),
                mode="live",
                index_store=SharedIndexes(self.flight, budget=5.0, clock=time_now),
            )
            built[name] = vendors()[name].create_backend(ctx, vendor_settings(configured, name))
        self.iometer: IometerBackend = built["iometer"]
        self.waltero: WalteroBackend = built["waltero"]

    async def start(self) -> Replica:
        await self.tier.start()
        self.bus.start()
        async with asyncio.timeout(5):
            await self.bus.wait_subscribed()
        return self

    async def aclose(self) -> None:
        await self.bus.aclose()
        await self.tier.aclose()


def time_now() -> float:
    return datetime.now(UTC).timestamp()


@contextlib.asynccontextmanager
async def backends(redis: RedisDeployment, n: int) -> AsyncIterator[tuple[list[Replica], Vendors]]:
    vendors_ = Vendors()
    prefix = f"t{uuid.uuid4().hex[:12]}"
    clients: list[httpx.AsyncClient] = []
    made = [Replica(redis, prefix, vendors_, clients) for _ in range(n)]
    try:
        yield [await r.start() for r in made], vendors_
    finally:
        for r in made:
            await r.aclose()
        for c in clients:
            await c.aclose()


async def test_an_iometer_index_read_back_is_the_one_loaded(any_redis):
    async with backends(any_redis, 2) as ((a, b), vendor):
        meters = await a.iometer.list_meters()  # a full listing, published for the fleet
        listed = vendor.calls()["iometer:Installations"]
        device = vendor.iometer.data.devices[0].id
        status_b = await b.iometer.device_status(device)
        assert vendor.calls()["iometer:Installations"] == listed  # b read a's listing back
        assert b.iometer._device_index == a.iometer._device_index
        assert b.iometer._device_index  # the same devices, each in the same installation
        assert status_b == await a.iometer.device_status(device)
        # the listing itself: the same installations, meters, ids and media as a fresh one
        shared = b.iometer._shared_installations
        assert shared is not None
        read_back, _ = await shared.load(b.iometer._list_installations, max_age=60)
        assert read_back == await a.iometer._list_installations()
        assert {m.id for m in meters} == {f"iometer:{m.id}" for inst in read_back for m in inst.meters}


async def test_waltero_indexes_read_back_are_the_ones_loaded(any_redis):
    async with backends(any_redis, 3) as ((a, b, c), vendor):
        await a.waltero.list_meters()  # organizations (one /api/auth/me) and the directory, published
        before = vendor.calls()
        serial = next(d.serial_number for d in a.waltero._directory.values() if d.serial_number)
        found = await b.waltero.meters_by_serial(serial)  # b reads the directory back
        assert found == await a.waltero.meters_by_serial(serial)
        assert b.waltero._directory == a.waltero._directory
        assert await b.waltero.organizations() == await a.waltero.organizations()
        assert vendor.calls() == before  # no listing, no /api/auth/me: both read back

        # c never listed: a device record costs it one lookup, the organizations it needs are the fleet's
        record_c = await c.waltero._device_metadata(READINGS_METER)
        assert record_c == a.waltero._directory[READINGS_METER]
        made = vendor.calls() - before
        del made["waltero:login"]  # these bare backends do not share vendor tokens (the apps do)
        assert made == Counter({"waltero:device": 1})


async def test_a_corrupt_index_in_redis_is_reloaded_by_the_adapter_never_served(any_redis):
    async with backends(any_redis, 2) as ((a, b), vendor):
        await a.iometer.list_meters()
        shared = a.iometer._shared_installations
        assert shared is not None
        name = a.flight.entries.key(shared.kind, shared.key())  # type: ignore[attr-defined]
        blob = await a.tier.call("test", lambda r: r.get(name))
        header, _, body = blob.partition(b"\n")
        forged = body.replace(b'"id":"', b'"id":"0', 1)  # an id no listing has (not a UUID any more)
        assert forged != body
        await a.tier.call("test", lambda r: r.set(name, header + b"\n" + forged))
        listed = vendor.calls()["iometer:Installations"]
        device = vendor.iometer.data.devices[0].id
        await b.iometer.device_status(device)
        assert vendor.calls()["iometer:Installations"] > listed  # reloaded, not served
        assert b.iometer._device_index == a.iometer._device_index  # the reloaded listing, not the forged one


async def test_an_expired_waltero_device_record_is_looked_up_once_for_the_fleet(any_redis):
    async with backends(any_redis, 3) as (replicas, vendor):
        device = WALTERO_DEVICES[0]
        records = await asyncio.gather(*(r.waltero._device_metadata(device) for r in replicas))
        assert len({r.model_dump_json() for r in records}) == 1
        assert vendor.calls()["waltero:device"] == 1
        assert vendor.calls()["waltero:me"] == 1
        # every replica's copy and the fleet's are past the refresh age: one lookup again, for all
        for r in replicas:
            r.waltero._metadata_at[device] -= DIRECTORY_TTL + 1
        shared = replicas[0].waltero._shared_devices
        assert shared is not None
        name = replicas[0].flight.entries.key(shared.kind, shared.key(device))  # type: ignore[attr-defined]
        await replicas[0].tier.call("test", lambda r: r.delete(name))  # expired (or evicted)
        again = await asyncio.gather(*(r.waltero._device_metadata(device) for r in replicas))
        assert again == records
        assert vendor.calls()["waltero:device"] == 2


async def test_a_device_record_stored_under_another_device_is_not_served(any_redis):
    async with backends(any_redis, 2) as ((a, b), vendor):
        first, second = WALTERO_DEVICES[:2]
        await a.waltero._device_metadata(first)
        await a.waltero._device_metadata(second)
        shared = a.waltero._shared_devices
        assert shared is not None
        entries = a.flight.entries
        blob = await a.tier.call("test", lambda r: r.get(entries.key(shared.kind, shared.key(second))))  # type: ignore[attr-defined]
        # a well-formed record, but of the other device: as a forger with write access would store it
        await a.tier.call("test", lambda r: r.set(entries.key(shared.kind, shared.key(first)), blob))  # type: ignore[attr-defined]
        looked_up = vendor.calls()["waltero:device"]
        record = await b.waltero._device_metadata(first)
        assert record.id == first
        assert record == a.waltero._directory[first]
        assert vendor.calls()["waltero:device"] == looked_up + 1  # asked of Waltero, not served
