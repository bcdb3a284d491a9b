"""`make bench`: how fast and how frugal the facade is, as ratios measured in one run.

Starts on 127.0.0.1: both sandbox emulators as real HTTP servers, the facade (one uvicorn worker) in
live mode pointed at them, and reference servers serving the same bytes; drives load with `wrk`
(installed with apt-get if missing and possible) pinned to another core than the server. Every figure
is a ratio or a difference against a reference measured in the same run, because absolute numbers on
these shared machines drift by 20-30 %. Prints a table and writes bench/results.json.

    .venv/bin/python bench/run.py [--rounds 3] [--duration 4] [--only redis live ...] [--quick]

`--quick` keeps the three interleaved rounds but shrinks every count and duration: a check that the
bench runs end to end, not figures to quote.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable
KEY = "bench-key-0123456789abcdef"
CORES = os.cpu_count() or 1
SERVER_CPU, LOAD_CPU = "0", str(min(1, CORES - 1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cpu: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *argv] if shutil.which("taskset") and CORES > 1 else argv


@contextlib.contextmanager
def server(
    argv: list[str], health: str, env: dict[str, str] | None = None, cpu: str | None = SERVER_CPU, startup: float = 30
) -> Iterator[int]:
    """`argv` started (pinned to `cpu`, unless None), up once `health` answers; yields its PID, stops it."""
    log = tempfile.TemporaryFile()
    command = pinned(cpu, argv) if cpu is not None else argv
    proc = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=log, stderr=log, cwd=ROOT)
    try:
        deadline = time.monotonic() + startup
        while True:
            try:
                httpx.get(health, timeout=1, headers={"X-API-Key": KEY})
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"{argv} did not start:\n{log.read().decode()[-3000:]}") from None
                time.sleep(0.1)
        yield proc.pid
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def uvicorn(app: str, port: int, *extra: str) -> list[str]:
    return [
        PY,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        *extra,
    ]


def ensure_wrk() -> str | None:
    if shutil.which("wrk"):
        return shutil.which("wrk")
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"], capture_output=True)
    return shutil.which("wrk")


def wrk_rps(url: str, duration: float, connections: int = 64) -> float:
    wrk = ensure_wrk()
    if wrk is None:
        return asyncio.run(python_rps(url, duration, connections))
    out = subprocess.run(
        pinned(
            LOAD_CPU, [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "-H", f"X-API-Key: {KEY}", url]
        ),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"non-2xx answers under load from {url}:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


async def python_rps(url: str, duration: float, connections: int) -> float:
    """Fallback load generator when wrk cannot be had (slower than the servers it measures)."""
    done = 0
    stop = time.monotonic() + duration
    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(limits=limits, headers={"X-API-Key": KEY}) as client:

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < stop:
                (await client.get(url)).raise_for_status()
                done += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
    return done / duration


def sandbox_env(io_port: int, wa_port: int, **extra: str) -> dict[str, str]:
    from app.backends.iometer import emulator as iometer
    from app.backends.waltero import emulator as waltero

    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACADE_", "IOMETER_", "WALTERO_"))}
    env.update(iometer.SANDBOX_SETTINGS)
    env.update(waltero.SANDBOX_SETTINGS)
    env.update(
        {
            "IOMETER_URL": f"http://127.0.0.1:{io_port}/api/v1/query",
            "WALTERO_URL": f"http://127.0.0.1:{wa_port}",
            "FACADE_API_KEYS": KEY,
            "FACADE_CHANGES_POLL": "0",
            "FACADE_LOG_LEVEL": "INFO",
        }
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def emulators(token_ttl: int | None = None) -> Iterator[tuple[int, int]]:
    io_port, wa_port = free_port(), free_port()
    wa_args = ["--token-ttl", str(token_ttl)] if token_ttl else []
    with (
        server(
            [PY, "-m", "app.backends.iometer.emulator", "--port", str(io_port)],
            f"http://127.0.0.1:{io_port}/_sandbox/stats",
            cpu=LOAD_CPU,
        ),
        server(
            [PY, "-m", "app.backends.waltero.emulator", "--port", str(wa_port), *wa_args],
            f"http://127.0.0.1:{wa_port}/_sandbox/stats",
            cpu=LOAD_CPU,
        ),
    ):
        yield io_port, wa_port


@contextlib.contextmanager
def facade(io_port: int, wa_port: int, **extra: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    with server(
        uvicorn("app.main:app", port), f"http://127.0.0.1:{port}/healthz", sandbox_env(io_port, wa_port, **extra)
    ) as pid:
        yield f"http://127.0.0.1:{port}", pid


def stats(port: int) -> dict[str, int]:
    return dict(httpx.get(f"http://127.0.0.1:{port}/_sandbox/stats", timeout=5).json())


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def day_window() -> tuple[str, str]:
    today = datetime.now(UTC).date()
    return str(today - timedelta(days=8)), str(today - timedelta(days=1))


# --- 1. cache-hit throughput -------------------------------------------------------------------


def measure_hits(rounds: int, duration: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    start, end = day_window()
    with emulators() as (io_port, wa_port), facade(io_port, wa_port) as (base, _pid):
        client = httpx.Client(base_url=base, headers={"X-API-Key": KEY}, timeout=30)
        meter = client.get("/meters", params={"backend": "iometer"}).json()["items"][0]["id"]
        targets = {
            "GET /meters/{id}": f"/meters/{meter}",
            "GET /consumption/daily": f"/consumption/daily?start={start}&end={end}&tz=Europe/Berlin&backend=waltero",
        }
        for name, path in targets.items():
            body = client.get(path).content
            assert client.get(path).headers["x-cache"] == "HIT", "the bench must measure warm hits"
            with tempfile.NamedTemporaryFile(delete=False) as f:
                f.write(body)
            env = {"BENCH_BODY_FILE": f.name}
            rows: dict[str, list[float]] = {"facade": [], "fastapi": [], "bare": []}
            ref_ports = {"fastapi": free_port(), "bare": free_port()}
            with (
                server(
                    uvicorn("bench.reference:fastapi_app", ref_ports["fastapi"]),
                    f"http://127.0.0.1:{ref_ports['fastapi']}/x",
                    env,
                ),
                server(
                    uvicorn("bench.reference:bare_app", ref_ports["bare"]),
                    f"http://127.0.0.1:{ref_ports['bare']}/x",
                    env,
                ),
            ):
                for _ in range(rounds):  # interleaved, so drift hits all three alike
                    rows["facade"].append(wrk_rps(base + path, duration))
                    rows["fastapi"].append(wrk_rps(f"http://127.0.0.1:{ref_ports['fastapi']}{path}", duration))
                    rows["bare"].append(wrk_rps(f"http://127.0.0.1:{ref_ports['bare']}{path}", duration))
            os.unlink(f.name)
            med = {k: statistics.median(v) for k, v in rows.items()}
            results[name] = {
                "bytes": len(body),
                "rps_median": med,
                "vs_fastapi_route": med["facade"] / med["fastapi"],
                "vs_bare_asgi": med["facade"] / med["bare"],
            }
    return results


# --- 2. cache-miss added latency ------------------------------------------------------------------


async def _latencies(
    client: httpx.AsyncClient, urls: list[str], concurrency: int, headers: dict[str, str]
) -> list[float]:
    queue = list(urls)
    out: list[float] = []

    async def worker() -> None:
        while queue:
            url = queue.pop()
            t0 = time.perf_counter()
            r = await client.get(url, headers=headers)
            out.append(time.perf_counter() - t0)
            r.raise_for_status()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


async def _miss_run(base: str, wa_port: int, n: int) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as client:
        login = await client.post(f"http://127.0.0.1:{wa_port}/api/auth/login", json=_waltero_credentials())
        token = login.json()["token"]
        meters = (await client.get(f"{base}/meters", params={"backend": "waltero"}, headers={"X-API-Key": KEY})).json()[
            "items"
        ]
        device = meters[0]["id"].split(":", 1)[1]
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        results: dict[str, Any] = {}
        for concurrency in (1, 8):
            facade_urls, direct_urls = [], []
            for i in range(n):
                # a one-hour window a week apart from every other: readings are cached in week-long chunks
                # (Waltero), so each facade call is a real miss that goes to the vendor
                t0 = now - timedelta(hours=1 + 24 * 7 * (i + concurrency * n))
                t1 = t0 + timedelta(hours=1)
                facade_urls.append(
                    f"{base}/readings?meter_id=waltero:{device}&start={t0:%Y-%m-%dT%H:%M:%SZ}&end={t1:%Y-%m-%dT%H:%M:%SZ}"
                )
                direct_urls.append(
                    f"http://127.0.0.1:{wa_port}/api/devices/{device}/telemetry?startDate={t0:%Y-%m-%dT%H:%M:%S.000Z}"
                    f"&endDate={t1:%Y-%m-%dT%H:%M:%S.000Z}&fields=meter.value.processed"
                )
            await _latencies(client, direct_urls[:20], concurrency, {"Authorization": f"Bearer {token}"})  # warm
            direct = await _latencies(client, direct_urls, concurrency, {"Authorization": f"Bearer {token}"})
            via = await _latencies(client, facade_urls, concurrency, {"X-API-Key": KEY})
            results[f"concurrency {concurrency}"] = {
                "direct_p50_ms": pct(direct, 50) * 1000,
                "direct_p99_ms": pct(direct, 99) * 1000,
                "facade_p50_ms": pct(via, 50) * 1000,
                "facade_p99_ms": pct(via, 99) * 1000,
                "added_p50_ms": (pct(via, 50) - pct(direct, 50)) * 1000,
                "added_p99_ms": (pct(via, 99) - pct(direct, 99)) * 1000,
            }
        return results


def _waltero_credentials() -> dict[str, str]:
    from app.backends.waltero import emulator as waltero

    return {
        "username": waltero.SANDBOX_SETTINGS["WALTERO_USERNAME"],
        "password": waltero.SANDBOX_SETTINGS["WALTERO_PASSWORD"],
    }


def measure_misses(n: int) -> dict[str, Any]:
    """Added latency of a miss with each upstream transport, side by side in one run (interleaved)."""
    out: dict[str, Any] = {}
    for transport in ("aiohttp", "httpx", "aiohttp", "httpx"):
        run = _measure_misses_with(n, transport)
        for name, row in run.items():
            out.setdefault(f"{name}, {transport} transport", []).append(row)
    return {name: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for name, rows in out.items()}


def _measure_misses_with(n: int, transport: str) -> dict[str, Any]:
    with (
        emulators() as (io_port, wa_port),
        facade(io_port, wa_port, FACADE_UPSTREAM_TRANSPORT=transport) as (
            base,
            _pid,
        ),
    ):
        # this process is the client of both paths: keep it off the facade's core, as wrk is
        previous = os.sched_getaffinity(0)
        if CORES > 1:
            os.sched_setaffinity(0, {int(LOAD_CPU)})
        try:
            return asyncio.run(_miss_run(base, wa_port, n))
        finally:
            os.sched_setaffinity(0, previous)


# --- 3. upstream amplification ----------------------------------------------------------------------


async def _burst(base: str, paths: list[str], total: int, concurrency: int) -> list[int]:
    statuses: list[int] = []
    queue = [paths[i % len(paths)] for i in range(total)]
    async with httpx.AsyncClient(
        base_url=base, headers={"X-API-Key": KEY}, timeout=30, limits=httpx.Limits(max_connections=concurrency)
    ) as client:

        async def worker() -> None:
            while queue:
                statuses.append((await client.get(queue.pop())).status_code)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def measure_amplification() -> dict[str, Any]:
    out: dict[str, Any] = {}
    start, end = day_window()
    with emulators() as (io_port, wa_port), facade(io_port, wa_port) as (base, _pid):
        meters = httpx.get(
            f"{base}/meters", params={"backend": "waltero", "limit": 1000}, headers={"X-API-Key": KEY}
        ).json()["items"]
        device = meters[0]["id"]
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        hot = [
            f"/readings?meter_id={device}&start={(now - timedelta(hours=h + 2)):%Y-%m-%dT%H:%M:%SZ}"
            f"&end={(now - timedelta(hours=h + 1)):%Y-%m-%dT%H:%M:%SZ}"
            for h in range(0, 20 * 24 * 7, 24 * 7)  # a week apart: 20 distinct cached chunks, 20 keys
        ]
        before = stats(wa_port)
        statuses = asyncio.run(_burst(base, hot, 1000, 50))
        after = stats(wa_port)
        out["1000 requests, 20 hot keys, 50 clients"] = {
            "client_errors": sum(1 for s in statuses if s != 200),
            "upstream_telemetry_calls": after.get("telemetry", 0) - before.get("telemetry", 0),
            "upstream_calls_all": after.get("requests", 0) - before.get("requests", 0),
            "target": 20,
        }
        org = meters[0]["site_id"]
        same_org = [m["id"] for m in meters if m["site_id"] == org]
        paths = [f"/consumption/daily?start={start}&end={end}&meter_id={m}" for m in same_org]
        before = stats(wa_port)
        statuses = asyncio.run(_burst(base, paths, 50, 50))
        after = stats(wa_port)
        organizations = len({m["site_id"] for m in meters})
        calls = after.get("daily_consumption", 0) - before.get("daily_consumption", 0)
        # docs/api-guide.md: one metering-v3 call per organization covers every meter; the service asks for
        # the whole backend, so every configured organization is read once
        out["50 requests for the daily consumption of different meters of one organization"] = {
            "distinct_meters": len(same_org),
            "client_errors": sum(1 for s in statuses if s != 200),
            "upstream_daily_calls": calls,
            "organizations": organizations,
            "calls_per_organization": calls / organizations,
            "target": 1,
        }
    ttl = 4
    with (
        emulators(token_ttl=ttl) as (io_port, wa_port),
        facade(io_port, wa_port, FACADE_TTL_RECENT="0", FACADE_TTL_PAST="0") as (base, _pid),
    ):
        meters = httpx.get(f"{base}/meters", params={"backend": "waltero"}, headers={"X-API-Key": KEY}).json()["items"]
        before = stats(wa_port)
        seconds = 4 * ttl
        stop = time.monotonic() + seconds
        errors = 0

        async def steady() -> None:
            nonlocal errors
            async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": KEY}, timeout=30) as client:
                i = 0
                while time.monotonic() < stop:
                    i += 1
                    r = await client.get(
                        f"/readings?meter_id={meters[i % len(meters)]['id']}&start={(datetime.now(UTC) - timedelta(hours=3)):%Y-%m-%dT%H:%M:%SZ}"
                    )
                    errors += r.status_code != 200
                    await asyncio.sleep(0.02)

        asyncio.run(steady())
        after = stats(wa_port)
        logins = after.get("login", 0) - before.get("login", 0)
        out["steady load across token lifetimes"] = {
            "token_lifetime_s": ttl,
            "seconds": seconds,
            "logins": logins,
            "logins_per_lifetime": logins / (seconds / ttl),
            "client_errors": errors,
            "target": 1,
        }
    return out


# --- 4. memory with full caches --------------------------------------------------------------------

MEMORY_PROBE = r"""
import asyncio, copy, json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from datetime import UTC, datetime, timedelta
import httpx
from app.infra.config import Settings
from app.factory import create_app
from app.api.http_cache import StoredResponse, etag_of

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            yield line.split()[0][:-1], int(line.split()[1]) / 1024

