"""Backpressure: a cap on vendor loads in flight per backend, and no vendor work for callers who left."""

from __future__ import annotations

import asyncio
import time

from tests.support.apps import fake_app, running
from tests.support.fake_backend import FakeBackend


class Counting(FakeBackend):
    """Counts readings calls that started, finished and were cancelled."""

    def __init__(self, name: str) -> None:
        super().__init__(name, meters=1)
        self.started = 0
        self.cancelled = 0
        self.started_at: dict[int, float] = {}  # the day of the month of each load: when it started

    async def readings(self, upstream_meter_id, start, end, quantities, limit):  # type: ignore[no-untyped-def]
        self.started += 1
        self.started_at[start.day] = time.monotonic()
        try:
            return await super().readings(upstream_meter_id, start, end, quantities, limit)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


def window(i: int) -> dict[str, str]:
    # A different day each: readings are loaded (and coalesced) in chunks of a UTC day per meter, so
    # windows within one day would share one load.
    return {"start": f"2026-05-{10 + i:02d}T00:00:00Z", "end": f"2026-05-{10 + i:02d}T00:30:00Z"}


async def test_past_the_cap_a_load_is_refused_at_once_and_the_circuit_does_not_count_it():
    backend = Counting("waltero")
    backend.gate = asyncio.Event()
    app = fake_app({"waltero": backend}, FACADE_MAX_LOADS=3, FACADE_UPSTREAM_CONCURRENCY=2)
    meter = f"waltero:{backend.meter_ids[0]}"
    async with running(app) as c:
        requests = [asyncio.create_task(c.get("/readings", params={"meter_id": meter, **window(i)})) for i in range(5)]
        refused = []
        for _ in range(100):
            await asyncio.sleep(0.01)
            refused = [t for t in requests if t.done()]
            if len(refused) == 2:
                break
        assert len(refused) == 2
        for task in refused:
            r = task.result()
            assert r.status_code == 503
            assert r.json()["type"] == "/problems/overloaded"
            assert r.headers["retry-after"] == "1"
        assert backend.started == 2  # two hold the connection slots, the third waits for one
        assert app.service.backends["waltero"].loads_in_flight == 3
        backend.gate.set()
        answered = await asyncio.gather(*requests)
        assert sorted(r.status_code for r in answered) == [200, 200, 200, 503, 503]
        assert app.service.backends["waltero"].breaker.state == "closed"
        assert app.service.backends["waltero"].loads_in_flight == 0
        # a hit is never refused by the cap: it makes no load
        again = await c.get("/readings", params={"meter_id": meter, **window(0)})
        assert again.headers["x-cache"] == "HIT"


async def test_vendor_work_stops_once_every_caller_has_gone():
    backend = Counting("waltero")
    backend.gate = asyncio.Event()  # the vendor hangs
    app = fake_app({"waltero": backend}, FACADE_REQUEST_DEADLINE=0.3, FACADE_UPSTREAM_CONCURRENCY=2)
    meter = f"waltero:{backend.meter_ids[0]}"
    answered_at: dict[int, float] = {}  # the day of each request's window: when its caller had its answer
    async with running(app) as c:

        async def ask(i: int):  # type: ignore[no-untyped-def]
            answer = await c.get("/readings", params={"meter_id": meter, **window(i)})
            answered_at[10 + i] = time.monotonic()
            return answer

        answered = await asyncio.gather(*(ask(i) for i in range(6)))
        assert [r.status_code for r in answered] == [504] * 6
        guarded = app.service.backends["waltero"]
        for _ in range(200):  # the cancellations run on the next turns of the loop
            if guarded.loads_in_flight == 0:
                break
            await asyncio.sleep(0.01)
        assert guarded.loads_in_flight == 0
        assert app.service.caches["readings"].inflight == 0
        # every call that reached the vendor was cancelled, and none started once its caller had gone (a
        # queued one may take a slot freed before its own caller's deadline: its caller still waited)
        assert 2 <= backend.started <= 6
        assert backend.cancelled == backend.started
        assert all(at < answered_at[day] for day, at in backend.started_at.items()), (backend.started_at, answered_at)
        started = backend.started
        backend.gate.set()
        await asyncio.sleep(0.05)
        assert backend.started == started


async def test_a_load_still_wanted_by_one_caller_goes_on_when_another_leaves():
    backend = Counting("waltero")
    backend.gate = asyncio.Event()
    app = fake_app({"waltero": backend})
    meter = f"waltero:{backend.meter_ids[0]}"
    async with running(app) as c:
        patient = asyncio.create_task(c.get("/readings", params={"meter_id": meter, **window(1)}))
        hasty = asyncio.create_task(c.get("/readings", params={"meter_id": meter, **window(1)}))
        await asyncio.sleep(0.05)
        hasty.cancel()
        await asyncio.gather(hasty, return_exceptions=True)
        backend.gate.set()
        r = await patient
        assert r.status_code == 200
        assert (backend.started, backend.cancelled) == (1, 0)
