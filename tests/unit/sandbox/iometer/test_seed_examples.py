"""The IOmeter page's own examples against the emulator, byte for byte where the page is concrete.

Each request text below is asserted to appear verbatim in the vendor's page (`tests/unit/sandbox/seeds/
iometer-partner-api.txt`, a copy of the page the project pins), so the test sends what the page shows,
not a retyped version. Responses are compared with the page's example responses: exactly the same keys
in the same order and the same JSON types (the page's values are placeholders such as "xyz789"), and
byte for byte where the page is concrete (the auth headers, the OBIS forms, the enum values).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import parse, validate

from app.backends.iometer.emulator import create_emulator
from app.backends.iometer.emulator.schema import build_executable_schema
from tests.support.clock import FakeClock
from tests.unit.sandbox.iometer.conftest import PATH, Caller

PAGE = (Path(__file__).parent.parent / "seeds" / "iometer-partner-api.txt").read_text(encoding="utf-8")

BASIC_ID, BASIC_SECRET = "b1451a19-53c7-4e8a-87a0-7c45d3807e9d", "JjNQKxIYugVSqCrxkbNfQ8Onpvd07K2G"
BASIC_HEADER = (
    "Authorization: Basic YjE0NTFhMTktNTNjNy00ZThhLTg3YTAtN2M0NWQzODA3ZTlkOkpqTlFLeElZdWdWU3FDcnhrYk5mUThPbnB2ZDA3SzJH"
)
WSSE_ID, WSSE_SECRET = "0da56783-39b2-4b43-adaa-301d247fcd59", "1NNbSclq0ULA364TZBB4Hr0EYoRK"
WSSE_HEADER = (
    'Authorization: UsernameToken Username="0da56783-39b2-4b43-adaa-301d247fcd59", '
    'PasswordDigest="NWNiYTMyNzNmZGQ2NWU2ODhjZjc1Mzg3MzliZGE4MTgyMjhjY2Q3NWU1NmYxMzEyM2NhMmI3MWI0ZmMwODY3MA==", '
    'Nonce="eb6c574e12fcfa4cd091a5b21ad0abdb", Created="2025-10-20T12:38:50Z"'
)

CONNECT_URL_LITERAL = """query {
connectUrl(
redirectUrl: "https://example.com"
state: "123456"
)
}"""
CONNECT_URL_NAMED = """query ConnectUrl(
$redirectUrl: String!,
$state: String
) {
connectUrl(
redirectUrl: $redirectUrl,
state: $state
)
}"""
CONNECT_URL_VARIABLES = """{
"redirectUrl": "xyz789",
"state": "xyz789"
}"""
CONNECT_URL_RESPONSE = """{"data": {"connectUrl": "xyz789"}}"""
READINGS_QUERY = """query Readings(
$startTime: DateTime,
$limit: Int,
$cursor: String
) {
readings(
startTime: $startTime,
limit: $limit,
cursor: $cursor
) {
readings {
meter {
...MeterFragment
}
time
values {
...MeterReadingValueFragment
}
}
cursor
}
}"""
READINGS_RESPONSE_KEYS = """{
"data": {
"readings": {
"readings": [MeterReading],
"cursor": "abc123"
}
}
}"""
METER_READINGS_SUBSCRIPTION = """subscription MeterReadings($startTime: DateTime) {
meterReadings(startTime: $startTime) {
meter {
id
installation {
...InstallationFragment
}
number
readings {
...MeterReadingsResponseFragment
}
}
time
values {
obisCode
value
unit
}
}
}"""
LIVE_READINGS_SUBSCRIPTION = """subscription LiveReadings(
$installationId: ID!,
$obisCodes: [ObisCode]
) {
liveReadings(
installationId: $installationId,
obisCodes: $obisCodes
) {"""
# The page uses these fragments without defining them; the test defines them, on the page's types.
FRAGMENTS = """
fragment MeterFragment on Meter { id number }
fragment MeterReadingValueFragment on MeterReadingValue { obisCode value unit }
fragment InstallationFragment on Installation { id }
fragment MeterReadingsResponseFragment on MeterReadingsResponse { cursor }
"""
TYPE_EXAMPLES = {
    "DeviceBridge": """{"connectionStatus": "connected"}""",
    "DeviceCore": """{
"connectionStatus": "connected",
"attachmentStatus": "attached",
"batteryLevel": 100,
"powerStatus": "battery",
"pinStatus": "missing"
}""",
    "MeterReadingValue": """{
"obisCode": "1-0:1.8.0",
"value": 987.65,
"unit": "Wh"
}""",
}
OBIS_FORMS = {
    "hex": "Returns OBIS code in hexadecimal format with 6 value groups (A-B:C.D.E*F), example: 01-00:01.08.00*ff",
    "decimal": "Returns OBIS code in decimal format with 5 value groups (A-B:C.D.E), example: 1-0:1.8.0",
    "short": "Returns OBIS code in decimal format with 3 value groups (C.D.E), example: 1.8.0",
    "full": "Returns OBIS code in decimal format with 6 value groups (A-B:C.D.E*F), example: 1-0:1.8.0*255",
}


def with_fragments(document: str) -> str:
    """The page's document plus the definitions of the fragments it spreads (and only those)."""
    used = [line for line in FRAGMENTS.strip().splitlines() if "..." + line.split()[1] in document]
    return document + "\n" + "\n".join(used)


ENUM_EXAMPLES = {"ConnectionStatus": "connected", "CoreAttachmentStatus": "attached", "CorePowerStatus": "battery"}


@pytest.mark.parametrize(
    "text",
    [
        BASIC_HEADER,
        WSSE_HEADER,
        CONNECT_URL_LITERAL,
        CONNECT_URL_NAMED,
        CONNECT_URL_VARIABLES,
        CONNECT_URL_RESPONSE,
        READINGS_QUERY,
        READINGS_RESPONSE_KEYS,
        METER_READINGS_SUBSCRIPTION,
        LIVE_READINGS_SUBSCRIPTION,
        *TYPE_EXAMPLES.values(),
        *OBIS_FORMS.values(),
    ],
)
def test_every_example_used_here_is_the_page_verbatim(text: str) -> None:
    assert text in PAGE


def shape(value: Any) -> Any:
    """Keys in order and JSON types, without the values (the page's values are placeholders)."""
    if isinstance(value, dict):
        return [(key, shape(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


async def page_client(clock: FakeClock) -> tuple[httpx.AsyncClient, Any]:
    emulator = create_emulator(clock, partners={BASIC_ID: BASIC_SECRET, WSSE_ID: WSSE_SECRET})
    client = httpx.AsyncClient(transport=httpx.ASGITransport(emulator.app), base_url="http://iometer.test")
    return client, emulator


async def test_the_pages_basic_and_wsse_headers_are_accepted_byte_for_byte() -> None:
    clock = FakeClock(datetime(2025, 10, 20, 12, 38, 50, tzinfo=UTC))  # the WSSE example's `Created`
    client, _ = await page_client(clock)
    async with client:
        for header in (BASIC_HEADER, WSSE_HEADER):
            value = header.removeprefix("Authorization: ")
            response = await client.post(PATH, json={"query": CONNECT_URL_LITERAL}, headers={"Authorization": value})
            assert response.status_code == 200, response.text
            assert shape(response.json()) == shape(json.loads(CONNECT_URL_RESPONSE))
        replay = await client.post(
            PATH,
            json={"query": CONNECT_URL_LITERAL},
            headers={"Authorization": WSSE_HEADER.removeprefix("Authorization: ")},
        )
        assert replay.status_code == 401  # the same nonce again is a replay


async def test_connect_url_examples(caller: Caller) -> None:
    literal = await caller.post(CONNECT_URL_LITERAL)
    named = await caller.post(CONNECT_URL_NAMED, json.loads(CONNECT_URL_VARIABLES), operationName="ConnectUrl")
    for response in (literal, named):
        assert response.status_code == 200, response.text
        assert shape(response.json()) == shape(json.loads(CONNECT_URL_RESPONSE))
    assert "example.com" in literal.json()["data"]["connectUrl"]


async def test_the_readings_example_with_the_fragments_it_uses(caller: Caller, clock: FakeClock) -> None:
    start = datetime.fromtimestamp(clock() - 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = await caller.post(
        with_fragments(READINGS_QUERY), {"startTime": start, "limit": 2}, operationName="Readings"
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [key for key, _ in shape(body)] == ["data"]
    assert list(body["data"]) == ["readings"]
    assert list(body["data"]["readings"]) == ["readings", "cursor"]
    reading = body["data"]["readings"]["readings"][0]
    assert list(reading) == ["meter", "time", "values"]
    assert shape(reading["values"][0]) == shape(json.loads(TYPE_EXAMPLES["MeterReadingValue"]))
    assert isinstance(body["data"]["readings"]["cursor"], str)  # two of many readings: more remain


def test_the_subscription_examples_validate_against_the_emulators_schema() -> None:
    schema = build_executable_schema()
    assert validate(schema, parse(with_fragments(METER_READINGS_SUBSCRIPTION))) == []
    start = PAGE.index(LIVE_READINGS_SUBSCRIPTION)
    live = PAGE[start : PAGE.index("Variables", start)].strip()
    assert validate(schema, parse(with_fragments(live))) == []


async def test_device_examples_have_the_pages_keys_and_types(caller: Caller, emulator: Any) -> None:
    inst = emulator.data.installations[0]
    data = await caller.data(
        "query($i: Uuid!, $d: Uuid!) { installation(id: $i) { device(id: $d) { bridge { connectionStatus } "
        "core { connectionStatus attachmentStatus batteryLevel powerStatus pinStatus } } } }",
        {"i": inst.id, "d": inst.current_device_id},
    )
    device = data["installation"]["device"]
    assert shape(device["bridge"]) == shape(json.loads(TYPE_EXAMPLES["DeviceBridge"]))
    assert shape(device["core"]) == shape(json.loads(TYPE_EXAMPLES["DeviceCore"]))


@pytest.mark.parametrize("form", sorted(OBIS_FORMS))
async def test_each_obis_form_is_the_pages_example_byte_for_byte(caller: Caller, clock: FakeClock, form: str) -> None:
    meter = "1-0:1.8.0"
    start = datetime.fromtimestamp(clock() - 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    data = await caller.data(
        f"query($t: DateTime) {{ readings(startTime: $t, limit: 1) {{ readings {{ values {{ "
        f"decimal: obisCode code: obisCode(format: {form}) }} }} }} }}",
        {"t": start},
    )
    values = data["readings"]["readings"][0]["values"]
    example = OBIS_FORMS[form].rsplit("example: ", 1)[1]
    assert next(v["code"] for v in values if v["decimal"] == meter) == example


def test_enum_examples_are_enum_values() -> None:
    schema = build_executable_schema()
    for type_name, example in ENUM_EXAMPLES.items():
        assert f"{type_name}\n" in PAGE
        assert f'Example\n"{example}"' in PAGE
        assert example in schema.type_map[type_name].values  # type: ignore[attr-defined]
    assert 'Example\n"hex"' in PAGE
    assert "hex" in schema.type_map["ObisFormat"].values  # type: ignore[attr-defined]
    assert 'Example\n"missing"' in PAGE
    assert "missing" in schema.type_map["PinStatus"].values  # type: ignore[attr-defined]


def test_the_emulators_sdl_and_the_adapters_agree_today() -> None:
    """Two files on purpose (the emulator may disagree with the adapter); today they say the same."""
    from graphql import build_schema, print_schema

    from app.backends.iometer.documents import schema_sdl as adapter_sdl
    from app.backends.iometer.emulator.schema import schema_sdl as emulator_sdl

    assert print_schema(build_schema(adapter_sdl())) == print_schema(build_schema(emulator_sdl()))
