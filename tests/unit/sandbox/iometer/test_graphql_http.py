"""GraphQL over HTTP as the emulator serves it: transport rules, validation, paging, visibility, OBIS formats."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.backends.iometer.emulator import Emulator, create_emulator
from app.infra.timeutil import parse_rfc3339
from tests.support.clock import FakeClock
from tests.unit.sandbox.iometer.conftest import PATH, Caller, wsse

METER_READINGS = """
query MeterReadings($id: Uuid!, $start: DateTime, $limit: Int, $cursor: String) {
  partner { meter(id: $id) { id readings(startTime: $start, limit: $limit, cursor: $cursor) {
    readings { time values { obisCode value unit } } cursor } } }
}"""

PARTNER_READINGS = """
query PartnerReadings($start: DateTime, $limit: Int, $cursor: String) {
  readings(startTime: $start, limit: $limit, cursor: $cursor) { readings { meter { id } time } cursor }
}"""


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_get_is_served(http: httpx.AsyncClient, clock: FakeClock, emulator: Emulator) -> None:
    response = await http.get(
        PATH,
        params={
            "query": "query Q($id: Uuid!) { installation(id: $id) { id } }",
            "variables": json.dumps({"id": emulator.data.installations[0].id}),
        },
        headers={"Authorization": wsse(clock)},
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"installation": {"id": emulator.data.installations[0].id}}}


async def test_a_mutation_over_get_is_refused(http: httpx.AsyncClient, clock: FakeClock, emulator: Emulator) -> None:
    query = f'mutation {{ disableInstallation(installationId: "{emulator.data.installations[0].id}") }}'
    response = await http.get(PATH, params={"query": query}, headers={"Authorization": wsse(clock)})
    assert response.status_code == 405


async def test_an_invalid_document_is_400_validation_failed(caller: Caller) -> None:
    response = await caller.post("query { partner { id nickname } }")
    assert response.status_code == 400
    body = response.json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "nickname" in body["errors"][0]["message"]


async def test_a_literal_that_is_not_a_uuid_fails_validation(caller: Caller) -> None:
    response = await caller.post('query { installation(id: "not-a-uuid") { id } }')
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_a_syntax_error_is_400_parse_failed(caller: Caller) -> None:
    response = await caller.post("query { partner { id }")
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"


async def test_bad_variables_are_400(caller: Caller) -> None:
    response = await caller.post("query Q($id: Uuid!) { installation(id: $id) { id } }", {"id": 42})
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        ("{not json", "application/json", 400),
        ('"a string"', "application/json", 400),
        ('{"query": 5}', "application/json", 400),
        ("query { partner { id } }", "text/plain", 415),
    ],
)
async def test_malformed_requests(
    http: httpx.AsyncClient, clock: FakeClock, content: str, content_type: str, status: int
) -> None:
    response = await http.post(
        PATH, content=content, headers={"Authorization": wsse(clock), "Content-Type": content_type}
    )
    assert response.status_code == status
    assert response.json()["errors"]


async def test_invisible_things_are_null_without_error(caller: Caller, emulator: Emulator) -> None:
    foreign_inst = emulator.data.foreign_installations[0]
    foreign_meter = emulator.data.foreign_meters[0]
    own = emulator.data.installations[0]
    data = await caller.data(
        """query Q($i: Uuid!, $m: Uuid!, $own: Uuid!, $d: Uuid!) {
             installation(id: $i) { id }
             partner { meter(id: $m) { id } installation(id: $i) { id } }
             own: installation(id: $own) { device(id: $d) { id } }
           }""",
        {"i": foreign_inst.id, "m": foreign_meter.id, "own": own.id, "d": emulator.data.foreign_devices[0].id},
    )
    assert data == {"installation": None, "partner": {"meter": None, "installation": None}, "own": {"device": None}}


async def test_installations_and_meters_use_limit_offset_pagination(caller: Caller, emulator: Emulator) -> None:
    query = """query Q($p: Pagination) {
                 installations(pagination: $p) { id externalId } partner { meters(pagination: $p) { id } } }"""
    everything = await caller.data(query)
    assert [i["id"] for i in everything["installations"]] == [i.id for i in emulator.data.installations]
    assert [m["id"] for m in everything["partner"]["meters"]] == [m.id for m in emulator.data.meters]
    assert {i["externalId"] for i in everything["installations"]} >= {"crm-4711", None}
    page = await caller.data(query, {"p": {"limit": 2, "offset": 1}})
    assert [i["id"] for i in page["installations"]] == [i.id for i in emulator.data.installations[1:3]]
    assert [m["id"] for m in page["partner"]["meters"]] == [m.id for m in emulator.data.meters[1:3]]
    beyond = await caller.data(query, {"p": {"offset": 100}})
    assert beyond == {"installations": [], "partner": {"meters": []}}


async def test_meter_readings_page_through_tiny_pages_exactly_once(
    caller: Caller, emulator: Emulator, clock: FakeClock
) -> None:
    meter = emulator.data.meters[1]
    start = datetime.fromtimestamp(clock(), UTC) - timedelta(hours=5, minutes=7)
    expected = [iso(r.at) for r in emulator.data.readings(meter.id, start, start + timedelta(days=1))]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        data = await caller.data(METER_READINGS, {"id": meter.id, "start": iso(start), "limit": 1000, "cursor": cursor})
        response = data["partner"]["meter"]["readings"]
        assert len(response["readings"]) <= 7  # page_size caps below limit
        seen += [r["time"] for r in response["readings"]]
        pages += 1
        cursor = response["cursor"]
        if cursor is None:
            break
    assert seen == expected
    assert len(expected) == 20  # 5 h 7 min back: 20 quarter hours up to now
    assert pages == 3


async def test_limit_default_and_cap(clock: FakeClock) -> None:
    emulator = create_emulator(clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(emulator.app), base_url="http://x") as http:
        caller = Caller(http, clock)
        meter = emulator.data.meters[0]
        start = iso(emulator.data.window_start)
        default = await caller.data(METER_READINGS, {"id": meter.id, "start": start})
        assert len(default["partner"]["meter"]["readings"]["readings"]) == 100
        capped = await caller.data(METER_READINGS, {"id": meter.id, "start": start, "limit": 5000})
        assert len(capped["partner"]["meter"]["readings"]["readings"]) == 1000
        zero = await caller.post(METER_READINGS, {"id": meter.id, "limit": 0})
        assert zero.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_partner_readings_are_ascending_and_cover_every_meter(
    caller: Caller, emulator: Emulator, clock: FakeClock
) -> None:
    start = datetime.fromtimestamp(clock(), UTC) - timedelta(hours=1)
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        data = await caller.data(PARTNER_READINGS, {"start": iso(start), "limit": 1000, "cursor": cursor})
        rows += data["readings"]["readings"]
        cursor = data["readings"]["cursor"]
        if cursor is None:
            break
    assert len(rows) == 4 * len(emulator.data.meters)  # 05:45, 06:00, 06:15, 06:30 for each meter
    assert len({(r["time"], r["meter"]["id"]) for r in rows}) == len(rows)  # ties split across pages, none repeated
    assert [r["time"] for r in rows] == sorted(r["time"] for r in rows)
    assert all(parse_rfc3339(r["time"]) >= start for r in rows)
    assert {r["meter"]["id"] for r in rows} == {m.id for m in emulator.data.meters}  # never another partner's


async def test_a_cursor_only_works_with_its_own_query(caller: Caller, emulator: Emulator, clock: FakeClock) -> None:
    meter = emulator.data.meters[0]
    start = iso(datetime.fromtimestamp(clock(), UTC) - timedelta(hours=3))
    first = await caller.data(METER_READINGS, {"id": meter.id, "start": start})
    cursor = first["partner"]["meter"]["readings"]["cursor"]
    assert cursor
    other_start = await caller.post(
        METER_READINGS, {"id": meter.id, "start": iso(emulator.data.window_start), "cursor": cursor}
    )
    assert other_start.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    garbage = await caller.post(METER_READINGS, {"id": meter.id, "start": start, "cursor": "garbage!"})
    assert garbage.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    ("fmt", "import_code", "power_code"),
    [
        ("hex", "01-00:01.08.00*ff", "01-00:10.07.00*ff"),
        ("decimal", "1-0:1.8.0", "1-0:16.7.0"),
        ("short", "1.8.0", "16.7.0"),
        ("full", "1-0:1.8.0*255", "1-0:16.7.0*255"),
    ],
)
async def test_obis_format_is_honoured(
    caller: Caller, emulator: Emulator, fmt: str, import_code: str, power_code: str
) -> None:
    query = """query Q($id: Uuid!, $f: ObisFormat) { partner { meter(id: $id) { readings(limit: 1) {
                 readings { values { obisCode(format: $f) plain: obisCode } } } } } }"""
    data = await caller.data(query, {"id": emulator.data.meters[0].id, "f": fmt})
    values = data["partner"]["meter"]["readings"]["readings"][0]["values"]
    codes = [v["obisCode"] for v in values]
    assert codes[0] == import_code
    assert power_code in codes
    assert values[0]["plain"] == "1-0:1.8.0"  # decimal is the default


async def test_device_statuses_and_installation_fields(caller: Caller, emulator: Emulator) -> None:
    inst = emulator.data.installations[1]
    data = await caller.data(
        """query Q($id: Uuid!) { installation(id: $id) { id externalId currentMeter { id number }
             currentDevice { id } meters { id installation { id } } devices { id bridge { connectionStatus }
             core { connectionStatus attachmentStatus batteryLevel powerStatus pinStatus } } } }""",
        {"id": inst.id},
    )
    got: dict[str, Any] = data["installation"]
    assert got["currentDevice"] == {"id": inst.current_device_id}
    assert got["currentMeter"]["id"] == inst.current_meter_id
    assert [m["id"] for m in got["meters"]] == list(inst.meter_ids)
    assert all(m["installation"]["id"] == inst.id for m in got["meters"])
    for device, record in zip(got["devices"], [emulator.data.device(d) for d in inst.device_ids], strict=True):
        assert record is not None
        assert device["bridge"] == {"connectionStatus": record.bridge_connection}
        assert device["core"] == {
            "connectionStatus": record.core_connection,
            "attachmentStatus": record.attachment,
            "batteryLevel": record.battery_level,
            "powerStatus": record.power,
            "pinStatus": record.pin,
        }


async def test_meter_by_number_and_connect_url(caller: Caller, emulator: Emulator) -> None:
    meter = emulator.data.meters[2]
    data = await caller.data(
        """query Q($n: MeterNumber) {
             partner { meter(number: $n) { id } } connectUrl(redirectUrl: "https://e.x", state: "7") }""",
        {"n": meter.number},
    )
    assert data["partner"]["meter"] == {"id": meter.id}
    assert data["connectUrl"].startswith("https://")
    assert "state=7" in data["connectUrl"]


async def test_disable_installation_hides_it(caller: Caller, emulator: Emulator) -> None:
    inst = emulator.data.installations[3]
    mutation = "mutation M($id: Uuid!) { disableInstallation(installationId: $id) }"
    assert await caller.data(mutation, {"id": inst.id}) == {"disableInstallation": True}
    assert await caller.data("query Q($id: Uuid!) { installation(id: $id) { id } }", {"id": inst.id}) == {
        "installation": None
    }
    assert await caller.data(mutation, {"id": inst.id}) == {"disableInstallation": False}
    emulator.reset()
    assert await caller.data("query Q($id: Uuid!) { installation(id: $id) { id } }", {"id": inst.id}) == {
        "installation": {"id": inst.id}
    }


async def test_subscriptions_are_not_served_over_http(caller: Caller) -> None:
    response = await caller.post("subscription { meterReadings { time } }")
    assert response.status_code == 400


async def test_stats_count_requests_and_operations(caller: Caller, emulator: Emulator) -> None:
    await caller.data("query PartnerId { partner { id } }")
    await caller.data("query PartnerId { partner { id } }")
    await caller.post("query { partner { id } }", authorization="Basic bad")
    assert emulator.stats["requests"] == 3
    assert emulator.stats["PartnerId"] == 2
    assert emulator.stats["field:partner"] == 2
    assert emulator.stats["auth:malformed"] == 1
