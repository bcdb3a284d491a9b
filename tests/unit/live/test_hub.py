"""The hub against a scripted `LiveSource` and history: fan-out, duplicate drop, catch-up after a
reconnect, resume without gap or repeat, overflow, linger, limits. No network: the client side is the
real `EventStream` driven through plain ASGI callables."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from app.backends.live import CONNECTED, Connected, LiveOverloaded, LiveTarget
from app.domain.models import Reading
from app.infra.errors import NotSupported, UpstreamUnavailable
from app.live.hub import Hub, Subscriber
from app.live.metrics import LiveMetrics
from app.live.response import EventStream
from tests.support.clock import FakeClock
from tests.support.live import Event, parse_events

T0 = datetime(2026, 5, 19, 6, 0, tzinfo=UTC)
METER = "fake:m1"
OTHER = "fake:m2"


def at(k: int) -> datetime:
    return T0 + timedelta(minutes=15 * k)


def reading(k: int, meter: str = METER, quantity: str = "energy_import", value: float | None = None) -> Reading:
    return Reading(meter_id=meter, time=at(k), quantity=quantity, obis=None, value=value or float(k), unit="kWh")


def instant(k: int, meter: str = METER) -> list[Reading]:
    return [reading(k, meter), reading(k, meter, "power", 100.0 + k)]


class ScriptedSource:
    """Each `stream` call takes the next script: a list of items (`CONNECTED`, readings, or an exception
    to raise); after its script a stream waits for more items pushed with `push`."""

    name = "fake"
    resumable = False

    def __init__(self, *scripts: list[Any]) -> None:
        self.scripts = list(scripts)
        self.calls: list[datetime | None] = []
        self.open = 0
        self.pushed: asyncio.Queue[Any] = asyncio.Queue()

    def channel_key(self, target: LiveTarget) -> str:
        return target.site_id or ""

    async def stream(self, key: str, since: datetime | None) -> AsyncIterator[Connected | Sequence[Reading]]:
        self.calls.append(since)
        script = self.scripts.pop(0) if self.scripts else [CONNECTED]
        self.open += 1
        try:
            for item in script:
                if isinstance(item, Exception):
                    raise item
                yield item
            while True:
                item = await self.pushed.get()
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.open -= 1


class History:
    def __init__(self, rows: list[Reading]) -> None:
        self.rows = rows
        self.calls: list[tuple[str, datetime, datetime]] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, meter_id: str, start: datetime, end: datetime) -> list[Reading]:
        self.calls.append((meter_id, start, end))
        if self.gate is not None:
            await self.gate.wait()
        return [r for r in self.rows if r.meter_id == meter_id and start <= r.time < end]


def target(meter: str = METER, backend: str = "fake") -> LiveTarget:
    return LiveTarget(backend=backend, meter_id=meter, upstream_id=meter.split(":")[1], site_id="site-1")


def make_hub(
    source: ScriptedSource, history: History, clock: FakeClock, **options: Any
) -> tuple[Hub, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = LiveMetrics(registry)

    async def resolve(meter_id: str) -> LiveTarget:
        return target(meter_id, meter_id.split(":")[0])

    options = {"backoff": 0.01, "linger": 0.05, "ping_interval": 5.0, **options}
    return Hub({"fake": source}, resolve=resolve, history=history, clock=clock, metrics=metrics, **options), registry


class Client:
    """Runs an `EventStream` over fake ASGI callables and parses what it sends."""

    def __init__(self, hub: Hub, sub: Subscriber, replay: list[bytes]) -> None:
        self.text = ""
        self.complete = False
        self._disconnect = asyncio.Event()
        self.task = asyncio.create_task(EventStream(hub, sub, replay)({}, self._receive, self._send))

    async def _receive(self) -> dict[str, Any]:
        await self._disconnect.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            self.text += message.get("body", b"").decode()
            self.complete = not message.get("more_body", False)

    def events(self) -> list[Event]:
        return parse_events(self.text)[0]

    def times(self) -> list[str]:
        return [e.data["time"] for e in self.events() if e.event == "readings"]

    async def leave(self) -> None:
        self._disconnect.set()
        async with asyncio.timeout(5):
            await self.task


async def until(check: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


def stamp(k: int) -> str:
    return at(k).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_duplicates_and_stale_readings_are_dropped_once_per_meter() -> None:
    source = ScriptedSource([CONNECTED, instant(1), instant(1), [reading(1, value=99.0)], instant(2), instant(0)])
    hub, registry = make_hub(source, History([]), FakeClock(at(0).timestamp()))
    client = Client(hub, hub.subscribe(target(), None), [])
    await until(lambda: len(client.times()) == 2)
    await asyncio.sleep(0.05)
    assert client.times() == [stamp(1), stamp(2)]
    first = next(e for e in client.events() if e.event == "readings")
    assert [(i["quantity"], i["value"], i["unit"]) for i in first.data["items"]] == [
        ("energy_import", 1.0, "kWh"),
        ("power", 101.0, "kWh"),
    ]
    assert registry.get_sample_value("facade_live_events_total", {"backend": "fake"}) == 2
    await client.leave()
    await hub.aclose()


async def test_clients_get_only_their_meter_and_their_quantities() -> None:
    source = ScriptedSource([CONNECTED])
    hub, _ = make_hub(source, History([]), FakeClock(at(0).timestamp()))
    power_only = Client(hub, hub.subscribe(target(), frozenset({"power"})), [])
    other = Client(hub, hub.subscribe(target(OTHER), None), [])
    assert len(hub.channels) == 1  # both meters are on one upstream stream
    await source.pushed.put(instant(1) + instant(1, OTHER))
    await until(lambda: power_only.times() and other.times())
    [event] = [e for e in power_only.events() if e.event == "readings"]
    assert [i["quantity"] for i in event.data["items"]] == ["power"]
    assert {i["meter_id"] for e in other.events() for i in e.data.get("items", [])} == {OTHER}
    assert source.calls == [None]
    await power_only.leave()
    await other.leave()
    await hub.aclose()


async def test_a_reconnect_says_so_backs_off_and_catches_up_from_history() -> None:
    clock = FakeClock(at(0).timestamp())
    history = History([r for k in range(0, 5) for r in instant(k)])
    source = ScriptedSource([CONNECTED, instant(1), UpstreamUnavailable("down")], [ConnectionError("refused")])
    hub, _ = make_hub(source, history, clock)
    client = Client(hub, hub.subscribe(target(), None), [])
    await until(lambda: any(e.event == "status" for e in client.events()))
    clock.advance(3 * 900)  # instants 2 and 3 happen while the stream is down
    await until(lambda: len(source.calls) >= 3)
    await until(lambda: len(client.times()) == 3)
    await source.pushed.put(instant(3) + instant(4))  # the live stream overlaps the catch-up: 3 again
    await until(lambda: len(client.times()) == 4)
    await asyncio.sleep(0.05)
    sequence = [(e.event, e.data.get("time") or e.data.get("upstream")) for e in client.events()]
    assert sequence == [
        ("readings", stamp(1)),
        ("status", "reconnecting"),
        ("readings", stamp(2)),
        ("readings", stamp(3)),
        ("status", "live"),
        ("readings", stamp(4)),
    ]
    [(meter, start, end)] = history.calls
    assert (meter, start) == (METER, at(1))  # from the meter's watermark
    assert end > at(3)
    await client.leave()
    await hub.aclose()


def test_backoff_grows_is_capped_and_jittered() -> None:
    hub, _ = make_hub(ScriptedSource(), History([]), FakeClock(), backoff=1.0, backoff_max=30.0, rng=random.Random(1))
    for attempt, step in [(0, 1.0), (1, 2.0), (3, 8.0), (10, 30.0), (100, 30.0)]:
        delays = {hub.backoff_delay(attempt) for _ in range(20)}
        assert all(step / 2 <= d <= step for d in delays)
        assert len(delays) > 10  # jitter: not in lockstep


async def test_resume_replays_history_and_live_arrivals_without_gap_or_repeat() -> None:
    clock = FakeClock(at(3).timestamp() + 60)
    history = History([r for k in range(-3, 4) for r in instant(k)])
    source = ScriptedSource([CONNECTED])
    hub, _ = make_hub(source, history, clock)
    watcher = Client(hub, hub.subscribe(target(), None), [])  # keeps the channel live
    await until(lambda: hub.channels and next(iter(hub.channels.values())).state == "live")
    sub = hub.subscribe(target(), None)
    history.gate = asyncio.Event()
    replay = asyncio.create_task(hub.replay(sub, at(0)))
    await until(lambda: history.calls)  # the channel went live at 3 + 60 s: older instants need history
    clock.advance(900)
    await source.pushed.put(instant(4))  # arrives while the history is being read, and is in it too
    await until(lambda: len(sub.queue) == 1)
    history.rows += instant(4)
    history.gate.set()
    resumed = Client(hub, sub, await replay)
    await until(lambda: len(resumed.times()) == 4)
    await source.pushed.put(instant(5))
    await until(lambda: len(resumed.times()) == 5)
    await asyncio.sleep(0.05)
    assert resumed.times() == [stamp(k) for k in range(1, 6)]
    # a later resume inside the channel's span is served from memory
    calls = len(history.calls)
    again = hub.subscribe(target(), None)
    chunks = await hub.replay(again, at(4))
    assert len(history.calls) == calls
    assert [e.data["time"] for e in parse_events(b"".join(chunks).decode())[0]] == [stamp(5)]
    hub.unsubscribe(again)
    await resumed.leave()
    await watcher.leave()
    await hub.aclose()


async def test_resume_is_bounded_to_24_hours() -> None:
    clock = FakeClock(at(0).timestamp())
    history = History([])
    hub, _ = make_hub(ScriptedSource([CONNECTED]), history, clock)
    sub = hub.subscribe(target(), None)
    await hub.replay(sub, at(0) - timedelta(days=30))
    [(_, start, _)] = history.calls
    assert start == at(0) - timedelta(hours=24)
    hub.unsubscribe(sub)
    await hub.aclose()


async def test_an_overflowing_client_is_dropped_alone_with_a_last_status() -> None:
    hub, registry = make_hub(
        ScriptedSource([CONNECTED]), History([]), FakeClock(at(0).timestamp()), queue_size=3, overflow_grace=0.05
    )
    source = hub.sources["fake"]
    assert isinstance(source, ScriptedSource)
    stuck = hub.subscribe(target(), None)  # nobody drains it
    aborted: list[bool] = []
    stuck.abort = lambda: aborted.append(True)
    healthy = Client(hub, hub.subscribe(target(), None), [])
    for k in range(1, 6):
        await source.pushed.put(instant(k))
    await until(lambda: len(healthy.times()) == 5)
    assert stuck.overflowed
    assert [chunk for _, chunk in stuck.queue] == [b'event: status\ndata: {"upstream":"overflow"}\n\n']
    assert hub.clients == 1
    assert registry.get_sample_value("facade_live_clients") == 1
    assert healthy.times() == [stamp(k) for k in range(1, 6)]
    await until(lambda: aborted == [True])  # it never took its last event: cut off after the grace
    await healthy.leave()
    await hub.aclose()


async def test_the_pump_sends_the_overflow_status_and_ends_the_response() -> None:
    hub, _ = make_hub(ScriptedSource([CONNECTED]), History([]), FakeClock(at(0).timestamp()), queue_size=2)
    sub = hub.subscribe(target(), None)
    for k in range(1, 4):
        hub.channels[("fake", "site-1")].publish(instant(k))
    client = Client(hub, sub, [])
    async with asyncio.timeout(5):
        await client.task
    assert client.complete
    assert client.events()[-1] == Event("status", {"upstream": "overflow"}, None)
    await hub.aclose()


async def test_the_stream_closes_after_the_linger_and_not_before() -> None:
    source = ScriptedSource([CONNECTED])
    hub, registry = make_hub(source, History([]), FakeClock(at(0).timestamp()), linger=0.3)
    client = Client(hub, hub.subscribe(target(), None), [])
    await until(lambda: source.open == 1)
    assert registry.get_sample_value("facade_live_upstream_streams", {"backend": "fake"}) == 1
    await client.leave()
    await asyncio.sleep(0.1)
    assert source.open == 1  # lingering
    back = Client(hub, hub.subscribe(target(), None), [])  # a quick reconnect reuses it
    await back.leave()
    await until(lambda: source.open == 0, timeout=1.0)
    assert registry.get_sample_value("facade_live_upstream_streams", {"backend": "fake"}) == 0
    assert source.calls == [None]
    await hub.aclose()


async def test_limits_and_unsupported_backends() -> None:
    hub, _ = make_hub(ScriptedSource([CONNECTED]), History([]), FakeClock(), max_clients=1)
    sub = hub.subscribe(target(), None)
    with pytest.raises(LiveOverloaded) as overloaded:
        hub.subscribe(target(), None)
    assert overloaded.value.status == 503
    assert overloaded.value.retry_after >= 1
    with pytest.raises(NotSupported):
        await hub.resolve("other:m1")
    hub.unsubscribe(sub)
    hub.unsubscribe(sub)  # idempotent
    assert hub.clients == 0
    hub.subscribe(target(), None)
    await hub.aclose()


async def test_pings_keep_an_idle_stream_open() -> None:
    hub, _ = make_hub(ScriptedSource([CONNECTED]), History([]), FakeClock(), ping_interval=0.05)
    client = Client(hub, hub.subscribe(target(), None), [])
    await asyncio.sleep(0.28)
    pings = client.text.count(": ping\n\n")
    assert 4 <= pings <= 9  # every 2/3 to 3/3 of the interval
    await client.leave()
    await hub.aclose()


async def test_ending_the_streams_completes_every_response() -> None:
    hub, _ = make_hub(ScriptedSource([CONNECTED]), History([]), FakeClock())
    clients = [Client(hub, hub.subscribe(target(), None), []) for _ in range(3)]
    await asyncio.sleep(0.01)
    hub.end_streams()
    async with asyncio.timeout(5):
        await asyncio.gather(*(c.task for c in clients))
    assert all(c.complete for c in clients)
    assert hub.clients == 0
    await hub.aclose()


async def test_a_meter_nobody_watched_during_an_outage_is_resumed_from_history_not_from_memory() -> None:
    clock = FakeClock(at(0).timestamp())
    history = History([r for k in range(0, 5) for m in (METER, OTHER) for r in instant(k, m)])
    source = ScriptedSource([CONNECTED, instant(1) + instant(1, OTHER), ConnectionError("dropped")], [CONNECTED])
    hub, _ = make_hub(source, history, clock)
    watcher = Client(hub, hub.subscribe(target(), None), [])  # watches METER only
    await until(lambda: len(watcher.times()) == 1)
    clock.advance(3 * 900)  # 2 and 3 happen while the stream is down
    await until(lambda: len(watcher.times()) == 3)  # caught up: METER only
    channel = next(iter(hub.channels.values()))
    await until(lambda: channel.state == "live")
    await source.pushed.put(instant(4) + instant(4, OTHER))
    await until(lambda: len(watcher.times()) == 4)
    assert [call[0] for call in history.calls] == [METER]
    late = hub.subscribe(target(OTHER), None)
    chunks = await hub.replay(late, at(1))
    assert [call[0] for call in history.calls] == [METER, OTHER]  # memory has a hole for OTHER
    assert [e.data["time"] for e in parse_events(b"".join(chunks).decode())[0]] == [stamp(2), stamp(3), stamp(4)]
    hub.unsubscribe(late)
    await watcher.leave()
    await hub.aclose()


async def test_upstream_streams_are_bounded_a_lingering_one_makes_room() -> None:
    class PerMeter(ScriptedSource):
        def channel_key(self, target: LiveTarget) -> str:
            return target.meter_id

    source = PerMeter()
    hub, _ = make_hub(source, History([]), FakeClock(), max_clients=2, linger=30)
    first = hub.subscribe(target("fake:a"), None)
    hub.unsubscribe(first)  # lingers
    second = hub.subscribe(target("fake:b"), None)
    third = hub.subscribe(target("fake:c"), None)  # closes the lingering one instead of a third stream
    assert sorted(key for _, key in hub.channels) == ["fake:b", "fake:c"]
    hub.unsubscribe(second)
    hub.unsubscribe(third)
    await hub.aclose()
