"""The live hub: one shared upstream stream per channel, fanned out to bounded per-client queues.

A *channel* is one upstream stream (`LiveSource.channel_key`: an IOmeter installation, a Waltero
device). It opens with its first client and closes `linger` seconds after its last one leaves, so a
client that reconnects at once finds it still running. While open it:

- keeps a per-meter *watermark* (the newest instant sent) and drops anything at or before it, which
  removes the vendor's duplicates and the overlap between a catch-up and the live stream;
- keeps the last `recent` instants per meter, so a client resuming inside the channel's gap-free span
  is replayed from memory without a vendor call;
- on upstream trouble tells its clients `reconnecting`, retries with exponential backoff and jitter,
  and once connected again replays from history what it missed (per watched meter, from its
  watermark), then tells them `live`.

A *subscriber* is one client: a bounded queue of encoded events. A full queue never blocks the
channel: that client alone is dropped, its queue replaced by a last `status: overflow`.

Ordering for resume without gap or repeat: a client subscribes (its queue starts filling) before its
replay is read, and afterwards skips every queued instant at or before the last one replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from app.backends.live import Connected, History, LiveOverloaded, LiveSource, LiveTarget, Resolve
from app.domain.models import Reading
from app.infra.errors import NotSupported
from app.infra.timeutil import Clock, from_epoch
from app.live import sse
from app.live.metrics import LiveMetrics

log = logging.getLogger("app.live")

REPLAY_LIMIT = timedelta(hours=24)
"""Resume replays at most this far back (CONTRACT.md)."""
HISTORY_SLACK = timedelta(seconds=1)
"""History windows end this far after now (their end is exclusive)."""


@dataclass(frozen=True, slots=True)
class Instant:
    """Every reading of one meter at one time (all quantities)."""

    meter_id: str
    time: datetime
    readings: tuple[Reading, ...]


def instants(readings: Iterable[Reading]) -> list[Instant]:
    """Group readings by (meter, time), ascending by time; readings keep their order within an instant."""
    grouped: dict[tuple[str, datetime], list[Reading]] = {}
    for reading in readings:
        grouped.setdefault((reading.meter_id, reading.time), []).append(reading)
    out = [Instant(meter, time, tuple(rows)) for (meter, time), rows in grouped.items()]
    out.sort(key=lambda i: i.time)
    return out


class Subscriber:
    """One client's bounded queue of `(instant time or None for a status, encoded event)`."""

    __slots__ = (
        "abort",
        "channel",
        "closed",
        "ending",
        "last",
        "maxsize",
        "overflowed",
        "ping_due",
        "quantities",
        "queue",
        "target",
        "waiter",
        "written",
    )

    def __init__(self, target: LiveTarget, quantities: frozenset[str] | None, maxsize: int) -> None:
        self.target = target
        self.quantities = quantities
        self.maxsize = maxsize
        self.queue: deque[tuple[datetime | None, bytes]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.ping_due = False
        self.written = time.monotonic()
        """When the client was last written to (the hub's ticker pings it before it has been silent
        for the ping interval)."""
        self.last: datetime | None = None
        """The newest instant this client has been sent (or its resume point)."""
        self.channel: Channel | None = None
        self.overflowed = False
        self.ending = False
        """The server is stopping: send what is queued, then end the response."""
        self.closed = False
        self.abort: Callable[[], None] | None = None
        """Set by the response: ends the client's connection when it will not take its last event."""

    def offer(self, at: datetime | None, chunk: bytes) -> bool:
        """Queue an event; False (and nothing queued) when the queue is full."""
        if len(self.queue) >= self.maxsize:
            return False
        self.queue.append((at, chunk))
        self.wake()
        return True

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Until `wake()`: a bare future, cheaper than an `asyncio.Event` per client per event."""
        self.waiter = waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self.waiter = None

    def select(self, readings: Sequence[Reading]) -> list[Reading]:
        if self.quantities is None:
            return list(readings)
        return [r for r in readings if r.quantity in self.quantities]

    def encode(self, instant: Instant) -> bytes | None:
        items = self.select(instant.readings)
        return sse.readings_event(instant.meter_id, instant.time, items) if items else None


ChannelState = Literal["connecting", "live", "reconnecting"]


class Channel:
    """One shared upstream stream and the clients watching meters on it."""

    def __init__(self, hub: Hub, source: LiveSource, key: str) -> None:
        self.hub = hub
        self.source = source
        self.key = key
        self.subscribers: dict[str, set[Subscriber]] = {}
        self.watermarks: dict[str, datetime] = {}
        self.recent: dict[str, deque[Instant]] = {}
        self.complete_since: datetime | None = None
        """When the stream first connected."""
        self.coverage: dict[str, datetime] = {}
        """Per meter: memory (`recent`) holds every instant of the meter after this time."""
        self.default_coverage: datetime | None = None
        """The same for a meter not in `coverage`: the first connect, or the end of the last outage (a
        meter nobody watched during an outage was not caught up, so memory has a hole before it)."""
        self.state: ChannelState = "connecting"
        self.task: asyncio.Task[None] | None = None
        self.linger: asyncio.TimerHandle | None = None

    @property
    def backend(self) -> str:
        return self.source.name

    # --- fan-out ------------------------------------------------------------------------------------

    def publish(self, readings: Iterable[Reading]) -> int:
        """Send every instant newer than its meter's watermark to that meter's clients; returns how
        many instants went out (the rest were duplicates)."""
        sent = 0
        events = self.hub.metrics.events.labels(self.backend)
        for instant in instants(readings):
            mark = self.watermarks.get(instant.meter_id)
            if mark is not None and instant.time <= mark:
                continue
            self.watermarks[instant.meter_id] = instant.time
            ring = self.recent.get(instant.meter_id)
            if ring is None:
                ring = self.recent[instant.meter_id] = deque(maxlen=self.hub.recent)
            ring.append(instant)
            sent += 1
            events.inc()
            watchers = self.subscribers.get(instant.meter_id)
            if not watchers:
                continue
            encoded: dict[frozenset[str] | None, bytes | None] = {}
            for sub in list(watchers):
                if sub.quantities not in encoded:
                    encoded[sub.quantities] = sub.encode(instant)
                chunk = encoded[sub.quantities]
                if chunk is not None and not sub.offer(instant.time, chunk):
                    self.hub.overflow(sub)
        return sent

    def broadcast(self, state: sse.UpstreamState) -> None:
        chunk = sse.status_event(state)
        for watchers in list(self.subscribers.values()):
            for sub in list(watchers):
                if not sub.offer(None, chunk):
                    self.hub.overflow(sub)

    def covers(self, meter_id: str, since: datetime) -> bool:
        """Whether memory holds every instant of `meter_id` after `since` (never while the stream is
        down: what it is missing is not known yet)."""
        start = self.coverage.get(meter_id, self.default_coverage)
        if self.state != "live" or start is None or since < start:
            return False
        ring = self.recent.get(meter_id)
        return ring is None or len(ring) < (ring.maxlen or 0) or ring[0].time <= since

    # --- the upstream loop --------------------------------------------------------------------------

    def resume_point(self) -> datetime | None:
        marks = [self.watermarks[m] for m in self.subscribers if m in self.watermarks]
        if self.complete_since is not None:
            marks += [self.complete_since for m in self.subscribers if m not in self.watermarks]
        return min(marks) if marks else self.complete_since

    async def run(self) -> None:
        attempt = 0
        while True:
            try:
                stream = self.source.stream(self.key, self.resume_point())
                try:
                    async for item in stream:
                        if isinstance(item, Connected):
                            await self._connected()
                            attempt = 0
                        else:
                            self.publish(item)
                        # let the clients' pumps run between upstream messages: a burst must not fill
                        # the queues of clients that would keep up
                        await asyncio.sleep(0)
                finally:
                    await _aclose(stream)
                raise ConnectionError("the upstream stream ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "live upstream trouble",
                    extra={"fields": {"backend": self.backend, "error": type(exc).__name__, "attempt": attempt}},
                )
                if self.state != "reconnecting":
                    self.state = "reconnecting"
                    self.broadcast("reconnecting")
                await asyncio.sleep(self.hub.backoff_delay(attempt))
                attempt += 1

    async def _connected(self) -> None:
        now = from_epoch(self.hub.clock())
        if self.complete_since is None:
            self.complete_since = self.default_coverage = now
        else:
            caught = set(self.subscribers)  # a resumable source resumes from their watermarks itself
            if not self.source.resumable:
                await self._catch_up(now, caught)
            self._after_outage(now, caught)
        if self.state == "reconnecting":
            self.broadcast("live")
        self.state = "live"

    def _after_outage(self, now: datetime, caught: set[str]) -> None:
        """Memory stays complete for the meters caught up (within the 24 h replay bound); for every
        other meter it is complete only from now on."""
        before = self.default_coverage or now
        for meter_id in caught:
            self.coverage[meter_id] = max(self.coverage.get(meter_id, before), now - REPLAY_LIMIT)
        for meter_id in list(self.coverage):
            if meter_id not in caught:
                self.coverage[meter_id] = now
        self.default_coverage = now

    async def _catch_up(self, now: datetime, meters: set[str]) -> None:
        """Replay, for every watched meter, what the stream carried while it was down."""
        assert self.complete_since is not None
        for meter_id in sorted(meters):
            since = max(self.watermarks.get(meter_id, self.complete_since), now - REPLAY_LIMIT)
            rows = await self.hub.history(meter_id, since, now + HISTORY_SLACK)
            self.publish(r for r in rows if r.time > since and r.meter_id == meter_id)


async def _aclose(stream: object) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


class Hub:
    """Every open channel and subscriber of one replica. See the module docstring."""

    def __init__(
        self,
        sources: Mapping[str, LiveSource],
        *,
        resolve: Resolve,
        history: History,
        clock: Clock,
        metrics: LiveMetrics,
        max_clients: int = 1000,
        queue_size: int = 256,
        ping_interval: float = 15.0,
        linger: float = 30.0,
        backoff: float = 1.0,
        backoff_max: float = 30.0,
        overflow_grace: float = 5.0,
        recent: int = 128,
        rng: random.Random | None = None,
    ) -> None:
        self.sources = dict(sources)
        self._resolve = resolve
        self.history = history
        self.clock = clock
        self.metrics = metrics
        self.max_clients = max_clients
        self.queue_size = queue_size
        self.ping_interval = ping_interval
        self.linger = linger
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.overflow_grace = overflow_grace
        self.recent = recent
        self.rng = rng or random.Random()
        self.channels: dict[tuple[str, str], Channel] = {}
        self.clients = 0
        self.subscribers: set[Subscriber] = set()
        self._ticker: asyncio.Task[None] | None = None
        self.cleanups: list[Callable[[], None]] = []
        for name in self.sources:
            metrics.upstream_streams.labels(name).set(0)
            metrics.events.labels(name)
        metrics.clients.set(0)

    def backoff_delay(self, attempt: int) -> float:
        """Exponential, capped, with jitter (half to all of the step) so replicas do not reconnect in step."""
        step = min(self.backoff_max, self.backoff * 2.0 ** min(attempt, 30))
        return step * (0.5 + 0.5 * self.rng.random())

    async def resolve(self, meter_id: str) -> LiveTarget:
        """The target of a meter; raises the usual problems, and 501 for a backend that cannot stream."""
        target = await self._resolve(meter_id)
        if target.backend not in self.sources:
            raise NotSupported(f"{target.backend} has no live readings.", backend=target.backend)
        return target

    # --- subscribers ------------------------------------------------------------------------------

    def subscribe(self, target: LiveTarget, quantities: frozenset[str] | None) -> Subscriber:
        """A new client on `target`'s channel (opened if needed); raises `LiveOverloaded` past the cap."""
        if self.clients >= self.max_clients:
            raise LiveOverloaded(
                f"{self.max_clients} live streams are open on this replica; retry shortly.",
                retry_after=min(30.0, max(1.0, self.linger)),
            )
        source = self.sources[target.backend]
        key = (source.name, source.channel_key(target))
        channel = self.channels.get(key)
        if channel is None:
            self._make_room()
            channel = self.channels[key] = Channel(self, source, key[1])
            # A fresh context: the stream outlives the request that opened it (request id, call counter).
            channel.task = asyncio.create_task(channel.run(), name=f"live:{source.name}", context=contextvars.Context())
            self.metrics.upstream_streams.labels(source.name).inc()
        if channel.linger is not None:
            channel.linger.cancel()
            channel.linger = None
        sub = Subscriber(target, quantities, self.queue_size)
        sub.channel = channel
        channel.subscribers.setdefault(target.meter_id, set()).add(sub)
        self.subscribers.add(sub)
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick(), name="live:pings", context=contextvars.Context())
        self.clients += 1
        self.metrics.clients.set(self.clients)
        if channel.state == "reconnecting":
            sub.offer(None, sse.status_event("reconnecting"))
        return sub

    def _make_room(self) -> None:
        """Upstream streams are bounded like clients: past `max_clients` open streams the oldest one
        lingering without clients is closed now (a client hopping across meters cannot pile them up)."""
        if len(self.channels) < max(1, self.max_clients):
            return
        for channel in list(self.channels.values()):
            if not channel.subscribers:
                if channel.linger is not None:
                    channel.linger.cancel()
                self._close_idle(channel)
                return
        raise LiveOverloaded(f"{len(self.channels)} upstream streams are open on this replica; retry shortly.")

    def unsubscribe(self, sub: Subscriber) -> None:
        """Idempotent. The channel lingers `linger` seconds after its last client."""
        channel, sub.channel = sub.channel, None
        if channel is None:
            return
        self.subscribers.discard(sub)
        watchers = channel.subscribers.get(sub.target.meter_id)
        if watchers is not None:
            watchers.discard(sub)
            if not watchers:
                del channel.subscribers[sub.target.meter_id]
        self.clients -= 1
        self.metrics.clients.set(self.clients)
        if not channel.subscribers and channel.linger is None:
            channel.linger = asyncio.get_running_loop().call_later(self.linger, self._close_idle, channel)

    def overflow(self, sub: Subscriber) -> None:
        """Drop a client that fell `queue_size` events behind: its last event is `status: overflow`."""
        if sub.overflowed:
            return
        log.info("live client overflowed", extra={"fields": {"backend": sub.target.backend}})
        self.unsubscribe(sub)
        sub.overflowed = True
        sub.queue.clear()
        sub.queue.append((None, sse.status_event("overflow")))
        sub.wake()
        # A client that does not even take that event within the grace is cut off.
        asyncio.get_running_loop().call_later(self.overflow_grace, self._abort, sub)

    async def _tick(self) -> None:
        """Keep-alives for every client from one timer: a third of the interval apart, each client
        is pinged at the last tick before it would have been silent for the whole interval (one
        timer per client per event would cost more than the events themselves)."""
        tick = self.ping_interval / 3
        while self.subscribers:
            await asyncio.sleep(tick)
            due = time.monotonic() - self.ping_interval + tick * 1.01
            for sub in self.subscribers:
                if sub.written <= due:
                    sub.ping_due = True
                    sub.wake()

    @staticmethod
    def _abort(sub: Subscriber) -> None:
        if not sub.closed and sub.abort is not None:
            sub.abort()

    def _close_idle(self, channel: Channel) -> None:
        channel.linger = None
        if channel.subscribers or self.channels.get((channel.backend, channel.key)) is not channel:
            return
        del self.channels[(channel.backend, channel.key)]
        self.metrics.upstream_streams.labels(channel.backend).dec()
        if channel.task is not None:
            channel.task.cancel()

    # --- resume -----------------------------------------------------------------------------------

    async def replay(self, sub: Subscriber, since: datetime) -> list[bytes]:
        """The events of `sub`'s meter after `since` (at most 24 h back), ascending; afterwards `sub`
        skips queued instants up to the last one returned. Raises `FacadeError` from history."""
        channel = sub.channel
        assert channel is not None, "replay needs a subscribed client"
        now = from_epoch(self.clock())
        since = max(since, now - REPLAY_LIMIT)
        meter_id = sub.target.meter_id
        found: dict[datetime, Instant] = {}
        if not channel.covers(meter_id, since):
            rows = await self.history(meter_id, since, now + HISTORY_SLACK)
            for instant in instants(r for r in rows if r.time > since and r.meter_id == meter_id):
                found[instant.time] = instant
        for instant in channel.recent.get(meter_id, ()):
            if instant.time > since:
                found.setdefault(instant.time, instant)
        chunks: list[bytes] = []
        last = since
        for moment in sorted(found):
            chunk = sub.encode(found[moment])
            if chunk is not None:
                chunks.append(chunk)
            last = moment
        sub.last = last if sub.last is None else max(sub.last, last)
        return chunks

    def end_streams(self) -> None:
        """End every client's response cleanly (the server is stopping); clients resume elsewhere."""
        for sub in list(self.subscribers):
            sub.ending = True
            sub.wake()

    async def aclose(self) -> None:
        for cleanup in self.cleanups:
            cleanup()
        self.end_streams()
        tasks = []
        if self._ticker is not None:
            self._ticker.cancel()
            tasks.append(self._ticker)
        for channel in self.channels.values():
            if channel.linger is not None:
                channel.linger.cancel()
            if channel.task is not None:
                channel.task.cancel()
                tasks.append(channel.task)
            self.metrics.upstream_streams.labels(channel.backend).dec()
        self.channels.clear()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
