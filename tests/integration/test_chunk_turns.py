"""A window of several chunks hands the event loop back between chunks, so hits waiting on the loop
are served between one chunk's rows and the next instead of behind all of them."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

from tests.support.apps import fake_app, running
from tests.support.clock import FakeClock
from tests.support.fake_backend import FakeBackend


async def test_other_tasks_run_between_the_chunks_of_one_window():
    clock = FakeClock()
    io = FakeBackend("iometer")
    app = fake_app({"iometer": io}, clock=clock)
    async with running(app):
        b = app.service.backends["iometer"]
        upstream = io.meter_ids[0]
        end = datetime.fromtimestamp(clock(), UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
            days=10
        )
        start = end - timedelta(days=4)  # four day-long chunks: one concurrent group
        chunks = app.service.chunks
        async for _ in chunks.chunked(b, upstream, f"iometer:{upstream}", start, end, None):
            pass  # cached now: the next pass reads no vendor
        turns = 0
        stop = False

        async def other() -> None:
            nonlocal turns
            while not stop and turns < 10_000:
                turns += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(other())
        seen: list[int] = []
        async for rows, _ in chunks.chunked(b, upstream, f"iometer:{upstream}", start, end, None):
            assert rows
            seen.append(turns)
        stop = True
        await task
    assert len(seen) == 4
    assert all(later > earlier for earlier, later in itertools.pairwise(seen))