async def main():
    app = create_app(Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://f") as c:
            today = datetime.now(UTC).date()
            meters = (await c.get("/meters?limit=1000")).json()["items"]
            io = next(m for m in meters if m["backend"] == "iometer")
            wa = next(m for m in meters if m["backend"] == "waltero")
            t1 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
            t0 = t1 - timedelta(hours=6)
            await c.get(f"/readings?meter_id={io['id']}&start={t0:%Y-%m-%dT%H:%M:%SZ}&end={t1:%Y-%m-%dT%H:%M:%SZ}")
            await c.get(f"/consumption/daily?start={today - timedelta(days=31)}&end={today - timedelta(days=1)}")
            await c.get(f"/meters/{io['id']}")
            await c.get(f"/devices/{wa['device_id']}/status")
            await c.get(f"/changes?since={(datetime.now(UTC) - timedelta(days=30)):%Y-%m-%dT%H:%M:%SZ}")
        # one meter read on its own fills the `meter` cache (the list above already serves /meters/{id})
        backend, upstream = app.service.backends["iometer"].backend, io["id"].split(":", 1)[1]
        await app.service.caches["meter"].get_or_load(("iometer", upstream), lambda: backend.get_meter(upstream), ttl=300)
        service = app.service
        responses = app.responses
        base = dict(rss())
        per_cache = {}
        # fill every cache past its byte budget with copies of a real entry: the budget, not the
        # number of entries asked for, bounds what it holds
        for name, cache in service.caches.items():
            template = next(iter(cache._entries.items()), None)
            if template is None:
                continue
            key, entry = template
            before = dict(rss())["VmRSS"]
            inserted = 0
            while inserted < 2 * cache.max_bytes // max(entry.size, 1) and inserted < 20000:
                clone = copy.copy(entry)
                clone.value = copy.deepcopy(entry.value)
                cache._entries[(key, inserted)] = clone
                inserted += 1
            per_cache[name] = {"entries": len(cache), "bytes": cache.bytes, "budget": cache.max_bytes, "kib_per_entry": (dict(rss())["VmRSS"] - before) * 1024 / max(1, len(cache))}
        stored = next(iter(responses._entries.values()))
        before = dict(rss())["VmRSS"]
        for i in range(2 * responses._entries.maxsize // max(1, len(stored.body))):
            body = bytes(stored.body[:-1]) + bytes([48 + i % 10])
            responses.store(("/x", (("i", str(i)),)), StoredResponse(body, etag_of(body), stored.route, stored.provenance, stored.created, stored.fresh_until))
        per_cache["responses"] = {"entries": len(responses), "bytes": responses.bytes, "budget": responses._entries.maxsize, "kib_per_entry": (dict(rss())["VmRSS"] - before) * 1024 / max(1, len(responses))}
        final = dict(rss())
        print(json.dumps({"idle_after_warmup_mib": base["VmRSS"], "full_rss_mib": final["VmRSS"], "peak_rss_mib": final["VmHWM"], "caches": per_cache}))

asyncio.run(main())
"""


def measure_memory() -> dict[str, Any]:
    done = subprocess.run(
        [PY, "-c", MEMORY_PROBE, str(ROOT)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith(("FACADE_", "IOMETER_", "WALTERO_"))},
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["target_mib"] = 150
    return result


def measure_junk_attack(requests: int = 2500) -> dict[str, Any]:
    """Issue 11's attack: the same year of daily consumption with `&junk=<i>`, 2,500 times, against the
    facade in live mode over loopback; RSS before and after (and the high-water mark)."""
    with emulators() as (io_port, wa_port), facade(io_port, wa_port) as (base, pid):
        params = {"backend": "waltero", "start": "2025-12-01", "end": "2026-12-01"}

        async def attack() -> list[int]:
            async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": KEY}, timeout=60) as c:
                await c.get("/consumption/daily", params=params)
                before.append(rss_mib(pid))
                statuses: list[int] = []
                queue = list(range(requests))

                async def worker() -> None:
                    while queue:
                        i = queue.pop()
                        statuses.append(
                            (await c.get("/consumption/daily", params={**params, "junk": str(i)})).status_code
                        )

                await asyncio.gather(*(worker() for _ in range(8)))
                return statuses

        before: list[float] = []
        statuses = asyncio.run(attack())
        hwm = 0.0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
        return {
            "requests": requests,
            "ok": statuses.count(200),
            "rss_before_mib": before[0],
            "rss_after_mib": rss_mib(pid),
            "peak_rss_mib": hwm,
            "target_mib": 150,
        }


# --- mixed load, many connections, startup ----------------------------------------------------------

WRK_REPORT = """
done = function(summary, latency, requests)
  io.write(string.format("BENCH %d %d %d %d %d %d %d\\n", summary.requests, summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout, summary.errors.status, latency:percentile(50),
    latency:percentile(99), latency:percentile(99.9), summary.duration))
end
"""
WRK_MISSES = """
counter = 0
request = function()
  counter = counter + 1
  local t0 = os.time() - 3600 * (counter + 200000) - (wrk.thread_id or 0)
  local path = string.format("%s&start=%s&end=%s", BASE, os.date("!%Y-%m-%dT%H:%M:%SZ", t0),
    os.date("!%Y-%m-%dT%H:%M:%SZ", t0 + 3600))
  return wrk.format("GET", path, {["X-API-Key"] = KEY})
end
"""


def _wrk_run(url: str, connections: int, seconds: int, script: str) -> dict[str, float]:
    """wrk on the load core with a Lua `done` that prints count, errors and latency percentiles (us)."""
    wrk = ensure_wrk()
    if wrk is None:
        raise RuntimeError("wrk is needed for the mixed-load measurement (apt-get install wrk)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script + WRK_REPORT)
    try:
        out = subprocess.run(
            pinned(
                LOAD_CPU,
                [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "-H", f"X-API-Key: {KEY}", "-s", f.name, url],
            ),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(f.name)
    line = next(x for x in out.splitlines() if x.startswith("BENCH "))
    n, errors, status_errors, p50, p99, p999, duration = (int(v) for v in line.split()[1:])
    return {
        "requests": n,
        "errors": errors,
        "non_2xx": status_errors,
        "rps": n / (duration / 1e6),
        "p50_ms": p50 / 1000,
        "p99_ms": p99 / 1000,
        "p999_ms": p999 / 1000,
    }


def measure_mixed_load(seconds: int = 20) -> dict[str, Any]:
    """Hits alone, then hits and misses together (about 95 % / 5 %: 61 connections on a cached answer,
    3 on ever-new windows); p50/p99/p99.9 of each, measured by separate wrk processes."""
    with emulators() as (io_port, wa_port), facade(io_port, wa_port) as (base, _pid):
        client = httpx.Client(base_url=base, headers={"X-API-Key": KEY}, timeout=30)
        meter = client.get("/meters", params={"backend": "waltero"}).json()["items"][0]["id"]
        hit_path = f"/meters/{meter}"
        client.get(hit_path)
        assert client.get(hit_path).headers["x-cache"] == "HIT"
        alone = _wrk_run(base + hit_path, 64, seconds // 2, "")
        miss_script = f'BASE = "/readings?meter_id={meter}"\nKEY = "{KEY}"\n' + WRK_MISSES
        results: dict[str, dict[str, float]] = {}

        def run(name: str, url: str, connections: int, script: str) -> None:
            results[name] = _wrk_run(url, connections, seconds, script)

        import threading

        workers = [
            threading.Thread(target=run, args=("hits", base + hit_path, 61, "")),
            threading.Thread(target=run, args=("misses", base + "/readings", 3, miss_script)),
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        many = _wrk_run(base + hit_path, 256, seconds // 2, "")
    hits, misses = results["hits"], results["misses"]
    return {
        "hits_alone": alone,
        "hits_mixed": hits,
        "misses_mixed": misses,
        "miss_share": misses["requests"] / max(1, hits["requests"] + misses["requests"]),
        "hit_p99_mixed_vs_alone": hits["p99_ms"] / max(alone["p99_ms"], 1e-9),
        "connections_256": many,
    }


def measure_startup(rounds: int = 3) -> dict[str, Any]:
    """Seconds from starting the process to the first 200 on /readyz, sandbox mode (median of rounds)."""
    times = []
    for _ in range(rounds):
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FACADE_", "IOMETER_", "WALTERO_"))}
        env["FACADE_SANDBOX"] = "true"
        started = time.monotonic()
        proc = subprocess.Popen(
            uvicorn("app.main:app", port), env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() - started > 60:
                    raise RuntimeError("the sandbox never became ready")
                time.sleep(0.01)
            times.append(time.monotonic() - started)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    return {"seconds_median": statistics.median(times), "rounds": times}


# --- 5. daily derivation CPU time ----------------------------------------------------------------------


def measure_derivation() -> dict[str, Any]:
    from bench.derivation import year_of_readings_cpu_seconds

    runs = [year_of_readings_cpu_seconds(meters=10) for _ in range(5)]
    return {
        "meters": 10,
        "readings_per_meter": 35040,
        "cpu_ms_median": statistics.median(runs) * 1000,
        "target_ms": 100,
    }


# --- 6. NDJSON export throughput and memory ----------------------------------------------------------


def measure_ndjson_export(days: int = 366) -> dict[str, Any]:
    """Stream `days` days of one IOmeter meter's 15-minute readings as NDJSON from a facade process in
    live mode against an emulator process: rows/s end to end and the facade's RSS before, at peak and
    its growth (bench/ndjson_export.py; the emulator's GraphQL execution bounds the rows/s)."""
    from bench.ndjson_export import measure

    result = measure(days=days)
    result["target_growth_mib"] = 20 / 1.048576
    return result


# --- issue 25: the miss replayed directly, long windows, the tail with two workers (bench/round3.py) ------


def measure_miss_replayed(n: int, rounds: int) -> dict[str, Any]:
    from bench.round3 import measure_miss_replayed as measure

    return measure(n, rounds)


def measure_long_windows(days: int, rounds: int) -> dict[str, Any]:
    from bench.round3 import measure_long_windows as measure

    return measure(days, rounds)


def measure_mixed_tail(seconds: int, rounds: int) -> dict[str, Any]:
    from bench.round3 import measure_mixed_tail as measure

    return measure(seconds, rounds)


# --- profile of the hit path ------------------------------------------------------------------------------


def measure_redis(rounds: int, duration: float) -> dict[str, Any]:
    """Several workers sharing Redis (`--only redis`): bench/redis_fleet.py."""
    from bench.redis_fleet import measure_redis as measure

    return measure(rounds, duration)


def measure_live(clients: int = 1000, seconds: float = 20.0) -> dict[str, Any]:
    """1,000 SSE clients on one replica (bench/live.py)."""
    from bench.live import measure_live as run

    return run(clients, seconds)


def profile_hits() -> str:
    from bench.profile_hits import profile

    return profile()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument(
        "--ndjson", action="store_true", help="only the NDJSON export measurement (same as --only ndjson_export)"
    )
    parser.add_argument("--ndjson-days", type=int, default=366, help="days of 15-minute readings to stream")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small counts and short runs (still three interleaved rounds): to check the bench runs end to end",
    )
    args = parser.parse_args()
    quick = args.quick
    if quick:
        args.duration = 1.0
        args.ndjson_days = min(args.ndjson_days, 14)
    if args.ndjson:
        args.only = ["ndjson_export"]
    gc.collect()
    report: dict[str, Any] = {
        "machine": {
            "cpus": CORES,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_generator": "wrk" if ensure_wrk() else "python",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    }
    steps = {
        "cache_hit_throughput": lambda: measure_hits(args.rounds, args.duration),
        "cache_miss_added_latency": lambda: measure_misses(40 if quick else 300),
        "miss_replayed": lambda: measure_miss_replayed(30 if quick else 200, args.rounds),
        "upstream_amplification": measure_amplification,
        "memory_full_caches": measure_memory,
        "junk_parameter_attack": lambda: measure_junk_attack(300 if quick else 2500),
        "mixed_load": lambda: measure_mixed_load(4 if quick else 20),
        "mixed_tail": lambda: measure_mixed_tail(4 if quick else 12, args.rounds),
        "long_windows": lambda: measure_long_windows(60 if quick else 365, args.rounds),
        "startup": lambda: measure_startup(1 if quick else 3),
        "daily_derivation": measure_derivation,
        "ndjson_export": lambda: measure_ndjson_export(args.ndjson_days),
        "hit_path_profile": profile_hits,
        "redis": lambda: measure_redis(args.rounds, args.duration),
        "live": lambda: measure_live(100 if quick else 1000, 4.0 if quick else 20.0),
    }
    for name, step in steps.items():
        if args.only and name not in args.only:
            continue
        print(f"... {name}", file=sys.stderr, flush=True)
        report[name] = step()
        (ROOT / "bench" / "results.json").write_text(json.dumps(report, indent=2) + "\n")  # survives a later failure
    out = ROOT / "bench" / "results.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))
    print(f"\nwritten to {out.relative_to(ROOT)}")


def render(r: dict[str, Any]) -> str:
    lines = ["| measurement | result | target | met |", "|---|---|---|---|"]
    for name, row in r.get("cache_hit_throughput", {}).items():
        lines.append(
            f"| cache hit `{name}` ({row['bytes']} B) vs bare FastAPI route | {row['vs_fastapi_route']:.2f}x | >= 1.0x | {'yes' if row['vs_fastapi_route'] >= 1.0 else 'no'} |"
        )
        floor = 0.7 if "meters" in name else 0.8
        lines.append(
            f"| cache hit `{name}` vs bare ASGI app | {row['vs_bare_asgi']:.2f}x | >= {floor}x | {'yes' if row['vs_bare_asgi'] >= floor else 'no'} |"
        )
    from bench.round3 import render as render_round3

    lines.extend(render_round3(r))
    for name, row in r.get("cache_miss_added_latency", {}).items():
        lines.append(
            f"| cache miss added latency p50, {name} (old method: windows a week apart, mostly before the emulator history, so mostly empty vendor answers) | {row['added_p50_ms']:.2f} ms (p99 {row['added_p99_ms']:.2f} ms) | <= 1 ms p50 | {'yes' if row['added_p50_ms'] <= 1 else 'no'} |"
        )
    amp = r.get("upstream_amplification", {})
    for name, row in amp.items():
        if "upstream_telemetry_calls" in row:
            lines.append(
                f"| {name} | {row['upstream_telemetry_calls']} upstream calls | 20 | {'yes' if row['upstream_telemetry_calls'] == 20 else 'no'} |"
            )
        elif "upstream_daily_calls" in row:
            lines.append(
                f"| {name} | {row['upstream_daily_calls']} upstream calls for {row['distinct_meters']} distinct meters "
                f"({row['organizations']} organizations) | at most 1 per distinct meter, each to its own organization "
                f"| {'yes' if row['upstream_daily_calls'] <= row['distinct_meters'] else 'no'} |"
            )
        elif "logins" in row:
            lines.append(
                f"| logins per token lifetime, steady load ({row['token_lifetime_s']} s tokens, {row['seconds']} s) | {row['logins_per_lifetime']:.2f} ({row['client_errors']} client errors) | 1 | {'yes' if row['logins_per_lifetime'] <= 1.34 and row['client_errors'] == 0 else 'no'} |"
            )
    if r.get("redis"):
        from bench.redis_fleet import render as render_redis

        lines.extend(render_redis(r["redis"]))
    mem = r.get("memory_full_caches")
    if mem:
        lines.append(
            f"| peak RSS with every cache at its byte budget | {mem['peak_rss_mib']:.0f} MiB | <= {mem['target_mib']} MB | {'yes' if mem['peak_rss_mib'] * 1.048576 <= mem['target_mib'] else 'no'} |"
        )
        for name, row in mem["caches"].items():
            lines.append(f"| per-entry cost, cache `{name}` | {row['kib_per_entry']:.1f} KiB | - | - |")
    mixed = r.get("mixed_load")
    if mixed:
        alone, hits, misses, many = (
            mixed["hits_alone"],
            mixed["hits_mixed"],
            mixed["misses_mixed"],
            mixed["connections_256"],
        )
        lines.append(
            f"| hits alone, 64 connections: p50 / p99 / p99.9 | {alone['p50_ms']:.2f} / {alone['p99_ms']:.2f} / {alone['p999_ms']:.2f} ms | - | - |"
        )
        lines.append(
            f"| hits under mixed load ({mixed['miss_share'] * 100:.1f} % misses): p50 / p99 / p99.9 | {hits['p50_ms']:.2f} / {hits['p99_ms']:.2f} / {hits['p999_ms']:.2f} ms "
            f"(p99 {mixed['hit_p99_mixed_vs_alone']:.2f}x alone) | p99 <= 2x alone | {'yes' if mixed['hit_p99_mixed_vs_alone'] <= 2 else 'no'} |"
        )
        lines.append(
            f"| misses under mixed load: p50 / p99 / p99.9 | {misses['p50_ms']:.2f} / {misses['p99_ms']:.2f} / {misses['p999_ms']:.2f} ms ({misses['requests']} misses, {misses['non_2xx'] + misses['errors']} errors) | no starvation | {'yes' if misses['requests'] > 0 else 'no'} |"
        )
        lines.append(
            f"| 256 connections on a hit: errors, p99.9 | {many['errors'] + many['non_2xx']} errors, p99.9 {many['p999_ms']:.2f} ms ({many['rps']:.0f} req/s) | no errors | {'yes' if many['errors'] + many['non_2xx'] == 0 else 'no'} |"
        )
    start = r.get("startup")
    if start:
        lines.append(f"| startup to the first 200 on /readyz, sandbox | {start['seconds_median']:.2f} s | - | - |")
    junk = r.get("junk_parameter_attack")
    if junk:
        lines.append(
            f"| RSS under the junk-parameter attack ({junk['requests']} requests, {junk['ok']} answered 200) | "
            f"{junk['rss_before_mib']:.0f} -> {junk['rss_after_mib']:.0f} MiB (peak {junk['peak_rss_mib']:.0f}) | "
            f"<= {junk['target_mib']} MB | {'yes' if junk['peak_rss_mib'] * 1.048576 <= junk['target_mib'] else 'no'} |"
        )
    der = r.get("daily_derivation")
    if der:
        lines.append(
            f"| derive a year of 15-min readings for 10 meters | {der['cpu_ms_median']:.0f} ms CPU | <= 100 ms | {'yes' if der['cpu_ms_median'] <= 100 else 'no'} |"
        )
    exp = r.get("ndjson_export")
    if exp:
        lines.append(
            f"| NDJSON export, {exp['rows']} rows ({exp['days']} days of 15-min readings of one meter) | "
            f"{exp['rows_per_s']} rows/s | - | - |"
        )
        growth_met = "yes" if exp["rss_growth_mib"] <= exp["target_growth_mib"] else "no"
        lines.append(
            f"| NDJSON export RSS: before {exp['rss_before_mib']:.0f} MiB, peak {exp['rss_peak_mib']:.0f} MiB | "
            f"growth {exp['rss_growth_mib']:.1f} MiB | < 20 MB | {growth_met} |"
        )
    live = r.get("live")
    if live:
        lines.append(
            f"| live: p99 emulator emit -> client receive, {live['clients']} SSE clients | {live['delay_p99_ms']:.1f} ms (p50 {live['delay_p50_ms']:.1f} ms) | <= 50 ms | {'yes' if live['delay_p99_ms'] <= 50 else 'no'} |"
        )
        lines.append(f"| live: RSS per connected client | {live['rss_per_client_kib']:.1f} KiB | - | - |")
        lines.append(
            f"| live: facade CPU per 1,000 events delivered | {live['cpu_ms_per_1000_events']:.1f} ms | - | - |"
        )
    return "\n".join(lines) + (
        "\n\nHit path profile (pyinstrument):\n" + r["hit_path_profile"] if r.get("hit_path_profile") else ""
    )


if __name__ == "__main__":
    main()
