"""One rule for row times (docs/api-guide.md, "Times"): local-period rows carry the local offset of `tz`,
and an offset of zero is written `Z`, never `+00:00` — in JSON, NDJSON and CSV alike."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest

from app.backends.registry import create_emulators
from app.factory import create_app
from app.infra.config import Settings
from tests.support.apps import running
from tests.support.clock import FakeClock

NOW = datetime(2026, 1, 20, 10, 7, tzinfo=UTC)
DAY = date(2026, 1, 10)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    clock = FakeClock(NOW)
    app = create_app(
        Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0),
        clock=clock,
        sleep=clock.sleep,
        emulators=create_emulators(clock),
    )
    async with running(app, key=None) as c:
        yield c


async def rows(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/consumption", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


@pytest.mark.parametrize("resolution", ["hour", "day", "month"])
@pytest.mark.parametrize("tz", ["UTC", "Europe/London"])  # London is at UTC+0 in January
async def test_rows_at_offset_zero_end_in_z(client: httpx.AsyncClient, resolution: str, tz: str) -> None:
    found = await rows(client, resolution=resolution, start=str(DAY), end="2026-01-12", tz=tz)
    assert found
    for row in found:
        for key in ("start", "end"):
            assert row[key].endswith("Z"), row
            assert "+00:00" not in row[key]
    assert found[0]["start"] == f"{DAY}T00:00:00Z"


async def test_local_rows_carry_the_local_offset(client: httpx.AsyncClient) -> None:
    found = await rows(client, resolution="hour", start=str(DAY), end="2026-01-11", tz="Europe/Berlin")
    assert {r["start"][-6:] for r in found} == {"+01:00"}
    assert found[0]["start"] == f"{DAY}T00:00:00+01:00"


async def test_exports_follow_the_same_rule(client: httpx.AsyncClient) -> None:
    params = {"resolution": "hour", "start": str(DAY), "end": "2026-01-11", "tz": "UTC", "backend": "waltero"}
    ndjson = await client.get("/consumption", params=params, headers={"Accept": "application/x-ndjson"})
    assert ndjson.status_code == 200, ndjson.text
    lines = [json.loads(line) for line in ndjson.text.splitlines() if line.strip()]
    starts = [line["start"] for line in lines if "start" in line]
    assert starts
    assert all(s.endswith("Z") for s in starts)
    exported = await client.get("/consumption", params={**params, "format": "csv"})
    assert exported.status_code == 200, exported.text
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert table
    assert all(r["start"].endswith("Z") and r["end"].endswith("Z") for r in table)
    assert "quality" in table[0]
