"""A Python client generated from openapi/openapi.json with openapi-python-client, without a warning,
works against the sandbox over a loopback socket: paging, daily consumption, a 404 as a problem."""

from __future__ import annotations

import datetime as dt
import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from app.factory import create_app
from app.infra.config import Settings
from tests.support.servers import serve_in_thread

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PACKAGE = "facade_client_under_test"


@pytest.fixture(scope="module")
def client_package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    out = tmp_path_factory.mktemp("generated")
    done = subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(ROOT / "openapi" / "openapi.json"),
            "--meta",
            "none",
            "--output-path",
            str(out / PACKAGE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=out,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},  # its ruff post-hook
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "warning" not in output.lower(), output
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_in_thread(create_app(Settings(FACADE_SANDBOX=True, FACADE_CHANGES_POLL=0))) as url:
        yield url


def api(package: ModuleType, module: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.api.{module}")


def test_generated_client_pages_through_meters(client_package: ModuleType, base_url: str) -> None:
    list_meters = api(client_package, "meters.list_meters")
    models = importlib.import_module(f"{PACKAGE}.models")
    seen: list[str] = []
    with client_package.Client(base_url=base_url) as client:
        page = list_meters.sync(client=client, limit=5)
        pages = 1
        while True:
            assert isinstance(page, models.MeterPage), page
            assert len(page.items) <= 5
            seen += [m.id for m in page.items]
            assert all(isinstance(m.backend, models.BackendName) for m in page.items)
            if not page.next_cursor:
                break
            page = list_meters.sync(client=client, limit=5, cursor=page.next_cursor)
            pages += 1
        everything = list_meters.sync(client=client, limit=1000)
    assert pages > 1
    assert seen == sorted(seen) == [m.id for m in everything.items]
    assert {s.split(":")[0] for s in seen} == {"iometer", "waltero"}


def test_generated_client_reads_daily_consumption_with_dates(client_package: ModuleType, base_url: str) -> None:
    get_daily = api(client_package, "consumption.get_daily_consumption")
    models = importlib.import_module(f"{PACKAGE}.models")
    end = dt.datetime.now(dt.UTC).date()
    start = end - dt.timedelta(days=3)
    meter = "waltero:11111111-1111-1111-1111-111111111101"
    with client_package.Client(base_url=base_url) as client:
        answer = get_daily.sync(client=client, start=start, end=end, meter_id=[meter], tz="Europe/Berlin")
    assert isinstance(answer, models.DailyConsumptionList), answer
    assert [row.date for row in answer.items] == [start + dt.timedelta(days=i) for i in range(3)]
    assert all(isinstance(row.date, dt.date) and row.meter_id == meter for row in answer.items)
    assert all(row.consumption is not None and row.consumption > 0 for row in answer.items)


def test_generated_client_reads_timestamps_and_parses_a_404_as_a_problem(
    client_package: ModuleType, base_url: str
) -> None:
    get_meter = api(client_package, "meters.get_meter")
    list_readings = api(client_package, "readings.list_readings")
    models = importlib.import_module(f"{PACKAGE}.models")
    with client_package.Client(base_url=base_url) as client:
        detailed = get_meter.sync_detailed(client=client, meter_id="iometer:00000000-0000-4000-8000-000000000000")
        refused = api(client_package, "meters.list_meters").sync_detailed(client=client, limit=5000)
        start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=3)
        readings = list_readings.sync(
            client=client,
            meter_id="iometer:8d116ece-1738-47d9-bd9c-172411e20b8f",
            start=start,  # an aware datetime: its "+00:00" must reach the service intact
            end=start + dt.timedelta(hours=1),
            quantity=["energy_import"],
        )
    assert detailed.status_code == 404
    problem = detailed.parsed
    assert isinstance(problem, models.Problem)
    assert problem.status == 404
    assert problem.type_ == "/problems/not-found"
    assert problem.backend.value == "iometer"
    assert refused.status_code == 422
    assert isinstance(refused.parsed, models.Problem)
    assert [(e.field, type(e).__name__) for e in refused.parsed.errors] == [("limit", "FieldError")]
    assert isinstance(readings, models.ReadingPage), readings
    assert len(readings.items) == 4
    assert all(isinstance(r.time, dt.datetime) and r.time.tzinfo is not None for r in readings.items)
    assert [r.time for r in readings.items] == [start + dt.timedelta(minutes=15 * i) for i in range(4)]
