"""The performance rows of issue 25 for `bench/run.py` (steps `miss_replayed`, `long_windows`,
`mixed_tail`), each as three interleaved rounds and their medians:

- `miss_replayed`: the facade's `/readings` for a one-hour window with TTL 0 (so each request is one
  telemetry call for its week-long chunk) against **the very same vendor request** (same path, same
  query, same token) replayed directly with a plain HTTP client, concurrency 1: the added latency.
- `long_windows`: a year (or `days`) of daily rows of one IOmeter meter, in-process with the emulator in
  its own process, so the facade's own CPU (`time.process_time`) excludes the vendor's: cold (fresh
  caches), warm (the same request again), and the monthly rows of the same range warm (the first such
  request, and the median of ten more under distinct queries); the vendor calls of the cold request.
- `mixed_tail`: hits alone, then hits and misses together (TTL 0, so each miss is a real vendor call
  with a week of points), on one worker and on `--workers 2` sharing Redis: each one's hit p99 against
  its hits alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import (  # noqa: E402
    KEY,
    PY,
    _latencies,
    _waltero_credentials,
    _wrk_run,
    emulators,
    facade,
    free_port,
    pct,
    sandbox_env,
    server,
    stats,
    uvicorn,
)

WEEK = 7 * 86400


# --- the miss, against the very same vendor request replayed directly ---------------------------------


def _vendor_request(wa_port: int, device: str, t0: datetime) -> str:
    """The telemetry request the facade sends for a window starting at `t0`: its week-long chunk
    (epoch-aligned, `app.core.chunks`), every processed point, as `WalteroClient.telemetry` builds it."""
    from app.backends.waltero import shapes

    c0 = math.floor(t0.timestamp() / WEEK) * WEEK
    start, end = datetime.fromtimestamp(c0, UTC), datetime.fromtimestamp(c0 + WEEK, UTC)
    params = {
        shapes.START_DATE: shapes.format_wire_time(start),
        shapes.END_DATE: shapes.format_wire_time(end),
        shapes.FIELDS: shapes.PROCESSED,
    }
    return str(httpx.URL(f"http://127.0.0.1:{wa_port}{shapes.telemetry_path(device)}", params=params))


async def _replay_rounds(base: str, wa_port: int, n: int, rounds: int) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as client:
        token = (await client.post(f"http://127.0.0.1:{wa_port}/api/auth/login", json=_waltero_credentials())).json()[
            "token"
        ]
        meters = (await client.get(f"{base}/meters", params={"backend": "waltero"}, headers={"X-API-Key": KEY})).json()
        device = meters["items"][0]["id"].split(":", 1)[1]
        t0 = (datetime.now(UTC) - timedelta(days=10)).replace(minute=0, second=0, microsecond=0)
        t1 = t0 + timedelta(hours=1)
        via = f"{base}/readings?meter_id=waltero:{device}&start={t0:%Y-%m-%dT%H:%M:%SZ}&end={t1:%Y-%m-%dT%H:%M:%SZ}"
        direct = _vendor_request(wa_port, device, t0)
        bearer = {"Authorization": f"Bearer {token}"}
        key = {"X-API-Key": KEY}
        await _latencies(client, [direct] * 20, 1, bearer)  # warm both paths
        await _latencies(client, [via] * 20, 1, key)
        rows: dict[str, list[float]] = {"direct_p50": [], "facade_p50": [], "direct_p99": [], "facade_p99": []}
        calls = 0
        for _ in range(rounds):  # interleaved: drift hits both paths alike
            d = await _latencies(client, [direct] * n, 1, bearer)
            before = stats(wa_port).get("telemetry", 0)
            f = await _latencies(client, [via] * n, 1, key)
            calls += stats(wa_port).get("telemetry", 0) - before
            rows["direct_p50"].append(pct(d, 50) * 1000)
            rows["direct_p99"].append(pct(d, 99) * 1000)
            rows["facade_p50"].append(pct(f, 50) * 1000)
            rows["facade_p99"].append(pct(f, 99) * 1000)
        points = len((await client.get(direct, headers=bearer)).json()["data"])
    med = {k: statistics.median(v) for k, v in rows.items()}
    return {
        "requests_per_round": n,
        "rounds": rounds,
        "vendor_calls_per_facade_request": calls / (n * rounds),
        "points_per_vendor_answer": points,
        **{f"{k}_ms": v for k, v in med.items()},
        "added_p50_ms": med["facade_p50"] - med["direct_p50"],
        "added_p99_ms": med["facade_p99"] - med["direct_p99"],
        "target_ms": 1.0,
    }


def measure_miss_replayed(n: int = 200, rounds: int = 3) -> dict[str, Any]:
    with (
        emulators() as (io_port, wa_port),
        facade(io_port, wa_port, FACADE_TTL_PAST="0", FACADE_TTL_RECENT="0") as (base, _pid),
    ):
        previous = os.sched_getaffinity(0)
        from bench.run import CORES, LOAD_CPU

        if CORES > 1:
            os.sched_setaffinity(0, {int(LOAD_CPU)})  # the client off the facade's core, as wrk is
        try:
            return asyncio.run(_replay_rounds(base, wa_port, n, rounds))
        finally:
            os.sched_setaffinity(0, previous)


# --- long windows, in-process ---------------------------------------------------------------------------

_IOMETER = r"""
import sys
import uvicorn
from app.backends.iometer.emulator import create_emulator
emulator = create_emulator(window_days=int(sys.argv[2]))
uvicorn.run(emulator.app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


async def _long_round(io_url: str, io_port: int, days: int) -> dict[str, float]:
    import orjson

    from app.backends.iometer import emulator as iometer
    from app.factory import create_app
    from app.infra.config import Settings
    from app.infra.logs import configure_logging
    from bench.asgi import InProcess

    configure_logging("INFO", stream=open(os.devnull, "w"))
    settings = Settings(
        **{**iometer.SANDBOX_SETTINGS, "IOMETER_URL": io_url},
        FACADE_API_KEYS=KEY,
        FACADE_CHANGES_POLL=0,
        FACADE_REQUEST_DEADLINE=120,
    )
    app = create_app(settings, freeze_gc=True)  # as the served process (app.main)
    client = InProcess(app, KEY)
    out: dict[str, float] = {}
    async with app.router.lifespan_context(app):
        _status, _headers, body = await client.get("/meters", "backend=iometer&limit=1")
        meter = orjson.loads(body)["items"][0]["id"]
        end = datetime.now(UTC).date()
        start = end - timedelta(days=days)
        daily = f"meter_id={meter}&start={start}&end={end}"
        monthly = f"meter_id={meter}&start={start}&end={end}&resolution=month"

        async def timed(path: str, query: str, name: str) -> int:
            before_calls = stats(io_port).get("requests", 0)
            wall, cpu = time.perf_counter(), time.process_time()
            status, _headers, body = await client.get(path, query)
            out[f"{name}_cpu_ms"] = (time.process_time() - cpu) * 1000
            out[f"{name}_wall_ms"] = (time.perf_counter() - wall) * 1000
            out[f"{name}_vendor_calls"] = stats(io_port).get("requests", 0) - before_calls
            assert status == 200, (status, body[:300])
            return len(orjson.loads(body)["items"])

        out["daily_rows"] = await timed("/consumption/daily", daily, "cold_daily")
        await timed("/consumption/daily", daily, "warm_daily")
        out["monthly_rows"] = await timed("/consumption", monthly, "warm_monthly_first")
        # the same rows again under distinct queries (`limit`), so each misses the response cache and sums
        # the cached daily answer by month: one request's CPU is a few ms, so take the median of ten
        monthly_cpu = []
        for i in range(10):
            await timed("/consumption", f"{monthly}&limit={100 + i}", "warm_monthly")
            monthly_cpu.append(out["warm_monthly_cpu_ms"])
        out["warm_monthly_cpu_ms"] = statistics.median(monthly_cpu)
    return out


def measure_long_windows(days: int = 365, rounds: int = 3) -> dict[str, Any]:
    port = free_port()
    with server([PY, "-c", _IOMETER, str(port), str(days + 30)], f"http://127.0.0.1:{port}/_sandbox/stats", cpu=None):
        runs = [asyncio.run(_long_round(f"http://127.0.0.1:{port}/api/v1/query", port, days)) for _ in range(rounds)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    return {"days": days, "rounds": rounds, **med, "target_cold_cpu_ms": 150, "target_warm_monthly_cpu_ms": 5}


# --- the hits' tail under mixed load, one worker and two with Redis --------------------------------------

WRK_REAL_MISSES = """
counter = 0
request = function()
  counter = counter + 1
  local t0 = os.time() - 3600 * (10 + (counter * 7 + (wrk.thread_id or 0)) % 1400)
  t0 = t0 - t0 % 3600
  local path = string.format("%s&start=%s&end=%s", BASE, os.date("!%Y-%m-%dT%H:%M:%SZ", t0),
    os.date("!%Y-%m-%dT%H:%M:%SZ", t0 + 3600))
  return wrk.format("GET", path, {["X-API-Key"] = KEY})
end
"""
"""A one-hour window somewhere in the last 58 days (inside the emulator's history), so with TTL 0 every
miss is one vendor call answered with a week of points."""


def _mixed(base: str, meter: str, seconds: int) -> dict[str, Any]:
    hit = f"{base}/meters/{meter}"
    alone = _wrk_run(hit, 64, max(1, seconds // 2), "")
    script = f'BASE = "/readings?meter_id={meter}"\nKEY = "{KEY}"\n' + WRK_REAL_MISSES
    results: dict[str, dict[str, float]] = {}

    def run(name: str, url: str, connections: int, lua: str) -> None:
        results[name] = _wrk_run(url, connections, seconds, lua)

    workers = [
        threading.Thread(target=run, args=("hits", hit, 61, "")),
        threading.Thread(target=run, args=("misses", f"{base}/readings", 3, script)),
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    hits, misses = results["hits"], results["misses"]
    return {
        "hits_alone_p99_ms": alone["p99_ms"],
        "hits_mixed_p50_ms": hits["p50_ms"],
        "hits_mixed_p99_ms": hits["p99_ms"],
        "misses_mixed_p50_ms": misses["p50_ms"],
        "misses": misses["requests"],
        "errors": misses["errors"] + misses["non_2xx"] + hits["errors"] + hits["non_2xx"],
        "miss_share": misses["requests"] / max(1, hits["requests"] + misses["requests"]),
        "hit_p99_mixed_vs_alone": hits["p99_ms"] / max(alone["p99_ms"], 1e-9),
    }


@contextlib.contextmanager
def _two_workers(io_port: int, wa_port: int, redis_url: str) -> Iterator[str]:
    port = free_port()
    env = sandbox_env(
        io_port,
        wa_port,
        FACADE_REDIS_URL=redis_url,
        FACADE_REDIS_PREFIX="benchtail",
        FACADE_TTL_PAST="0",
        FACADE_TTL_RECENT="0",
    )
    argv = uvicorn("app.main:app", port, "--workers", "2")
    with server(argv, f"http://127.0.0.1:{port}/healthz", env, cpu="0,1"):
        yield f"http://127.0.0.1:{port}"


def measure_mixed_tail(seconds: int = 12, rounds: int = 3) -> dict[str, Any]:
    if shutil.which("redis-server") is None and not os.path.exists("/usr/bin/redis-server"):
        return {"skipped": "install the Debian package redis-server"}
    from bench.redis_fleet import redis_server

    with (
        redis_server() as url,
        emulators() as (io_port, wa_port),
        facade(io_port, wa_port, FACADE_TTL_PAST="0", FACADE_TTL_RECENT="0") as (one, _pid),
        _two_workers(io_port, wa_port, url) as two,
    ):
        meter = httpx.get(f"{one}/meters", params={"backend": "waltero"}, headers={"X-API-Key": KEY}).json()["items"][
            0
        ]["id"]
        for base in (one, two):  # every worker's hit path warm
            for _ in range(50):
                httpx.get(f"{base}/meters/{meter}", headers={"X-API-Key": KEY}).raise_for_status()
        runs: dict[str, list[dict[str, Any]]] = {"one_worker": [], "two_workers_redis": []}
        for _ in range(rounds):  # interleaved
            runs["one_worker"].append(_mixed(one, meter, seconds))
            runs["two_workers_redis"].append(_mixed(two, meter, seconds))
    out: dict[str, Any] = {"seconds": seconds, "rounds": rounds}
    for name, rows in runs.items():
        out[name] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    out["target_ratio"] = 2.0
    return out


def render(r: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    m = r.get("miss_replayed")
    if m:
        lines.append(
            f"| miss added latency p50, concurrency 1: `/readings` one hour, TTL 0, minus the same vendor request "
            f"replayed ({m['points_per_vendor_answer']} points; {m['vendor_calls_per_facade_request']:.2f} vendor calls "
            f"per request) | +{m['added_p50_ms']:.2f} ms (p99 +{m['added_p99_ms']:.2f}; direct p50 "
            f"{m['direct_p50_ms']:.2f} ms) | <= 1 ms | {'yes' if m['added_p50_ms'] <= 1 else 'no'} |"
        )
    lw = r.get("long_windows")
    if lw:
        lines.append(
            f"| {lw['days']} days of daily rows, one IOmeter meter, cold: facade CPU (vendor excluded) | "
            f"{lw['cold_daily_cpu_ms']:.0f} ms ({lw['cold_daily_vendor_calls']:.0f} vendor calls, wall "
            f"{lw['cold_daily_wall_ms']:.0f} ms) | <= 150 ms | {'yes' if lw['cold_daily_cpu_ms'] <= 150 else 'no'} |"
        )
        lines.append(f"| ... the same, warm | {lw['warm_daily_cpu_ms']:.2f} ms CPU | - | - |")
        lines.append(
            f"| ... monthly rows of the same range, warm | {lw['warm_monthly_cpu_ms']:.2f} ms CPU (the first such "
            f"request {lw['warm_monthly_first_cpu_ms']:.2f} ms) | <= 5 ms | {'yes' if lw['warm_monthly_cpu_ms'] <= 5 else 'no'} |"
        )
    t = r.get("mixed_tail")
    if t and "skipped" in t:
        lines.append(f"| mixed-load tail | skipped: {t['skipped']} | - | - |")
    elif t:
        for name, label in (("one_worker", "1 worker"), ("two_workers_redis", "`--workers 2` + Redis")):
            row = t[name]
            lines.append(
                f"| hit p99 under mixed load ({row['miss_share'] * 100:.1f} % real misses), {label} | "
                f"{row['hits_mixed_p99_ms']:.1f} ms = {row['hit_p99_mixed_vs_alone']:.1f}x alone "
                f"({row['misses']:.0f} misses, {row['errors']:.0f} errors) | <= 2x | "
                f"{'yes' if row['hit_p99_mixed_vs_alone'] <= 2 else 'no'} |"
            )
    return lines


if __name__ == "__main__":
    import json

    report = {
        "miss_replayed": measure_miss_replayed(30),
        "long_windows": measure_long_windows(30),
        "mixed_tail": measure_mixed_tail(4),
    }
    print(json.dumps(report, indent=2))
    print("\n".join(render(report)))


# --- decoding a large vendor page on the loop or in a thread (a probe for the README) -------------------


def measure_decode_offload(pages: int = 20, rows: int = 1000) -> dict[str, Any]:
    """The event loop's lag (a 1 ms ticker's worst and p99 delay) while `pages` IOmeter pages of `rows`
    readings (5 registers each) are decoded one after another: on the loop, and each in a worker thread
    (`asyncio.to_thread`). Python threads hand the GIL over every `sys.getswitchinterval()` (5 ms), so a
    thread bounds how long the loop waits, not how much CPU the decode costs."""
    import json

    from app.backends.iometer.payloads import readings_page

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    obis = ["1-0:1.8.0", "1-0:2.8.0", "1-0:1.8.1", "1-0:1.8.2", "1-0:16.7.0"]
    body = json.dumps(
        {
            "readings": [
                {
                    "time": f"{t0 + timedelta(minutes=15 * i):%Y-%m-%dT%H:%M:%SZ}",
                    "values": [{"obisCode": o, "value": 1000.5 + i, "unit": "kWh"} for o in obis],
                }
                for i in range(rows)
            ],
            "cursor": "next",
        }
    ).encode()

    def decode() -> int:
        return len(readings_page(json.loads(body), with_meter=False).readings)

    async def run(offload: bool) -> dict[str, float]:
        lags: list[float] = []
        done = False

        async def ticker() -> None:
            while not done:
                started = time.perf_counter()
                await asyncio.sleep(0.001)
                lags.append(time.perf_counter() - started - 0.001)

        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        for _ in range(pages):
            if offload:
                await asyncio.to_thread(decode)
            else:
                decode()
                await asyncio.sleep(0)
        took = time.perf_counter() - started
        done = True
        await tick
        return {"lag_max_ms": max(lags) * 1000, "lag_p99_ms": pct(lags, 99) * 1000, "wall_ms": took * 1000}

    results = {}
    for name, offload in (("on_loop", False), ("thread", True), ("on_loop_2", False), ("thread_2", True)):
        results[name] = asyncio.run(run(offload))
    return {
        "pages": pages,
        "readings_per_page": rows,
        "on_loop": {k: statistics.median([results["on_loop"][k], results["on_loop_2"][k]]) for k in results["on_loop"]},
        "thread": {k: statistics.median([results["thread"][k], results["thread_2"][k]]) for k in results["thread"]},
    }


# --- the app's vendor client against a bare aiohttp session (the size of the next miss-path lever) ------


def _walter_client(base: str, http: httpx.AsyncClient) -> Any:
    import time as clock

    from pydantic import SecretStr

    from app.backends.waltero.client import WalteroClient
    from app.backends.waltero.emulator import DEMO_PASSWORD, DEMO_USERNAME
    from app.backends.waltero.token import TokenManager

    tokens = TokenManager(http, base, DEMO_USERNAME, SecretStr(DEMO_PASSWORD), clock=clock.time)
    return WalteroClient(http, base, tokens, clock=clock.time)


def measure_client_overhead(calls: int = 100, rounds: int = 5) -> dict[str, Any]:
    """CPU per telemetry call (a Waltero week, the facade's own chunk request) through the app's client
    (httpx, the instrumented transport, httpx-aiohttp), its hot GETs (`HotGets`, the same session
    without httpx's model) and a bare `aiohttp.ClientSession`; and a whole `WalteroClient.telemetry`
    (auth, retries, metrics, log line, decoding) on the hot path and, with `hot` set aside, on httpx.
    On uvloop, in this process, the emulator in its own; interleaved rounds, medians."""
    import aiohttp
    import uvloop

    from app.backends.waltero.emulator import DEMO_PASSWORD, DEMO_USERNAME
    from app.infra.config import Settings
    from app.infra.metrics import Metrics
    from app.infra.upstream import build_client
    from bench.profile_misses import _with_emulator

    def run(base: str) -> dict[str, Any]:
        port = int(base.rsplit(":", 1)[1])

        async def main() -> dict[str, Any]:
            async with httpx.AsyncClient(base_url=base) as c:
                login = await c.post("/api/auth/login", json={"username": DEMO_USERNAME, "password": DEMO_PASSWORD})
                headers = {"Authorization": f"Bearer {login.json()['token']}"}
                me = (await c.get("/api/auth/me", headers=headers)).json()
                org = me["accessible_organizations"][0]
                org_id = org["organization_id"] if isinstance(org, dict) else org
                devices = (await c.get(f"/api/organizations/{org_id}/devices", headers=headers)).json()
            device = (devices["data"] if isinstance(devices, dict) else devices)[0]["id"]
            url = _vendor_request(port, device, datetime.now(UTC) - timedelta(days=10))
            client = build_client("waltero", Settings(), Metrics())
            session = aiohttp.ClientSession()

            async def app_client() -> bytes:
                return (await client.get(url, headers=headers)).content

            async def bare() -> bytes:
                async with session.get(url, headers=headers) as r:
                    return await r.read()

            hot = client.hot
            assert hot is not None

            async def app_hot_get() -> bytes:
                return (await hot.get(url, headers)).content

            vendor = _walter_client(base, client)
            c0 = math.floor((datetime.now(UTC) - timedelta(days=10)).timestamp() / WEEK) * WEEK
            window = datetime.fromtimestamp(c0, UTC)  # the chunk `url` asks for
            fields = ["meter.value.processed"]

            async def waltero_hot() -> object:
                vendor._hot = hot
                return await vendor.telemetry(device, window, window + timedelta(days=7), fields)

            async def waltero_httpx() -> object:
                vendor._hot = None
                return await vendor.telemetry(device, window, window + timedelta(days=7), fields)

            paths = {
                "app_client": app_client,
                "app_hot_get": app_hot_get,
                "bare_aiohttp": bare,
                "waltero_client_httpx": waltero_httpx,
                "waltero_client_hot": waltero_hot,
            }
            cpu: dict[str, list[float]] = {name: [] for name in paths}
            try:
                for call in paths.values():
                    for _ in range(20):
                        await call()
                for _ in range(rounds):
                    for name, call in paths.items():
                        started = time.process_time()
                        for _ in range(calls):
                            await call()
                        cpu[name].append((time.process_time() - started) / calls * 1000)
            finally:
                await client.aclose()
                await session.close()
            return {f"{k}_cpu_ms": statistics.median(v) for k, v in cpu.items()}

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main())

    result: dict[str, Any] = _with_emulator(run)
    return result
