"""A Python client generated from openapi/openapi.json with openapi-python-client, without a warning,
works against the sandbox over a loopback socket: every JSON operation answers its declared model, the
CSV and NDJSON forms come through the same generated requests, paging, a 404 as a problem. The one
operation marked `x-streaming` (Server-Sent Events, an endless body) is left out before generating, as
docs/api-guide.md tells client generators to do."""

from __future__ import annotations

import csv
import datetime as dt
import importlib
import io
import json
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

# The first test also generates the client package (openapi-python-client in a subprocess).
pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PACKAGE = "facade_client_under_test"


SPEC = json.loads((ROOT / "openapi" / "openapi.json").read_text())
STREAMING = {op["operationId"] for ops in SPEC["paths"].values() for op in ops.values() if "x-streaming" in op}
OPERATIONS = {op["operationId"] for ops in SPEC["paths"].values() for op in ops.values()} - STREAMING


def without_streams(spec: dict) -> dict:  # type: ignore[type-arg]
    """The spec minus the operations marked `x-streaming` (what a generator without streaming must skip)."""
    paths = {}
    for path, operations in spec["paths"].items():
        kept = {method: op for method, op in operations.items() if "x-streaming" not in op}
        if kept:
            paths[path] = kept
    return {**spec, "paths": paths}


@pytest.fixture(scope="module")
def client_package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    out = tmp_path_factory.mktemp("generated")
    spec_path = out / "openapi.json"
    spec_path.write_text(json.dumps(without_streams(SPEC)))
    done = subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(spec_path),
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
        for _ in range(100):
            assert isinstance(page, models.MeterPage), page
            assert len(page.items) <= 5
            seen += [m.id for m in page.items]
            assert all(isinstance(m.backend, models.BackendName) for m in page.items)
            if not page.next_cursor:
                break
            page = list_meters.sync(client=client, limit=5, cursor=page.next_cursor)
            pages += 1
        else:
            pytest.fail("paging /meters did not end after 100 pages")
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


def test_only_the_sse_operation_is_marked_streaming_and_it_is_described() -> None:
    assert {"streamLiveReadings"} == STREAMING
    live = SPEC["paths"]["/readings/live"]["get"]
    media = live["responses"]["200"]["content"]["text/event-stream"]
    assert set(media["x-events"]) == {"readings", "status"}
    assert live["x-streaming"] == "server-sent-events"


def test_the_spec_declares_id_patterns_quantities_and_health_schemas() -> None:
    from app.domain.ids import split_id

    pattern = SPEC["paths"]["/readings"]["get"]["parameters"][0]["schema"]["pattern"]
    ids = 0
    for operations in SPEC["paths"].values():
        for op in operations.values():
            for param in op.get("parameters", []):
                if param["name"] in ("meter_id", "device_id"):
                    schema = param["schema"].get("items", param["schema"])
                    assert schema["pattern"] == pattern, (op["operationId"], param["name"])
                    ids += 1
    assert ids >= 6
    # the pattern accepts exactly what the service parses as an id (never a 422 for a schema-valid one)
    import re

    for candidate in ("iometer:8d116ece", "x:1", "a" * 32 + ":" + "b" * 128, "Iometer:1", "io:", "io:a b", "io:a/b"):
        assert bool(re.fullmatch(pattern.strip("^$"), candidate)) == _parses(split_id, candidate), candidate
    quantity = SPEC["components"]["schemas"]["Quantity"]["enum"]
    assert "energy_import" in quantity and "power" in quantity
    for path, name in (("/healthz", "Health"), ("/readyz", "Readiness")):
        schema = SPEC["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{name}"}


