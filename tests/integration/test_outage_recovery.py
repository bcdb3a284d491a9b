"""A hung vendor: work queued for callers who have gone is dropped, not sent when the vendor recovers.

The Waltero emulator runs as a real process on loopback and is frozen with SIGSTOP (it accepts
connections but answers nothing), as a hung vendor does. 100 distinct requests time out; then, with
nobody waiting, the facade must send nothing more, and after SIGCONT one new request costs at most a
login and the call itself.
"""

from __future__ import annotations

import asyncio
import os
import signal

import httpx

from app.backends.waltero.emulator import DEMO_PASSWORD, DEMO_USERNAME
from app.factory import create_app
from app.infra.config import Settings
from tests.support.servers import PYTHON, free_port, serve_in_thread, serve_process

KEY = "outage-key-0123456789"


def upstream_attempts(app) -> float:  # type: ignore[no-untyped-def]
    total = 0.0
    for metric in app.metrics.registry.collect():
        if metric.name == "facade_upstream_requests":
            total += sum(
                s.value for s in metric.samples if s.name.endswith("_total") and s.labels["backend"] == "waltero"
            )
    return total


def test_nothing_is_sent_for_callers_who_left_and_recovery_costs_one_login_and_one_call():
    port = free_port()
    vendor = f"http://127.0.0.1:{port}"
    argv = [PYTHON, "-m", "app.backends.waltero.emulator", "--port", str(port)]
    with serve_process(argv, f"{vendor}/_sandbox/stats") as proc:
        settings = Settings(
            WALTERO_URL=vendor,
            WALTERO_USERNAME=DEMO_USERNAME,
            WALTERO_PASSWORD=DEMO_PASSWORD,
            FACADE_API_KEYS=KEY,
            FACADE_CHANGES_POLL=0,
            FACADE_REQUEST_DEADLINE=1.5,
            FACADE_READ_TIMEOUT=1,
            FACADE_CONNECT_TIMEOUT=1,
            FACADE_CIRCUIT_FAILURES=3,
            FACADE_CIRCUIT_RESET=2,
        )
        app = create_app(settings)
        with serve_in_thread(app) as url:

            async def scenario() -> None:
                async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": KEY}, timeout=30) as c:
                    meters = (await c.get("/meters")).json()["items"]
                    meter = meters[0]["id"]
                    os.kill(proc.pid, signal.SIGSTOP)
                    try:
                        windows = [f"2026-0{1 + i // 28}-{1 + i % 28:02d}T00:00:00Z" for i in range(100)]
                        answers = await asyncio.gather(
                            *(c.get("/readings", params={"meter_id": meter, "start": w}) for w in windows)
                        )
                        assert {r.status_code for r in answers} <= {503, 504}
                        assert sum(r.status_code == 504 for r in answers) >= 1
                        await asyncio.sleep(2.0)  # every caller has gone; their loads must have gone too
                        idle_from = upstream_attempts(app)
                        await asyncio.sleep(2.5)  # the circuit half-opens meanwhile: still nobody asks
                        assert upstream_attempts(app) == idle_from
                    finally:
                        os.kill(proc.pid, signal.SIGCONT)
                    await asyncio.sleep(3.0)
                    assert upstream_attempts(app) == idle_from  # nothing queued is flushed on recovery
                    again = await c.get(
                        "/readings",
                        params={"meter_id": meter, "start": "2026-05-01T00:00:00Z", "end": "2026-05-01T06:00:00Z"},
                    )
                    assert again.status_code == 200, again.text
                    assert upstream_attempts(app) - idle_from <= 2  # at most a login and the call itself

            asyncio.run(scenario())
