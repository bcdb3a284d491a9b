"""A vendor is one package plus one registry line, all the way: Acme (`tests/support/acme/`, adapter,
emulator, live source and doctor checks) answers `/meters`, `/readings`, `/consumption?resolution=hour`,
streams on `/readings/live`, runs in the sandbox and appears in the doctor, with no edit anywhere else."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from app.backends import registry as vendors
from app.doctor import run
from app.doctor.sandbox import loopback_emulators
from app.factory import create_app
from app.infra.config import Settings
from app.sandbox.loopback import serve_in_thread
from tests.support import acme
from tests.support.acme.emulator import RATE_KWH_PER_HOUR
from tests.support.live import parse_events
from tests.unit.test_layout import imports_of

ACME_DIR = Path(acme.__file__).parent
TESTS = ACME_DIR.parents[1]


@pytest.fixture
def acme_vendor() -> Iterator[None]:
    vendors.register(acme.VENDOR)  # the one registry line
    try:
        yield
    finally:
        vendors.unregister("acme")


def _rfc(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_package_serves_every_route_and_streams_in_the_sandbox(acme_vendor: None) -> None:
    app = create_app(Settings(FACADE_SANDBOX="true", FACADE_CHANGES_POLL=0))
    day = (datetime.now(UTC) - timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
    with serve_in_thread(app, lifespan="on") as base, httpx.Client(base_url=base, timeout=30) as http:
        meters = http.get("/meters", params={"backend": "acme"}).json()["items"]
        assert [(m["id"], m["serial_number"], m["unit"]) for m in meters] == [
            ("acme:m-1", "ACME-0001", "kWh"),
            ("acme:m-2", "ACME-0002", "kWh"),
        ]
        assert "acme" in {b["name"] for b in http.get("/backends").json()["items"]}

        window = {"meter_id": "acme:m-2", "start": _rfc(day), "end": _rfc(day + timedelta(hours=1))}
        readings = http.get("/readings", params=window).json()["items"]
        assert [(r["time"], r["value"]) for r in readings] == [
            (_rfc(t), pytest.approx(2000 + RATE_KWH_PER_HOUR * t.timestamp() / 3600))
            for t in (day + timedelta(minutes=15 * i) for i in range(4))
        ]

        hourly = http.get(
            "/consumption",
            params={
                "resolution": "hour",
                "meter_id": "acme:m-1",
                "start": day.date().isoformat(),
                "end": (day + timedelta(days=1)).date().isoformat(),
                "tz": "UTC",
            },
        ).json()["items"]
        assert len(hourly) == 24
        assert {round(row["consumption"], 6) for row in hourly} == {RATE_KWH_PER_HOUR}
        assert all(row["complete"] for row in hourly)

        since = _rfc(datetime.now(UTC) - timedelta(hours=1))
        text = ""
        with http.stream("GET", "/readings/live", params={"meter_id": "acme:m-1", "since": since}) as stream:
            assert stream.status_code == 200
            for chunk in stream.iter_text():  # bounded by the client's read timeout and the test's limit
                text += chunk
                if "event: readings" in text and text.endswith("\n\n"):
                    break
        events, _, _ = parse_events(text)
        items = [i for e in events if e.event == "readings" for i in e.data["items"]]
        assert items
        assert {i["meter_id"] for i in items} == {"acme:m-1"}
        assert all(i["time"] > since for i in items)


def test_the_doctor_runs_the_packages_checks_and_its_emulator_variant(acme_vendor: None) -> None:
    def acme_findings(breaks: list[str]) -> list[tuple[str, str]]:
        with loopback_emulators(Settings(), breaks) as settings:
            findings, _ = asyncio.run(run(settings))
        assert [f for f in findings if f.status == "FAIL" and f.vendor != "acme"] == []
        return [(f.check, f.status) for f in findings if f.vendor == "acme"]

    assert acme_findings([]) == [("auth", "PASS"), ("unit", "PASS")]
    assert acme_findings(["acme:wh_units"]) == [("auth", "PASS"), ("unit", "FAIL")]


def test_nothing_outside_the_package_imports_it_but_the_registry_line() -> None:
    importers = sorted(
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("*.py")
        if ACME_DIR not in path.parents
        and any(m == "tests.support.acme" or m.startswith("tests.support.acme.") for m in imports_of_any(path))
    )
    assert importers == ["integration/test_vendor_package.py"]


def test_the_emulator_imports_nothing_of_its_adapter() -> None:
    files = sorted((ACME_DIR / "emulator").rglob("*.py"))
    assert files
    allowed = ("app.sandbox", "app.infra.timeutil", "tests.support.acme.emulator")
    offending = [
        (p.name, m)
        for p in files
        for m in imports_of_any(p)
        if not any(m == a or m.startswith(a + ".") for a in allowed)
    ]
    assert offending == []


def imports_of_any(path: Path) -> set[str]:
    return imports_of(path, roots=("app", "tests"))
