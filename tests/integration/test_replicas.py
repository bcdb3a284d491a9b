"""A fleet: 3 replicas (separate uvicorn processes) + both emulators as HTTP servers + a real Redis
of each `FACADE_REDIS_MODE` (one server, a 3-node Cluster, a Sentinel-managed primary), all on
127.0.0.1, started once per mode and stopped by PID.

Vendor calls are counted by the Waltero emulator itself (`/_sandbox/stats`), never by the facade.
The emulator issues 3-second tokens, so the login test sees several lifetimes in a few seconds.
The module is ordered: the Redis outage and the replica kill come last (standalone only: they
kill processes the other modes' tests cover in their own ways).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from app.backends.iometer import emulator as iometer_sandbox
from app.backends.waltero import emulator as waltero_sandbox
from tests.support.redis_server import MODES, RedisDeployment, RedisServer, start_deployment
from tests.support.servers import free_port, wait_until_up

KEY = "fleet-key-0123456789"
TOKEN_TTL = 3
POLL = 1.0
DEADLINE = 8.0


@dataclass
class Fleet:
    replicas: list[str]
    procs: list[subprocess.Popen[bytes]]
    waltero: str
    deployment: RedisDeployment
    prefix: str
    meter: str = ""
    spare: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stats(self) -> dict[str, int]:
        return dict(httpx.get(f"{self.waltero}/_sandbox/stats", timeout=10).json())

    def client(self, i: int, **kw: Any) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=60, max_keepalive_connections=60)
        return httpx.AsyncClient(base_url=self.replicas[i], headers={"X-API-Key": KEY}, timeout=30, limits=limits, **kw)

    def metric(self, i: int, line_start: str) -> float:
        text = httpx.get(f"{self.replicas[i]}/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith(line_start + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    @property
    def redis(self) -> RedisServer:
        assert self.deployment.server is not None, "standalone only"
        return self.deployment.server

    def shared_cache(self, i: int) -> dict[str, Any]:
        body = httpx.get(f"{self.replicas[i]}/backends", headers={"X-API-Key": KEY}, timeout=10).json()
        return dict(body["shared_cache"])

    def shared_status(self, i: int) -> str:
        return str(self.shared_cache(i)["status"])


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("FACADE_", "IOMETER_", "WALTERO_"))}


def _start(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # a file, not a pipe: a chatty process must never block on a full pipe
        return subprocess.Popen(argv, env=env or _clean_env(), stdout=out, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def past_hour(hours_ago: int) -> tuple[str, str]:
    # Readings are cached in week-long chunks (Waltero): tests that need a cold key pick a week of their own.
    """A one-hour window in the past (its readings live FACADE_TTL_PAST in every cache)."""
    top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours_ago)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return top.strftime(fmt), (top + timedelta(hours=1)).strftime(fmt)


@pytest.fixture(scope="module", params=MODES)
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("fleet")
    deployment = start_deployment(str(request.param), tmp)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        io_port, wa_port = free_port(), free_port()
        py = sys.executable
        procs.append(_start([py, "-m", "app.backends.iometer.emulator", "--port", str(io_port)], tmp / "iometer.log"))
        procs.append(
            _start(
                [py, "-m", "app.backends.waltero.emulator", "--port", str(wa_port), "--token-ttl", str(TOKEN_TTL)],
                tmp / "waltero.log",
            )
        )
        prefix = f"fleet{os.getpid()}"
        env = {
            **_clean_env(),
            **iometer_sandbox.SANDBOX_SETTINGS,
            **waltero_sandbox.SANDBOX_SETTINGS,
            "IOMETER_URL": f"http://127.0.0.1:{io_port}/api/v1/query",
            "WALTERO_URL": f"http://127.0.0.1:{wa_port}/prod",
            "FACADE_API_KEYS": KEY,
            **deployment.settings,
            "FACADE_REDIS_PREFIX": prefix,
            # Generous on a 2-core machine shared with other work: these tests count calls exactly;
            # the tier's own tests cover short timeouts.
            "FACADE_REDIS_TIMEOUT": "1.0",
            "FACADE_CHANGES_POLL": str(POLL),
            "FACADE_REQUEST_DEADLINE": str(DEADLINE),
            "FACADE_LOG_LEVEL": "WARNING",
        }
        ports = [free_port() for _ in range(3)]
        replicas = []
        for i, port in enumerate(ports):
            argv = [py, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
            procs.append(_start(argv, tmp / f"replica{i}.log", env))
            replicas.append(f"http://127.0.0.1:{port}")
        waltero = f"http://127.0.0.1:{wa_port}"
        for url in (f"http://127.0.0.1:{io_port}/_sandbox/stats", f"{waltero}/_sandbox/stats"):
            wait_until_up(url, timeout=60)
        for url in replicas:
            wait_until_up(f"{url}/healthz", timeout=60)
        f = Fleet(replicas, procs[2:], waltero, deployment, prefix)
        meters = httpx.get(f"{replicas[0]}/meters", params={"backend": "waltero"}, headers={"X-API-Key": KEY}).json()
        f.meter = next(m["id"] for m in meters["items"] if m["medium"] == "water")
        yield f
    finally:
        for proc in reversed(procs):
            _stop(proc)
        deployment.stop()


async def test_300_requests_over_20_hot_keys_cost_what_one_replica_costs(fleet: Fleet) -> None:
    # 20 keys: a week apart, so each is its own cached chunk of readings (Waltero's are a week long)
    windows = [past_hour(100 + i * 24 * 7) for i in range(20)]
    before = fleet.stats().get("telemetry", 0)
    clients = [fleet.client(i) for i in range(3)]
    statuses: list[int] = []

    async def user(j: int) -> None:
        for k in range(10):
            n = j * 10 + k
            start, end = windows[n % 20]
            params = {"meter_id": fleet.meter, "start": start, "end": end}
            statuses.append((await clients[n % 3].get("/readings", params=params)).status_code)

    try:
        await asyncio.gather(*(user(j) for j in range(30)))
    finally:
        for c in clients:
            await c.aclose()
    assert len(statuses) == 300
    assert set(statuses) == {200}
    # One replica alone makes 20 calls (one per key); the fleet at most that + 10 %.
    assert 20 <= fleet.stats().get("telemetry", 0) - before <= 22
    assert [fleet.shared_cache(i) for i in range(3)] == [
        {"status": "up", "mode": fleet.deployment.mode, "last_error": None}
    ] * 3


async def test_60_concurrent_identical_cold_requests_make_one_vendor_call(fleet: Fleet) -> None:
    start, end = past_hour(24 * 7 * 30)
    before = fleet.stats().get("telemetry", 0)
    clients = [fleet.client(i) for i in range(3)]
    params = {"meter_id": fleet.meter, "start": start, "end": end}
    try:
        answers = await asyncio.gather(*(clients[n % 3].get("/readings", params=params) for n in range(60)))
    finally:
        for c in clients:
            await c.aclose()
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert fleet.stats().get("telemetry", 0) - before == 1


async def test_a_cursor_from_one_replica_pages_on_the_others(fleet: Fleet) -> None:
    async with fleet.client(0) as a, fleet.client(1) as b, fleet.client(2) as c:
        first = (await a.get("/meters", params={"limit": 2})).json()
        assert first["next_cursor"]
        pages = [await other.get("/meters", params={"cursor": first["next_cursor"]}) for other in (b, c)]
    assert [p.status_code for p in pages] == [200, 200]
    assert pages[0].json() == pages[1].json()
    assert pages[0].json()["items"][0]["id"] > first["items"][-1]["id"]


async def test_about_one_login_per_token_lifetime_for_the_whole_fleet(fleet: Fleet) -> None:
    before = fleet.stats().get("login", 0)
    clients = [fleet.client(i) for i in range(3)]
    duration = 3 * TOKEN_TTL
    statuses: list[int] = []
    started = time.monotonic()

    async def steady(i: int) -> None:
        n = 0
        while time.monotonic() - started < duration:
            n += 1
            # a new window each time: every request goes to the vendor, so every replica needs a token
            start, end = past_hour(1000 + i * 500 + n)
            params = {"meter_id": fleet.meter, "start": start, "end": end}
            statuses.append((await clients[i].get("/readings", params=params)).status_code)
            await asyncio.sleep(0.05)

    try:
        await asyncio.gather(*(steady(i) for i in range(3)))
    finally:
        for c in clients:
            await c.aclose()
    logins = fleet.stats().get("login", 0) - before
    lifetimes = duration / (TOKEN_TTL * 0.9)  # each token is renewed a tenth of its lifetime early
    assert set(statuses) == {200}
    assert len(statuses) > 30
    # One login per lifetime for the fleet (+1 for a renewal straddling the window's edges), where
    # replicas on their own would need three each lifetime.
    assert 1 <= logins <= int(lifetimes) + 2, logins


async def test_a_correction_is_gone_from_every_replica_within_one_poll_and_one_replica_polled(fleet: Fleet) -> None:
    start, end = past_hour(120)  # a week with data (cached already or not: each replica reads it first)
    params = {"meter_id": fleet.meter, "start": start, "end": end}
    clients = [fleet.client(i) for i in range(3)]
    polled_before = [
        fleet.metric(i, 'facade_upstream_requests_total{backend="waltero",operation="changes",outcome="ok"}')
        for i in range(3)
    ]
    try:
        seen = [(await c.get("/readings", params=params)).json()["items"] for c in clients]
        assert seen[0]
        assert seen[1] == seen[0]
        assert seen[2] == seen[0]
        target = seen[0][0]
        upstream_id = fleet.meter.split(":", 1)[1]
        correction = {"device_id": upstream_id, "timestamp": target["time"], "new_value": 987654.0, "actor": "user"}
        created = httpx.post(f"{fleet.waltero}/_sandbox/corrections", json=correction, timeout=10)
        assert created.status_code == 201, created.text
        corrected_at = time.monotonic()
        changed: dict[int, float] = {}
        while len(changed) < 3 and time.monotonic() - corrected_at < POLL * 2 + 2:
            for i, c in enumerate(clients):
                if i not in changed:
                    items = (await c.get("/readings", params=params)).json()["items"]
                    if items[0]["value"] != target["value"]:
                        changed[i] = time.monotonic() - corrected_at
            await asyncio.sleep(0.05)
    finally:
        for c in clients:
            await c.aclose()
    assert sorted(changed) == [0, 1, 2], changed
    # within one poll (plus the broadcast's few milliseconds and a test loop's turn)
    assert max(changed.values()) < POLL * 2 + 1
    polled = [
        fleet.metric(i, 'facade_upstream_requests_total{backend="waltero",operation="changes",outcome="ok"}')
        - polled_before[i]
        for i in range(3)
    ]
    assert sum(1 for p in polled if p > 0) == 1, polled


@pytest.mark.parametrize("fleet", ["standalone"], indirect=True)
async def test_redis_killed_mid_load_every_request_answers_and_sharing_resumes(fleet: Fleet) -> None:
    clients = [fleet.client(i) for i in range(3)]
    statuses: list[int] = []
    started = time.monotonic()
    killed = asyncio.Event()

    async def load(i: int) -> None:
        n = 0
        while time.monotonic() - started < 3.0:
            n += 1
            start, end = past_hour(3000 + i * 1000 + n) if n % 2 else past_hour(100 + n % 20)
            params = {"meter_id": fleet.meter, "start": start, "end": end}
            statuses.append((await clients[i].get("/readings", params=params)).status_code)

    async def kill() -> None:
        await asyncio.sleep(1.0)
        fleet.redis.kill()
        killed.set()

    try:
        await asyncio.gather(*(load(i) for i in range(3)), kill())
    finally:
        for c in clients:
            await c.aclose()
    assert killed.is_set()
    assert statuses
    assert set(statuses) == {200}  # the vendor is healthy: Redis going away costs no request anything
    assert [fleet.shared_status(i) for i in range(3)] == ["down", "down", "down"]

    fleet.redis.start()
    deadline = time.monotonic() + 10
    while any(fleet.shared_status(i) != "up" for i in range(3)):
        assert time.monotonic() < deadline, [fleet.shared_status(i) for i in range(3)]
        await asyncio.sleep(0.2)
    # shared again: a value loaded on one replica is served to another from Redis
    start, end = past_hour(24 * 7 * 40)
    params = {"meter_id": fleet.meter, "start": start, "end": end}
    before = fleet.stats().get("telemetry", 0)
    async with fleet.client(0) as a, fleet.client(1) as b:
        assert (await a.get("/readings", params=params)).status_code == 200
        assert (await b.get("/readings", params=params)).status_code == 200
    assert fleet.stats().get("telemetry", 0) - before == 1


@pytest.mark.parametrize("fleet", ["standalone"], indirect=True)
async def test_a_replica_killed_holding_a_flight_lock_does_not_hold_up_the_others(fleet: Fleet) -> None:
    start, end = past_hour(24 * 7 * 50)
    params = {"meter_id": fleet.meter, "start": start, "end": end}
    httpx.put(f"{fleet.waltero}/_sandbox/faults", json={"hang": True}, timeout=10).raise_for_status()
    victim = fleet.client(2)
    doomed = asyncio.create_task(victim.get("/readings", params=params))
    r = redis.Redis.from_url(fleet.redis.url)
    try:
        deadline = time.monotonic() + 10
        while not r.keys(f"{fleet.prefix}:lock:*"):  # replica 2 holds the key's lock, its vendor call hangs
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        os.kill(fleet.procs[2].pid, signal.SIGKILL)
        fleet.procs[2].wait(timeout=10)
        httpx.post(f"{fleet.waltero}/_sandbox/reset", timeout=10).raise_for_status()  # the vendor answers again
        started = time.monotonic()
        async with fleet.client(0) as a, fleet.client(1) as b:
            answers = await asyncio.gather(a.get("/readings", params=params), b.get("/readings", params=params))
        elapsed = time.monotonic() - started
    finally:
        doomed.cancel()
        with contextlib.suppress(BaseException):
            await doomed
        await victim.aclose()
        r.close()
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json() == answers[1].json()
    assert elapsed < DEADLINE