def _parses(split_id, candidate: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        split_id(candidate, field="meter_id", in_path=False)
    except Exception:
        return False
    return True


def test_every_json_operation_answers_its_declared_model(client_package: ModuleType, base_url: str) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    called: set[str] = set()
    today = dt.datetime.now(dt.UTC).date()
    hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)

    def call(module: str, expected: type, **kwargs):  # type: ignore[no-untyped-def]
        answer = api(client_package, module).sync_detailed(client=client, **kwargs)
        assert answer.status_code == 200, (module, answer.status_code, answer.content[:300])
        assert isinstance(answer.parsed, expected), (module, answer.parsed)
        called.add(module.split(".")[1])
        return answer.parsed

    with client_package.Client(base_url=base_url, timeout=60) as client:
        meters = call("meters.list_meters", models.MeterPage, limit=1000).items
        iometer = next(m for m in meters if m.backend.value == "iometer")
        waltero = next(m for m in meters if m.backend.value == "waltero")
        assert call("meters.get_meter", models.Meter, meter_id=iometer.id).id == iometer.id
        readings = call(
            "readings.list_readings",
            models.ReadingPage,
            meter_id=iometer.id,
            start=hour - dt.timedelta(hours=3),
            quantity=[models.Quantity.ENERGY_IMPORT, models.Quantity.POWER],
        ).items
        assert readings and {r.quantity for r in readings} == {"energy_import", "power"}
        daily = call(
            "consumption.get_daily_consumption", models.DailyConsumptionList, start=today - dt.timedelta(days=3)
        )
        assert daily.items
        for resolution in models.GetConsumptionResolution:
            rows = call(
                "consumption.get_consumption",
                models.IntervalConsumptionList,
                resolution=resolution,
                meter_id=[waltero.id],
                start=today - dt.timedelta(days=2),
                end=today,
            ).items
            assert rows, resolution
        status = call("devices.get_device_status", models.DeviceStatus, device_id=iometer.device_id)
        assert status.device_id == iometer.device_id
        changes = call("changes.list_changes", models.ChangePage, since=hour - dt.timedelta(days=30), limit=3)
        assert changes.items
        assert call("operations.list_backends", models.BackendList).items
        assert call("operations.get_health", models.Health).status == models.HealthStatus.OK
        ready = call("operations.get_readiness", models.Readiness)
        assert ready.status == models.ReadinessStatus.READY and set(ready.backends.additional_properties) == {
            "iometer",
            "waltero",
        }
        assert "facade_http_requests_total" in call("operations.get_metrics", str)
    snake = {"".join("_" + c.lower() if c.isupper() else c for c in op) for op in OPERATIONS}
    assert called == snake


def test_csv_and_ndjson_come_through_the_generated_requests(client_package: ModuleType, base_url: str) -> None:
    """The typed functions parse the JSON form; the CSV and NDJSON forms of the same operations are the
    generated request (`format_=`) sent through the generated client's own httpx client."""
    today = dt.datetime.now(dt.UTC).date()
    since = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=30)
    with client_package.Client(base_url=base_url, timeout=60) as client:
        meter = api(client_package, "meters.list_meters").sync(client=client, limit=1).items[0]
        forms = {
            "meters.list_meters": {"limit": 5},
            "readings.list_readings": {"meter_id": meter.id, "start": since + dt.timedelta(days=29)},
            "consumption.get_daily_consumption": {"start": today - dt.timedelta(days=2), "end": today},
            "consumption.get_consumption": {
                "resolution": importlib.import_module(f"{PACKAGE}.models").GetConsumptionResolution.HOUR,
                "start": today - dt.timedelta(days=1),
                "end": today,
                "meter_id": [meter.id],
            },
            "changes.list_changes": {"since": since, "limit": 5},
        }
        http = client.get_httpx_client()
        for module, kwargs in forms.items():
            build = api(client_package, module)._get_kwargs
            as_json = api(client_package, module).sync_detailed(client=client, **kwargs)
            assert as_json.parsed is not None and as_json.parsed.items
            items = json.loads(as_json.content)["items"]  # the wire form, times as the service writes them
            assert items, module
            as_csv = http.request(**build(**kwargs, format_="csv"))
            assert as_csv.status_code == 200, (module, as_csv.text[:300])
            assert as_csv.headers["content-type"].startswith("text/csv")
            rows = list(csv.DictReader(io.StringIO(as_csv.text)))
            assert len(rows) == len(items), module
            assert list(rows[0]) == list(items[0]), module
            as_ndjson = http.request(**build(**kwargs, format_="ndjson"))
            assert as_ndjson.headers["content-type"].startswith("application/x-ndjson")
            lines = [json.loads(line) for line in as_ndjson.text.splitlines()]
            assert len(lines) >= len(items), module  # NDJSON is the whole window, unpaged
            assert lines[: len(items)] == items, module
