"""Two replicas of the app in one process, sharing a real redis-server, against the emulators in
live mode: what the shared tier changes, seen through the API (the multi-process fleet is
`test_replicas.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis

from app.backends.iometer import emulator as iometer_sandbox
from app.backends.registry import all_secrets, validate_startup
from app.backends.waltero import emulator as waltero_sandbox
from app.factory import create_app
from app.infra.config import Settings
from app.infra.errors import ConfigurationError
from tests.support.apps import API_KEY, running
from tests.support.clock import FakeClock
from tests.support.redis_server import RedisDeployment, RedisServer, start_deployment


def settings(redis: str | RedisDeployment | None, **more: Any) -> Settings:
    values: dict[str, Any] = {
        **iometer_sandbox.SANDBOX_SETTINGS,
        **waltero_sandbox.SANDBOX_SETTINGS,
        "IOMETER_URL": "http://iometer.test/api/v1/query",
        "WALTERO_URL": "http://waltero.test/prod",
        "FACADE_API_KEYS": API_KEY,
        "FACADE_CHANGES_POLL": 0,
        "FACADE_REDIS_TIMEOUT": 1.0,  # a busy 2-core test machine; the tier's own tests use short ones
        **more,
    }
    if isinstance(redis, RedisDeployment):
        values.update(redis.settings)
        values.setdefault("FACADE_REDIS_PREFIX", f"t{uuid.uuid4().hex[:12]}")  # one cluster/sentinel per session
    elif redis:
        values["FACADE_REDIS_URL"] = redis
    return Settings(**values)


@contextlib.asynccontextmanager
async def replicas(
    redis: str | RedisDeployment | None, n: int = 2, **more: Any
) -> AsyncIterator[tuple[list[httpx.AsyncClient], Any]]:
    """`n` apps on the same emulators and Redis; yields their clients and the Waltero emulator."""
    iometer = iometer_sandbox.create_emulator()
    waltero = waltero_sandbox.create_emulator()
    transports = {"iometer": httpx.ASGITransport(app=iometer.app), "waltero": httpx.ASGITransport(app=waltero.app)}
    one = settings(redis, **more)
    apps = [create_app(one, transports=transports) for _ in range(n)]
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(running(app)) for app in apps]
        yield clients, waltero


def sample(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_a_value_one_replica_loaded_is_served_to_the_other_from_redis(any_redis):
    async with replicas(any_redis) as ((a, b), waltero):
        first = await a.get("/meters", params={"backend": "waltero"})
        assert first.status_code == 200
        vendor_calls = waltero.stats["requests"]
        second = await b.get("/meters", params={"backend": "waltero"})
        assert second.status_code == 200
        assert second.json() == first.json()
        assert first.headers["x-cache"] == "MISS"
        assert second.headers["x-cache"] == "HIT"  # a hit of the fleet's cache: no vendor call was made
        assert waltero.stats["requests"] == vendor_calls  # b asked Redis, not Waltero
        assert waltero.stats["login"] == 1  # b never logged in: a's token is the fleet's
        metrics = (await b.get("/metrics")).text
        assert sample(metrics, 'facade_shared_cache_operations_total{operation="lookup",outcome="hit"}') == 1.0
        backends = (await b.get("/backends")).json()
        assert backends["shared_cache"] == {"status": "up", "mode": any_redis.mode, "last_error": None}


async def test_a_cursor_from_one_replica_pages_on_the_other_without_a_cursor_secret(any_redis):
    async with replicas(any_redis) as ((a, b), _):
        page = (await a.get("/meters", params={"limit": 1})).json()
        assert page["next_cursor"]
        following = await b.get("/meters", params={"cursor": page["next_cursor"]})
        assert following.status_code == 200, following.text
        assert following.json()["items"][0]["id"] > page["items"][0]["id"]


async def test_without_redis_cursors_stay_per_replica():
    async with replicas(None) as ((a, b), _):
        page = (await a.get("/meters", params={"limit": 1})).json()
        assert (await b.get("/meters", params={"cursor": page["next_cursor"]})).status_code == 422
        assert (await a.get("/backends")).json()["shared_cache"] == {
            "status": "off",
            "mode": "standalone",
            "last_error": None,
        }


async def test_redis_down_changes_nothing_a_client_sees_but_the_status(redis_server, caplog):
    caplog.set_level(logging.WARNING, logger="app.shared")
    async with replicas(redis_server.url, n=1) as ((a,), _):
        meters = (await a.get("/meters", params={"backend": "waltero"})).json()["items"]
        redis_server.kill()
        for _ in range(3):  # misses (new keys) and hits alike answer as without Redis
            readings = await a.get("/readings", params={"meter_id": meters[0]["id"], "start": "2026-01-01T00:00:00Z"})
            assert readings.status_code == 200, readings.text
            assert (await a.get("/meters", params={"limit": 2})).status_code == 200
        shared = (await a.get("/backends")).json()["shared_cache"]
        assert shared["status"] == "down"
        assert shared["last_error"] in ("ConnectionError", "TimeoutError")
        assert (await a.get("/readyz")).status_code == 200
        outage = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(outage) == 1  # one line per outage, not per request
        redis_server.start()
        async with asyncio.timeout(10):
            while (await a.get("/backends")).json()["shared_cache"]["status"] != "up":
                await asyncio.sleep(0.1)


def test_the_redis_url_is_checked_and_its_password_redacted():
    with pytest.raises(ConfigurationError, match="FACADE_REDIS_URL"):
        validate_startup(settings("http://127.0.0.1:6379"))
    configured = settings("rediss://facade:pa55-word-redis@redis.internal:6380/0")
    validate_startup(configured)
    assert "pa55-word-redis" in all_secrets(configured)
    assert "pa55-word-redis" not in repr(configured)


async def test_a_rejected_token_costs_the_fleet_one_login_not_one_per_replica(any_redis):
    vendor_clock = FakeClock(time.time())
    iometer = iometer_sandbox.create_emulator()
    waltero = waltero_sandbox.create_emulator(vendor_clock, token_ttl=3600)
    transports = {"iometer": httpx.ASGITransport(app=iometer.app), "waltero": httpx.ASGITransport(app=waltero.app)}
    one = settings(any_redis)
    apps = [create_app(one, transports=transports) for _ in range(2)]
    async with running(apps[0]) as a, running(apps[1]) as b:
        meters = (await a.get("/meters", params={"backend": "waltero"})).json()["items"]
        devices = [m["device_id"] for m in meters[:4]]
        assert (await b.get(f"/devices/{devices[0]}/status")).status_code == 200
        assert waltero.stats["login"] == 1  # b took a's token from Redis
        vendor_clock.advance(3601)  # Waltero now answers 401 to the token both replicas hold
        answers = await asyncio.gather(a.get(f"/devices/{devices[1]}/status"), b.get(f"/devices/{devices[2]}/status"))
        assert [r.status_code for r in answers] == [200, 200]
        assert waltero.stats["login"] == 2  # the shared token was dropped once, renewed once


async def test_a_wrong_redis_password_is_reported_as_such_not_retried_as_an_outage(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="app.shared")
    server = RedisServer(tmp_path, password="right-pw-123")
    server.start()
    try:
        wrong = server.url.replace("right-pw-123", "wrong-pw-456")
        async with replicas(wrong, n=1) as ((a,), _):
            assert (await a.get("/meters", params={"backend": "waltero"})).status_code == 200
            shared = (await a.get("/backends")).json()["shared_cache"]
            assert shared == {"status": "down", "mode": "standalone", "last_error": "AuthenticationError"}
            await asyncio.sleep(1.2)  # an outage would be probed twice a second, each probe a connection
            assert (await a.get("/backends")).json()["shared_cache"]["last_error"] == "AuthenticationError"
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert "credentials" in errors[0].getMessage()
        assert not [r for r in caplog.records if "unreachable" in r.getMessage()]  # not called an outage
        assert "wrong-pw-456" not in caplog.text
    finally:
        server.stop()


async def test_every_command_refused_by_acl_is_degraded_with_its_error_class(redis_server):
    admin = redis.Redis.from_url(redis_server.url)
    try:
        # A user that may connect and read INFO but nothing else: each shared operation gets NOPERM.
        admin.execute_command("ACL", "SETUSER", "narrow", "on", ">narrow-pw-1", "~*", "+ping", "+info", "+hello")
    finally:
        admin.close()
    url = redis_server.url.replace("redis://", "redis://narrow:narrow-pw-1@")
    async with replicas(url, n=1) as ((a,), _):
        meters = (await a.get("/meters", params={"backend": "waltero"})).json()["items"]
        for i in range(6):  # misses: each tries Redis, gets NOPERM, answers from the vendor
            start = f"2026-0{1 + i % 6}-01T00:00:00Z"
            got = await a.get("/readings", params={"meter_id": meters[0]["id"], "start": start})
            assert got.status_code == 200, got.text
        shared = (await a.get("/backends")).json()["shared_cache"]
        assert shared == {"status": "degraded", "mode": "standalone", "last_error": "NoPermissionError"}
        metrics = (await a.get("/metrics")).text
        assert sample(metrics, 'facade_shared_cache_operations_total{operation="lookup",outcome="error"}') >= 6


async def test_during_a_vendor_outage_any_replica_serves_the_fleets_stale_copy(any_redis):
    # Fresh for 1 s, then usable for 10 more minutes if the vendor fails (FACADE_STALE_IF_ERROR).
    async with replicas(any_redis, n=3, FACADE_TTL_METERS=1, FACADE_STALE_IF_ERROR=600) as ((a, b, c), waltero):
        first = await a.get("/meters", params={"backend": "waltero"})
        assert first.status_code == 200
        await asyncio.sleep(1.2)  # no longer fresh anywhere
        waltero.faults.outage = True
        answers = [await r.get("/meters", params={"backend": "waltero"}) for r in (b, c, a)]
        # b and c never loaded it themselves: Redis holds the fleet's copy, and each serves it
        assert [r.status_code for r in answers] == [200, 200, 200], [r.text for r in answers]
        assert [r.headers["x-cache"] for r in answers] == ["STALE"] * 3
        assert all(r.json()["items"] == first.json()["items"] for r in answers)
        waltero.faults.outage = False


async def test_a_sentinel_failover_under_load_answers_everything_and_keeps_corrections(tmp_path):
    """Replicas under load while Sentinel promotes the replica: every request is answered, the
    shared tier goes down then up again, and a correction made after it evicts on every replica."""
    deployment = start_deployment("sentinel", tmp_path)
    assert deployment.sentinel_set is not None
    iometer = iometer_sandbox.create_emulator()
    waltero = waltero_sandbox.create_emulator()
    transports = {"iometer": httpx.ASGITransport(app=iometer.app), "waltero": httpx.ASGITransport(app=waltero.app)}
    one = settings(deployment, FACADE_CHANGES_POLL=0.5)
    apps = [create_app(one, transports=transports) for _ in range(2)]
    statuses: list[str] = []
    answers: list[int] = []
    try:
        async with running(apps[0]) as a, running(apps[1]) as b:
            for app in apps:
                app.runtime.fleet.tier.on_status(statuses.append)
            meter = (await a.get("/meters", params={"backend": "waltero"})).json()["items"][0]["id"]
            started = asyncio.get_running_loop().time()

            async def load(client: httpx.AsyncClient, n: int) -> None:
                k = 0
                while asyncio.get_running_loop().time() - started < 6.0:
                    k += 1
                    # a new week each time: misses, so Redis is written to (lookups, locks, entries)
                    top = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(weeks=n * 40 + k)
                    start, end = (
                        top.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        (top + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    )
                    got = await client.get("/readings", params={"meter_id": meter, "start": start, "end": end})
                    answers.append(got.status_code)

            async def failover() -> None:
                # The primary hangs (SIGSTOP): Sentinel finds it down after 1 s and promotes the replica.
                await asyncio.sleep(0.5)
                sentinel_set = deployment.sentinel_set
                assert sentinel_set is not None
                old = sentinel_set.primary_port()
                sentinel_set.primary.pause()
                try:
                    async with asyncio.timeout(30):
                        while await asyncio.to_thread(sentinel_set.primary_port) in (0, old):
                            await asyncio.sleep(0.2)
                finally:
                    sentinel_set.primary.resume()  # it comes back as a replica of the new primary

            await asyncio.gather(load(a, 0), load(b, 1), load(a, 2), load(b, 3), failover())
            assert answers
            assert set(answers) == {200}  # every request answered, during the failover too
            async with asyncio.timeout(15):
                while [(await c.get("/backends")).json()["shared_cache"]["status"] for c in (a, b)] != ["up", "up"]:
                    await asyncio.sleep(0.1)
            assert "down" in statuses  # the demoted primary was noticed, then left
            assert statuses[-1] == "up"

            # A correction after the failover evicts on every replica, and the old value never comes back.
            top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=120)
            window = top.strftime("%Y-%m-%dT%H:%M:%SZ"), (top + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            params = {"meter_id": meter, "start": window[0], "end": window[1]}
            before = [(await c.get("/readings", params=params)).json()["items"] for c in (a, b)]
            assert before[0]
            assert before[0] == before[1]
            target = before[0][0]
            vendor = httpx.AsyncClient(transport=transports["waltero"], base_url="http://waltero.test")
            correction = {
                "device_id": meter.split(":", 1)[1],
                "timestamp": target["time"],
                "new_value": 987654.0,
                "actor": "user",
            }
            assert (await vendor.post("/_sandbox/corrections", json=correction)).status_code == 201
            await vendor.aclose()
            changed: set[int] = set()
            async with asyncio.timeout(15):
                while len(changed) < 2:
                    for i, c in enumerate((a, b)):
                        if (await c.get("/readings", params=params)).json()["items"][0]["value"] != target["value"]:
                            changed.add(i)
                    await asyncio.sleep(0.1)
            for _ in range(5):
                for c in (a, b):
                    assert (await c.get("/readings", params=params)).json()["items"][0]["value"] == 987654.0
    finally:
        deployment.stop()


def test_each_redis_mode_says_what_it_needs():
    with pytest.raises(ConfigurationError, match="FACADE_REDIS_SENTINELS"):
        validate_startup(settings("redis://mymaster/0", FACADE_REDIS_MODE="sentinel"))
    with pytest.raises(ConfigurationError, match="database 0"):
        validate_startup(settings("redis://node-1:6379/3", FACADE_REDIS_MODE="cluster"))
    validate_startup(
        settings("rediss://u:p@mymaster/0", FACADE_REDIS_MODE="sentinel", FACADE_REDIS_SENTINELS="s1:26379,s2:26379")
    )
    validate_startup(settings("rediss://u:p@node-1:6379", FACADE_REDIS_MODE="cluster"))
