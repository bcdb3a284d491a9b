"""The sandbox's emulators run off the serving loop: a vendor busy with long requests slows those
requests only, and the facade keeps answering everything else."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import httpx

from app.factory import create_app
from app.infra.config import Settings
from tests.support.servers import serve_in_thread


def test_long_emulator_work_does_not_stall_the_facade():
    app = create_app(Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0))
    finished: list[str] = []
    today = datetime.now(UTC).date()  # the sandbox holds the last 90 days
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=120) as c:

        def long_daily(i: int) -> None:
            # IOmeter's daily consumption is derived from every reading of every meter: seconds of
            # graphql-core work in the emulator
            start, end = today - timedelta(days=21 - i), today - timedelta(days=1)
            r = c.get("/consumption/daily", params={"backend": "iometer", "start": str(start), "end": str(end)})
            finished.append(f"daily {r.status_code}")

        workers = [threading.Thread(target=long_daily, args=(i,)) for i in range(2)]
        for w in workers:
            w.start()
        time.sleep(0.5)  # the emulator is busy by now
        health = c.get("/healthz")
        finished.append(f"healthz {health.status_code}")
        meters = c.get("/backends")
        finished.append(f"backends {meters.status_code}")
        for w in workers:
            w.join()
    assert finished[:2] == ["healthz 200", "backends 200"], finished
    assert sorted(finished[2:]) == ["daily 200", "daily 200"]
