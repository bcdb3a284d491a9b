"""`Broadcast`: pub/sub between replicas on one subscriber connection per replica.

Channels are `<prefix>:<topic>`. Handlers run on the event loop and must not block. Delivery is
best-effort, as Redis pub/sub is: a replica whose subscription was lost (Redis restarted, network
cut) may have missed messages, so every `on_gap` listener is called when the subscription comes
back after a loss; callers drop what a missed message could have invalidated.

The subscriber reads with a 1 s poll (not the tier's short command timeout) and, on any failure,
closes its connection and subscribes again once the tier reports Redis up. A connection can go
half-open (a NAT or a failover drops it without a FIN): the subscriber PINGs after `keepalive`
seconds without traffic and reconnects when nothing came back within another `keepalive` (TCP
keepalive, set on every connection, is the second line). Corrections travel by a Redis Stream
(`app.shared.evictions`), not here: what rides pub/sub is only "a value is ready" wake-ups, whose
loss costs a waiter one poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from app.shared.tier import Health, RedisTier, SharedUnavailable

log = logging.getLogger("app.shared")

Handler = Callable[[bytes], None]


class Broadcast:
    def __init__(self, tier: RedisTier, *, retry_every: float = 0.5, keepalive: float = 5.0) -> None:
        self.tier = tier
        self._keepalive = keepalive
        self._handlers: dict[str, list[Handler]] = {}
        self._gap_listeners: list[Callable[[], None]] = []
        self._retry_every = retry_every
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._reset = asyncio.Event()
        self._lost = False
        tier.on_status(self._on_status)

    def channel(self, topic: str) -> str:
        return self.tier.key(topic)

    def on(self, topic: str, handler: Handler) -> None:
        """Call `handler(message)` for every message published on `topic` (register before `start`)."""
        self._handlers.setdefault(self.channel(topic), []).append(handler)

    def on_gap(self, listener: Callable[[], None]) -> None:
        """Call `listener()` when the subscription is back after a loss (messages may have been missed)."""
        self._gap_listeners.append(listener)

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    async def wait_subscribed(self) -> None:
        """Until subscribed (bound it with `asyncio.timeout`)."""
        await self._subscribed.wait()

    async def publish(self, topic: str, message: bytes) -> int:
        """Send `message` to every subscribed replica (this one included); how many received it.
        Raises `SharedUnavailable`."""
        receivers: int = await self.tier.call("publish", lambda r: r.publish(self.channel(topic), message))
        return receivers

    def start(self) -> None:
        if self._task is None and self._handlers:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _on_status(self, health: Health) -> None:
        if health == "down":
            self._reset.set()  # a half-open connection would otherwise wait for data forever

    async def _run(self) -> None:
        while True:
            if self.tier.status == "down":
                await asyncio.sleep(self._retry_every)
                continue
            pubsub = self.tier.client.pubsub(ignore_subscribe_messages=True)
            try:
                await self._listen(pubsub)
            except (RedisError, OSError, TimeoutError, SharedUnavailable) as exc:
                log.debug("shared broadcast subscription lost", extra={"fields": {"error": type(exc).__name__}})
            finally:
                if self._subscribed.is_set():
                    self._lost = True
                self._subscribed.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(self._retry_every)

    async def _listen(self, pubsub: PubSub) -> None:
        async with asyncio.timeout(max(1.0, self.tier.timeout * 10)):
            await pubsub.subscribe(*self._handlers)
        self._reset.clear()
        self._subscribed.set()
        if self._lost:
            self._lost = False
            for listener in list(self._gap_listeners):
                try:
                    listener()
                except Exception:
                    log.exception("shared broadcast gap listener failed")
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged = False
        while not self._reset.is_set():
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=min(1.0, self._keepalive))
            now = loop.time()
            if message is not None:
                heard, pinged = now, False
            elif now - heard >= self._keepalive:
                if pinged:
                    raise TimeoutError("no answer to a keepalive PING")  # half-open: reconnect
                await pubsub.ping()
                pinged, heard = True, now
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"]
            name = channel.decode() if isinstance(channel, bytes) else str(channel)
            data = message["data"]
            payload = data if isinstance(data, bytes) else str(data).encode()
            for handler in self._handlers.get(name, ()):
                try:
                    handler(payload)
                except Exception:
                    log.exception("shared broadcast handler failed")
