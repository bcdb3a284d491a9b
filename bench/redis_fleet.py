"""The shared tier's figures for `bench/run.py` (step `redis`, `--only redis`):

- hits with `uvicorn --workers 2` sharing Redis vs one worker without it (target >= 1.6x on 2 cores);
- a shared-tier hit (in-process miss, Redis hit) vs an in-process hit: added p50 end to end (target
  <= 0.5 ms; it includes the route rendering a hit-path hit skips), and the lookup itself in-process.

Needs `redis-server` (the Debian package); without it the step says so instead of measuring.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench.run import (
    KEY,
    SERVER_CPU,
    emulators,
    facade,
    free_port,
    pct,
    sandbox_env,
    server,
    stats,
    uvicorn,
    wrk_rps,
)


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        proc = subprocess.Popen([*argv, "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            import redis

            client = redis.Redis(port=port)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            client.close()
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def _windows(meter: str, n: int, offset: int) -> list[str]:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    out = []
    for i in range(n):
        t0 = now - timedelta(hours=offset + i)
        out.append(
            f"/readings?meter_id={meter}&start={t0:%Y-%m-%dT%H:%M:%SZ}&end={t0 + timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}"
        )
    return out


async def _sequential(base: str, paths: list[str]) -> list[float]:
    out = []
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": KEY}, timeout=30) as client:
        for path in paths:
            started = time.perf_counter()
            (await client.get(path)).raise_for_status()
            out.append(time.perf_counter() - started)
    return out


async def _lookup_micro(url: str, n: int = 300) -> dict[str, float]:
    """The Redis part alone: `FleetFlight.load` answering from Redis (lookup script + decode) for a
    readings page of 4 rows, in this process."""
    from app.core.chunks import Chunk
    from app.core.fleet import CACHE_KINDS, Fleet
    from app.domain.models import Reading
    from app.infra.metrics import Metrics
    from app.shared.entries import SharedEntry

    now = time.time()
    fleet = Fleet(url, prefix="benchmicro", timeout=1.0, clock=time.time, metrics=Metrics(), budget=5)
    await fleet.tier.start()
    rows = Chunk(
        [
            Reading(meter_id="waltero:x", time=datetime.now(UTC), quantity="volume", obis=None, value=i, unit="m3")
            for i in range(4)
        ]
    )
    kind = CACHE_KINDS["readings"]

    async def make() -> SharedEntry[Any]:
        return SharedEntry(rows, now, now + 3600, now + 4200, frozenset({"waltero:x"}))

    try:
        for i in range(n):
            await fleet.flight.load(kind, ("waltero", i), make, budget=5)
        took = []
        for i in range(n):
            started = time.perf_counter()
            _entry, outcome = await fleet.flight.load(kind, ("waltero", i), make, budget=5)
            took.append(time.perf_counter() - started)
            assert outcome == "shared"
    finally:
        await fleet.aclose()
    return {"p50_ms": pct(took, 50) * 1000, "p99_ms": pct(took, 99) * 1000}


def measure_redis(rounds: int, duration: float) -> dict[str, Any]:
    if shutil.which("redis-server") is None and not shutil.which("/usr/bin/redis-server"):
        return {"skipped": "install the Debian package redis-server"}
    out: dict[str, Any] = {}
    with redis_server() as url, emulators() as (io_port, wa_port):
        # --- 1. hit throughput: 2 workers + Redis vs 1 worker ---------------------------------------
        with facade(io_port, wa_port) as (one, _pid):
            meter = httpx.get(f"{one}/meters", params={"backend": "iometer"}, headers={"X-API-Key": KEY}).json()[
                "items"
            ][0]["id"]
            path = f"/meters/{meter}"
            port = free_port()
            env = sandbox_env(io_port, wa_port, FACADE_REDIS_URL=url, FACADE_REDIS_PREFIX="benchworkers")
            argv = uvicorn("app.main:app", port, "--workers", "2")
            with server(argv, f"http://127.0.0.1:{port}/healthz", env, cpu="0,1") as _pid2:
                two = f"http://127.0.0.1:{port}"
                for base in (one, two):  # every worker's hit path warm
                    for _ in range(50):
                        httpx.get(base + path, headers={"X-API-Key": KEY}).raise_for_status()
                rows: dict[str, list[float]] = {"one_worker": [], "two_workers_redis": []}
                for _ in range(rounds):
                    rows["one_worker"].append(wrk_rps(one + path, duration))
                    rows["two_workers_redis"].append(wrk_rps(two + path, duration))
            med = {k: statistics.median(v) for k, v in rows.items()}
            out["hits_two_workers_vs_one"] = {
                "path": "GET /meters/{id}",
                "rps_median": med,
                "ratio": med["two_workers_redis"] / med["one_worker"],
                "target": 1.6,
                "note": f"one worker pinned to core {SERVER_CPU}; two workers on cores 0,1; wrk on core 1 in both",
            }
        # --- 2. a shared-tier hit vs an in-process hit ---------------------------------------------
        extra = {"FACADE_REDIS_URL": url, "FACADE_REDIS_PREFIX": "benchlatency"}
        with facade(io_port, wa_port, **extra) as (a, _pa), facade(io_port, wa_port, **extra) as (b, _pb):
            meter = httpx.get(f"{a}/meters", params={"backend": "waltero"}, headers={"X-API-Key": KEY}).json()["items"][
                0
            ]["id"]
            paths = _windows(meter, 300, offset=500)
            asyncio.run(_sequential(a, paths))  # loaded by A: now in Redis
            before = stats(wa_port).get("telemetry", 0)
            shared = asyncio.run(_sequential(b, paths))  # B: in-process miss, Redis hit
            local = asyncio.run(_sequential(b, paths))  # B again: in-process hit (the hit path)
            # B again with a page size that changes nothing in the answer but the stored responses are
            # keyed by (unknown parameters are refused): an in-process data-cache hit rendered by the
            # route, the path a shared-tier hit also takes
            routed = asyncio.run(_sequential(b, [p + "&limit=1000" for p in paths]))
            vendor_calls = stats(wa_port).get("telemetry", 0) - before
        out["shared_tier_hit_added_latency"] = {
            "requests": len(paths),
            "vendor_calls_during_measure": vendor_calls,
            "shared_hit_p50_ms": pct(shared, 50) * 1000,
            "in_process_hit_p50_ms": pct(local, 50) * 1000,
            "routed_in_process_hit_p50_ms": pct(routed, 50) * 1000,
            "added_p50_ms": (pct(shared, 50) - pct(local, 50)) * 1000,
            "added_over_routed_hit_p50_ms": (pct(shared, 50) - pct(routed, 50)) * 1000,
            "lookup_alone": asyncio.run(_lookup_micro(url)),
            "target_ms": 0.5,
        }
    return out


def render(r: dict[str, Any]) -> list[str]:
    if not r:
        return []
    if "skipped" in r:
        return [f"| shared tier (Redis) | skipped: {r['skipped']} | - | - |"]
    lines = []
    hits = r["hits_two_workers_vs_one"]
    lines.append(
        f"| cache hits, `--workers 2` + Redis vs 1 worker ({hits['path']}) | {hits['ratio']:.2f}x | >= 1.6x | "
        f"{'yes' if hits['ratio'] >= 1.6 else 'no'} |"
    )
    lat = r["shared_tier_hit_added_latency"]
    lines.append(
        f"| shared-tier hit (in-process miss, Redis hit) added p50 over an in-process hit | "
        f"{lat['added_p50_ms']:.2f} ms ({lat['vendor_calls_during_measure']} vendor calls) | <= 0.5 ms | "
        f"{'yes' if lat['added_p50_ms'] <= 0.5 else 'no'} |"
    )
    lines.append(
        f"| ... of which Redis: added p50 over an in-process data hit rendered by the route | "
        f"{lat['added_over_routed_hit_p50_ms']:.2f} ms (lookup alone, in-process: {lat['lookup_alone']['p50_ms']:.2f} ms)"
        f" | <= 0.5 ms | {'yes' if lat['added_over_routed_hit_p50_ms'] <= 0.5 else 'no'} |"
    )
    return lines
