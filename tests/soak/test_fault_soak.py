"""Fault soak, bounded (~25 s, loopback only): 50 concurrent clients against the facade while the
emulators answer 10 % 500s, 5 % 429s, up to 300 ms latency, one Waltero token expiry and one
5-second Waltero outage.

Asserted: no client sees a 500; every 502/503/504 is a problem+json, with `Retry-After` on every
503; errors stay under a stated bound; no unhandled exception is logged; RSS at the end is within
10 % of RSS after warm-up; the facade answers normally within 4 s of the outage ending.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.backends.iometer import emulator as iometer
from app.backends.waltero import emulator as waltero
from tests.support.servers import PYTHON, free_port, serve_process, wait_until_up

CLIENTS = 50
DURATION = 22.0
OUTAGE_AT, OUTAGE_FOR = 9.0, 5.0
TOKEN_TTL = 12  # one expiry inside the run
ERROR_BOUND = 0.08
"""At most 8 % of answers may be 502/503/504 (typically about 4 %). Retries absorb most faults and
stale entries cover much of the outage. What is left: Waltero requests with nothing cached during the
5 s outage (a quarter of the run), and a 500 striking twice in a row (the vendor's guidance allows
one retry: 10 % x 10 % = 1 % of calls)."""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@contextlib.contextmanager
def facade_process(io_port: int, wa_port: int, log_path: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACADE_", "IOMETER_", "WALTERO_"))}
    env.update(iometer.SANDBOX_SETTINGS)
    env.update(waltero.SANDBOX_SETTINGS)
    env.update(
        {
            "IOMETER_URL": f"http://127.0.0.1:{io_port}/api/v1/query",
            "WALTERO_URL": f"http://127.0.0.1:{wa_port}",
            "FACADE_ALLOW_ANONYMOUS": "true",
            "FACADE_CHANGES_POLL": "0",
            # Recovery within 2 s must survive an unlucky probe: the half-open probe may still draw one of
            # the ongoing 429s (Retry-After 1 s) and up to 0.3 s of latency, so the circuit waits 0.5 s.
            "FACADE_CIRCUIT_RESET": "0.5",
            "FACADE_TTL_RECENT": "3",
            "FACADE_TTL_DEVICE_STATUS": "3",
            "FACADE_TTL_CHANGES": "3",
        }
    )
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [PYTHON, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            wait_until_up(f"http://127.0.0.1:{port}/healthz")
            yield f"http://127.0.0.1:{port}", proc.pid
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def workload(meters: list[dict[str, Any]], rng: random.Random) -> str:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    meter = rng.choice(meters)
    today = now.date()
    choice = rng.random()
    if choice < 0.15:
        return "/meters"
    if choice < 0.3:
        return f"/meters/{meter['id']}"
    if choice < 0.6:
        hours = rng.randint(1, 6)
        return f"/readings?meter_id={meter['id']}&start={now - timedelta(hours=hours):%Y-%m-%dT%H:%M:%SZ}"
    if choice < 0.75:
        return f"/consumption/daily?start={today - timedelta(days=rng.randint(2, 4))}&end={today}&backend=waltero"
    if choice < 0.9 and meter["device_id"]:
        return f"/devices/{meter['device_id']}/status"
    return f"/changes?since={now - timedelta(days=rng.randint(1, 5)):%Y-%m-%dT%H:%M:%SZ}"


@pytest.mark.timeout(600)  # ~25 s of load plus process start-up, slower on a shared machine
def test_fault_soak() -> None:
    io_port, wa_port = free_port(), free_port()
    log_path = tempfile.mktemp(suffix=".log")
    with (
        serve_process(
            [PYTHON, "-m", "app.backends.iometer.emulator", "--port", str(io_port)],
            f"http://127.0.0.1:{io_port}/_sandbox/stats",
        ),
        serve_process(
            [PYTHON, "-m", "app.backends.waltero.emulator", "--port", str(wa_port), "--token-ttl", str(TOKEN_TTL)],
            f"http://127.0.0.1:{wa_port}/_sandbox/stats",
        ),
        facade_process(io_port, wa_port, log_path) as (base, pid),
    ):
        result = asyncio.run(soak(base, pid, io_port, wa_port))
    print("soak result:", {k: v for k, v in result.items() if k != "bad_errors"})  # shown on failure
    logs = Path(log_path).read_text()
    os.unlink(log_path)

    statuses: Counter[int] = result["statuses"]
    total = sum(statuses.values())
    assert total > 1000, statuses
    assert statuses[500] == 0, statuses
    assert not result["bad_errors"], result["bad_errors"][:5]
    errors = sum(n for s, n in statuses.items() if s in (502, 503, 504))
    assert errors <= ERROR_BOUND * total, (errors, total, statuses)
    assert set(statuses) <= {200, 502, 503, 504}, statuses
    assert result["recovered_after"] is not None, result["recovered_after"]
    # the circuit's reset (0.5 s), a login whose retries backed off during the outage (the token expired
    # in it) and a cold chunk read: a few seconds at most, never the whole probe window
    assert result["recovered_after"] <= 4.0, result["recovered_after"]
    assert result["logins"] >= 2, "the token should have expired and been renewed once"
    assert result["rss_end"] <= result["rss_warm"] * 1.10, (result["rss_warm"], result["rss_end"])
    for line in logs.splitlines():
        assert "Traceback" not in line
        if line.startswith("{"):
            record = json.loads(line)
            assert record["level"] not in ("error", "critical"), record


async def soak(base: str, pid: int, io_port: int, wa_port: int) -> dict[str, Any]:
    faults = {"error_rate": 0.10, "rate_limit_rate": 0.05, "latency": 0.3, "retry_after": 1}
    async with httpx.AsyncClient(timeout=30) as control:
        meters = (await control.get(f"{base}/meters")).json()["items"]
        for port in (io_port, wa_port):
            (await control.put(f"http://127.0.0.1:{port}/_sandbox/faults", json=faults)).raise_for_status()

    statuses: Counter[int] = Counter()
    bad_errors: list[str] = []
    started = time.monotonic()
    stop = started + DURATION
    limits = httpx.Limits(max_connections=CLIENTS)

    async def client(n: int, http: httpx.AsyncClient) -> None:
        rng = random.Random(n)
        while time.monotonic() < stop:
            response = await http.get(workload(meters, rng))
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                problem = response.headers.get("content-type", "").startswith("application/problem+json")
                retry_after = response.status_code != 503 or response.headers.get("retry-after", "").isdigit()
                if not (problem and retry_after):
                    bad_errors.append(f"{response.status_code} {response.headers} {response.text[:200]}")

    async def outage(http: httpx.AsyncClient) -> float | None:
        await asyncio.sleep(OUTAGE_AT)
        await http.put(f"http://127.0.0.1:{wa_port}/_sandbox/faults", json={"outage": True})
        await asyncio.sleep(OUTAGE_FOR)
        await http.put(f"http://127.0.0.1:{wa_port}/_sandbox/faults", json={"outage": False})
        ended = time.monotonic()
        # a request that must reach Waltero (a window nobody asked for yet) until it is answered
        device = next(m for m in meters if m["backend"] == "waltero")["id"]
        k = 0
        while time.monotonic() - ended < 5:
            k += 1
            start = datetime.now(UTC) - timedelta(days=20, minutes=k)
            r = await http.get(f"{base}/readings?meter_id={device}&start={start:%Y-%m-%dT%H:%M:%SZ}&limit=1")
            if r.status_code == 200:
                return time.monotonic() - ended
            await asyncio.sleep(0.1)
        return None

    async def rss_after_warmup() -> int:
        await asyncio.sleep(4.0)
        return rss_kib(pid)

    async with (
        httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http,
        httpx.AsyncClient(timeout=30) as side,
    ):
        warm_task = asyncio.create_task(rss_after_warmup())
        outage_task = asyncio.create_task(outage(side))
        await asyncio.gather(*(client(n, http) for n in range(CLIENTS)))
        recovered_after = await outage_task
        rss_warm = await warm_task
        rss_end = rss_kib(pid)
        stats = (await side.get(f"http://127.0.0.1:{wa_port}/_sandbox/stats")).json()
    return {
        "statuses": statuses,
        "bad_errors": bad_errors,
        "recovered_after": recovered_after,
        "rss_warm": rss_warm,
        "rss_end": rss_end,
        "logins": stats.get("login", 0),
    }
