"""Subscriptions: GraphQL over WebSocket (`graphql-transport-ws`) on the query path, authorized by the
`Authorization` value in `connection_init` (UPSTREAMS.md), driven by gql's own WebSocket transport
over a real loopback socket."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from gql import Client, GraphQLRequest, gql
from gql.transport.exceptions import TransportError
from gql.transport.websockets import WebsocketsTransport

from app.backends.iometer.emulator import create_emulator
from app.infra.timeutil import format_rfc3339, from_epoch
from tests.support.clock import FakeClock
from tests.support.servers import serve_in_thread
from tests.unit.sandbox.iometer.conftest import wsse

METER_READINGS = gql(
    "subscription MeterReadings($startTime: DateTime) { meterReadings(startTime: $startTime) "
    "{ meter { id } time values { obisCode value unit } } }"
)
LIVE_READINGS = gql(
    "subscription LiveReadings($installationId: ID!, $obisCodes: [ObisCode]) "
    "{ liveReadings(installationId: $installationId, obisCodes: $obisCodes) "
    "{ meter { id } time values { obisCode value unit } } }"
)


def transport(url: str, authorization: str) -> WebsocketsTransport:
    return WebsocketsTransport(
        url=url.replace("http://", "ws://") + "/api/v1/query",
        init_payload={"Authorization": authorization},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )


async def take(session: Any, document: Any, variables: dict[str, Any], n: int, then: Any = None) -> list[Any]:
    out: list[Any] = []
    async with asyncio.timeout(10):
        async for result in session.subscribe(GraphQLRequest(document, variable_values=variables or None)):
            out.append(result)
            if then is not None and len(out) == then[0]:
                then[1]()
            if len(out) == n:
                break
    return out


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_779_000_000.0 - 1_779_000_000.0 % 900 + 60)  # a minute past a slot


async def test_meter_readings_replays_then_streams_new_ones(clock: FakeClock) -> None:
    emulator = create_emulator(clock, subscription_poll=0.02)
    meters = emulator.data.meters
    start = clock() - 3600
    expected = [r for m in meters for r in emulator.data.readings(m.id, from_epoch(start), from_epoch(clock() + 1))]
    with serve_in_thread(emulator.app) as url:
        async with Client(transport=transport(url, wsse(clock))) as session:
            replayed = len(expected)
            got = await take(
                session,
                METER_READINGS,
                {"startTime": format_rfc3339(from_epoch(start))},
                replayed + len(meters),
                then=(replayed, lambda: clock.advance(900)),
            )
    times = [g["meterReadings"]["time"] for g in got]
    assert times == sorted(times)
    assert sorted((g["meterReadings"]["meter"]["id"], g["meterReadings"]["time"]) for g in got[:replayed]) == sorted(
        (r.meter_id, format_rfc3339(r.at)) for r in expected
    )
    later = {g["meterReadings"]["time"] for g in got[replayed:]}
    assert later == {format_rfc3339(from_epoch(clock() - clock() % 900))}  # the slot that just arrived
    first = got[0]["meterReadings"]
    record = next(r for r in expected if r.meter_id == first["meter"]["id"] and format_rfc3339(r.at) == first["time"])
    assert {v["obisCode"]: v["value"] for v in first["values"]} == {v.code: v.value for v in record.values}
    assert emulator.stats["MeterReadings"] == 1


async def test_live_readings_stream_only_new_values_of_the_asked_registers(clock: FakeClock) -> None:
    emulator = create_emulator(clock, subscription_poll=0.02)
    installation = emulator.data.installations[0]
    with serve_in_thread(emulator.app) as url:
        async with Client(transport=transport(url, wsse(clock))) as session:
            task = asyncio.create_task(
                take(session, LIVE_READINGS, {"installationId": installation.id, "obisCodes": ["01-00:01.08.00*ff"]}, 1)
            )
            await asyncio.sleep(0.2)
            assert not task.done()  # nothing new yet: live readings are only those taken from now on
            clock.advance(900)
            got = await task
    reading = got[0]["liveReadings"]
    assert reading["meter"]["id"] in installation.meter_ids
    assert [v["obisCode"] for v in reading["values"]] == ["1-0:1.8.0"]
    assert reading["time"] == format_rfc3339(from_epoch(clock() - clock() % 900))


async def test_the_connection_is_refused_without_valid_credentials(clock: FakeClock) -> None:
    emulator = create_emulator(clock)
    with serve_in_thread(emulator.app) as url, pytest.raises((TransportError, OSError)):
        async with Client(transport=transport(url, wsse(clock, secret="wrong-secret"))) as session:
            await take(session, METER_READINGS, {}, 1)
    assert emulator.stats["auth:bad_digest"] == 1


async def test_an_unknown_installation_is_an_error(clock: FakeClock) -> None:
    emulator = create_emulator(clock)
    with serve_in_thread(emulator.app) as url:
        async with Client(transport=transport(url, wsse(clock))) as session:
            with pytest.raises(Exception, match="installation not found"):
                await take(session, LIVE_READINGS, {"installationId": "00000000-0000-4000-8000-000000000000"}, 1)
