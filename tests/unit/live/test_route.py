"""`/readings/live` errors that need a backend without live readings: the app in-process with fake
backends (nothing streams here; every answer is a problem before the stream starts)."""

from __future__ import annotations

from tests.support.apps import fake_app, running
from tests.support.fake_backend import FakeBackend


async def test_a_backend_that_cannot_stream_is_501_and_an_unknown_meter_404() -> None:
    waltero, iometer = FakeBackend("waltero"), FakeBackend("iometer")
    app = fake_app({"waltero": waltero, "iometer": iometer})
    async with running(app) as client:
        hub = app.runtime.live
        assert hub is not None
        del hub.sources["waltero"]  # as if Waltero had no live readings
        r = await client.get("/readings/live", params={"meter_id": f"waltero:{waltero.meter_ids[0]}"})
        assert r.status_code == 501
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"] == "/problems/not-supported"
        unknown = "iometer:00000000-0000-4000-8000-000000000000"
        r = await client.get("/readings/live", params={"meter_id": unknown})
        assert r.status_code == 404
        assert hub.clients == 0
        assert not hub.channels  # nothing was opened for either
