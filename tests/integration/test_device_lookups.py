"""Concurrent cold lookups of different devices all find them (the device-index race), both vendors,
through the whole service."""

from __future__ import annotations

import asyncio

from app.factory import create_app
from app.infra.config import Settings
from tests.support.apps import running


async def test_every_device_at_once_on_a_cold_cache_answers_200():
    app = create_app(Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0))
    async with running(app, key=None) as c:
        meters = (await c.get("/meters", params={"limit": 1000})).json()["items"]
    devices = sorted({m["device_id"] for m in meters if m["device_id"]})
    assert {d.split(":")[0] for d in devices} == {"iometer", "waltero"}
    fresh = create_app(Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0))  # cold: no index, no cache
    async with running(fresh, key=None) as c:
        answers = await asyncio.gather(*(c.get(f"/devices/{d}/status") for d in devices))
    assert {d: a.status_code for d, a in zip(devices, answers, strict=True)} == dict.fromkeys(devices, 200)
