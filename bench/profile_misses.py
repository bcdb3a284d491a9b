"""Profile of the miss path: where a cache miss's time goes in the facade itself, from the ASGI call to
the vendor's answer and back, with the Waltero emulator in its own process on loopback (so its work is
not in the profile), the facade driven in-process with no client socket. Every request is a real miss
with a real payload: TTL 0 (nothing is kept, so each `/readings` of a one-hour window is one vendor
call for its week-long chunk, 168 hourly points) and windows inside the emulator's 90 days of history.

    .venv/bin/python bench/profile_misses.py [--misses 300] [--tree]

Prints the facade's CPU per miss (`time.process_time` over the misses, no profiler running: the
emulator's CPU is another process's) and, from a pyinstrument profile of as many misses, each part's
share of the busy samples (the loop's wait for the vendor left out), every sample counted once under the innermost frame that names a part (so the
parts add up to 100 %)."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pyinstrument import Profiler

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.backends.waltero.emulator import DEMO_PASSWORD, DEMO_USERNAME  # noqa: E402
from app.factory import create_app  # noqa: E402
from app.infra.config import Settings  # noqa: E402
from app.infra.logs import configure_logging  # noqa: E402
from bench.asgi import InProcess  # noqa: E402
from bench.run import free_port  # noqa: E402

KEY = "profile-key"

CLAIMS: list[tuple[str, tuple[str, ...]]] = [
    # parts that own everything they call (pydantic, the stdlib, ...): the outermost match wins
    ("cache entry sizing (`approx_size`)", ("app/guard/cache.py:approx_size",)),
    ("decoding and validating the vendor payload", ("waltero/shapes.py:parse",)),
    ("logging (access line, upstream call line)", ("logging/", "app/infra/logs.py", "app/infra/logwriter.py")),
    ("httpx cookie jar (`urllib` request per response)", ("httpx/_models.py:extract_cookies",)),
]
PARTS: list[tuple[str, tuple[str, ...]]] = [
    # the rest: the innermost match wins
    ("our instrumented transport and retries", ("app/infra/upstream.py", "app/backends/http.py")),
    (
        "aiohttp transport (httpx-aiohttp, aiohttp, yarl, multidict)",
        ("httpx_aiohttp", "aiohttp/", "yarl/", "multidict/"),
    ),
    ("httpx request/response/URL model and client", ("httpx/", "httpcore/")),
    ("FastAPI/Starlette routing, dependency solving, parameter validation", ("fastapi/", "starlette/")),
    ("pydantic in our code (`Page[Reading]`, models, JSON)", ("pydantic/", "pydantic_core")),
    (
        "our front (request id, auth, metrics, response cache)",
        ("app/middleware/", "app/factory.py", "app/api/http_cache.py", "app/infra/metrics.py", "prometheus_client"),
    ),
    ("our route, service, chunks, cache, guard, adapter", ("app/",)),
    ("asyncio (tasks, futures, the loop)", ("asyncio/", "selectors", "uvloop")),
]


def _match(rules: list[tuple[str, tuple[str, ...]]], path: str) -> str | None:
    for part, needles in rules:
        if any(n in path for n in needles):
            return part
    return None


def shares(profiler: Profiler) -> dict[str, float]:
    """Seconds of samples per part: each frame's self time goes to the outermost caller that `CLAIMS`
    it, else to the innermost frame (itself or a caller) whose file (or `file:function`) names one of
    the `PARTS`; what none names is `other`. The loop's wait in `select` is idle time and left out, so
    the shares are of the busy samples."""
    totals: dict[str, float] = {}
    root = profiler.last_session.root_frame() if profiler.last_session else None
    if root is None:
        return totals
    stack: list[tuple[Any, str | None, str | None]] = [(root, None, None)]
    while stack:
        frame, claimed, inner = stack.pop()
        path = f"{frame.file_path or ''}:{frame.function or ''}"
        if "selectors.py:select" in path:
            continue  # the loop waiting in epoll for the vendor: idle, not the facade's CPU
        claimed = claimed or _match(CLAIMS, path)
        inner = _match(PARTS, path) or inner
        if frame.total_self_time:
            part = claimed or inner or "other"
            totals[part] = totals.get(part, 0.0) + frame.total_self_time
        stack.extend((child, claimed, inner) for child in frame.children)
    return totals


async def _run(base: str, n: int, profile: bool) -> tuple[float, Profiler | None]:
    configure_logging("INFO", stream=open(os.devnull, "w"))
    settings = Settings(
        WALTERO_URL=base,
        WALTERO_USERNAME=DEMO_USERNAME,
        WALTERO_PASSWORD=DEMO_PASSWORD,
        FACADE_API_KEYS=KEY,
        FACADE_CHANGES_POLL=0,
        FACADE_TTL_PAST=0,
        FACADE_TTL_RECENT=0,
    )
    app = create_app(settings, freeze_gc=True)  # as the served process (app.main)
    client = InProcess(app, KEY)

    async with app.router.lifespan_context(app):
        meters = (await app.service.list_meters("waltero", 1, None)).value[0]
        meter = meters[0].id
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)

        def query(i: int) -> str:
            t0 = now - timedelta(hours=10 + 24 * (i % 60))  # TTL 0: every request is a vendor call
            return f"meter_id={meter}&start={t0:%Y-%m-%dT%H:%M:%SZ}&end={t0 + timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}"

        for i in range(20):  # warm: login, connections
            await client.call("/readings", query(n + i))
        profiler = Profiler(interval=0.0001, async_mode="disabled") if profile else None
        if profiler is not None:
            profiler.start()
        cpu = time.process_time()
        for i in range(n):
            await client.call("/readings", query(i))
        cpu = time.process_time() - cpu
        if profiler is not None:
            profiler.stop()
        statuses = [m["status"] for m in client.sent if m["type"] == "http.response.start"]
        assert set(statuses) == {200}, set(statuses)
        calls = app.service.caches["readings"]._lookups["miss"]._value.get()  # every request was a real miss
        assert calls >= n, (calls, n)
        assert app.service.caches["readings"].bytes == 0  # TTL 0: nothing kept
    return cpu / n, profiler


def _on_uvloop(coro: Any) -> Any:
    """Run on uvloop, as uvicorn[standard] serves the facade (asyncio's own loop costs more per miss)."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _with_emulator(run: Any) -> Any:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.backends.waltero.emulator", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(f"{base}/_sandbox/stats", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        return run(base)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def measure(n: int = 300) -> dict[str, Any]:
    """The facade's CPU per miss (median of three runs of `n`, no profiler) and each part's share of a
    profiled run of `n` misses."""

    def run(base: str) -> dict[str, Any]:
        cpus = [_on_uvloop(_run(base, n, profile=False))[0] for _ in range(3)]
        _, profiler = _on_uvloop(_run(base, n, profile=True))
        assert profiler is not None
        parts = shares(profiler)
        total = sum(parts.values()) or 1.0
        cpu = sorted(cpus)[1]
        return {
            "misses": n,
            "cpu_ms_per_miss": cpu * 1000,
            "cpu_ms_runs": [c * 1000 for c in cpus],
            "shares": {k: v / total for k, v in sorted(parts.items(), key=lambda kv: -kv[1])},
            "tree": str(profiler.output_text(unicode=False, color=False, show_all=False)),
        }

    result: dict[str, Any] = _with_emulator(run)
    return result


def render(result: dict[str, Any]) -> str:
    cpu = result["cpu_ms_per_miss"]
    lines = [
        f"facade CPU per miss: {cpu:.2f} ms (median of {result['cpu_ms_runs']!r} ms, {result['misses']} misses each)",
        "",
        "| part of a miss | share of samples | ms of CPU per miss |",
        "|---|---|---|",
    ]
    for part, share in result["shares"].items():
        lines.append(f"| {part} | {share * 100:.1f} % | {share * cpu:.2f} |")
    return "\n".join(lines)


def profile_misses(n: int = 300) -> str:
    """The tree of a profiled run (kept for `bench/run.py`'s hit/miss profiles)."""
    return str(measure(n)["tree"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--misses", type=int, default=300)
    parser.add_argument("--tree", action="store_true", help="also print pyinstrument's call tree")
    args = parser.parse_args()
    out = measure(args.misses)
    print(render(out))
    if args.tree:
        print(out["tree"])
