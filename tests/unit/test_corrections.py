"""The corrections poller: an exclusive watermark, evictions counted per backend, injected time."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from app.core.corrections import CorrectionsPoller
from app.domain.models import Change
from app.infra.timeutil import from_epoch
from tests.support.apps import fake_app, running
from tests.support.clock import FakeClock
from tests.support.fake_backend import FakeBackend, fake_uuid

START = "2026-05-10T00:00:00Z"
END = "2026-05-10T06:00:00Z"


def correction(backend: FakeBackend, meter: int, n: int, at: float, ident: str | None = None) -> Change:
    return Change(
        id=f"{backend.name}:{ident or fake_uuid(backend.name, 'change', n)}",
        backend=backend.name,
        meter_id=f"{backend.name}:{backend.meter_ids[meter]}",
        time=from_epoch(at - 86400),
        previous_value=1.0,
        new_value=2.0,
        unit="kWh",
        actor="user",
        changed_at=from_epoch(at),
    )


def evictions(app, backend: str) -> float | None:
    return app.metrics.registry.get_sample_value("facade_correction_evictions_total", {"backend": backend})


async def test_a_poll_with_nothing_new_evicts_nothing_and_counts_are_per_backend():
    clock = FakeClock(1_779_000_000)
    io, wa = FakeBackend("iometer", changes=True), FakeBackend("waltero", changes=True)
    app = fake_app({"iometer": io, "waltero": wa}, clock=clock)
    async with running(app) as c:
        service = app.service
        poller = CorrectionsPoller(
            list(service.backends.values()), service.evict_for_changes, every=60, clock=clock, sleep=clock.sleep
        )

        async def read_all() -> list[str]:
            results = []
            for b in (io, wa):
                for m in b.meter_ids:
                    r = await c.get("/readings", params={"meter_id": f"{b.name}:{m}", "start": START, "end": END})
                    results.append(r.headers["x-cache"])
            return results

        assert await read_all() == ["MISS"] * 6
        clock.advance(1)
        io.change_log.append(correction(io, 0, 1, clock()))
        wa.change_log += [correction(wa, 0, 2, clock()), correction(wa, 1, 3, clock())]
        clock.advance(1)
        assert await poller.poll_once() == {"iometer": 1, "waltero": 2}
        assert evictions(app, "iometer") == 1.0
        assert evictions(app, "waltero") == 2.0
        # the corrected meters are read anew; the others still come from the cache
        assert await read_all() == ["MISS", "HIT", "HIT", "MISS", "MISS", "HIT"]
        clock.advance(60)
        # nothing new since: the newest corrections are behind the watermark, nothing is evicted again
        assert await poller.poll_once() == {}
        assert await read_all() == ["HIT"] * 6
        assert evictions(app, "iometer") == 1.0
        assert evictions(app, "waltero") == 2.0


async def test_corrections_at_the_same_instant_as_the_watermark_are_not_lost():
    clock = FakeClock(1_779_000_000)
    wa = FakeBackend("waltero", changes=True)
    app = fake_app({"waltero": wa}, clock=clock)
    async with running(app) as c:
        service = app.service
        poller = CorrectionsPoller(
            list(service.backends.values()), service.evict_for_changes, every=60, clock=clock, sleep=clock.sleep
        )
        at = clock() + 5
        wa.change_log.append(correction(wa, 0, 1, at, ident="00000000-0000-4000-8000-000000000001"))
        assert await poller.poll_once() == {"waltero": 0}  # nothing cached yet, but the change is seen
        for m in wa.meter_ids:
            await c.get("/readings", params={"meter_id": f"waltero:{m}", "start": START, "end": END})
        # another correction stamped with the very same changed_at (the feed orders by changed_at, then id)
        wa.change_log.append(correction(wa, 1, 0, at, ident="00000000-0000-4000-8000-000000000002"))
        assert await poller.poll_once() == {"waltero": 1}


async def test_the_loop_sleeps_with_the_injected_sleep_and_survives_a_failing_feed():
    clock = FakeClock(1_779_000_000)
    wa = FakeBackend("waltero", changes=True)
    app = fake_app({"waltero": wa}, clock=clock)
    async with running(app):
        slept: list[float] = []
        polls = asyncio.Event()

        async def sleep(seconds: float) -> None:
            slept.append(seconds)
            if len(slept) == 3:
                polls.set()
                await asyncio.Event().wait()  # park the loop here
            await asyncio.sleep(0)

        wa.fail = RuntimeError("feed down")
        service = app.service
        poller = CorrectionsPoller(
            list(service.backends.values()), service.evict_for_changes, every=42, clock=clock, sleep=sleep
        )
        task = asyncio.create_task(poller.run())
        await asyncio.wait_for(polls.wait(), 5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert slept == [42, 42, 42]
        assert wa.calls["changes"] == 2  # both polls ran, failed, and the loop went on
        assert timedelta(seconds=0) == timedelta(seconds=clock() - 1_779_000_000)  # no wall-clock waits


async def test_the_first_poll_looks_back_before_start_up():
    clock = FakeClock(1_779_000_000)
    wa = FakeBackend("waltero", changes=True)
    app = fake_app({"waltero": wa}, clock=clock)
    async with running(app) as c:
        service = app.service
        # stamped 2 s before this replica started (a vendor clock behind ours, or a whole-second stamp)
        wa.change_log.append(correction(wa, 0, 1, clock() - 2))
        for m in wa.meter_ids:
            await c.get("/readings", params={"meter_id": f"waltero:{m}", "start": START, "end": END})
        blind = CorrectionsPoller(
            list(service.backends.values()), service.evict_for_changes, every=60, clock=clock, sleep=clock.sleep
        )
        assert await blind.poll_once() == {}  # without a margin the correction is never seen
        poller = CorrectionsPoller(
            list(service.backends.values()),
            service.evict_for_changes,
            every=60,
            clock=clock,
            sleep=clock.sleep,
            lookback=300,
        )
        assert await poller.poll_once() == {"waltero": 1}
        assert app.settings.corrections_lookback == 300  # the default: a few minutes
