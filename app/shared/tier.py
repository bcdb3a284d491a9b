"""`RedisTier`: the one Redis connection pool of a replica, with health, short timeouts and metrics.

Every command goes through `call(operation, command)`, which either returns the command's result
within `timeout` seconds or raises `SharedUnavailable`, and counts the outcome in
`facade_shared_cache_operations_total{operation,outcome}`:

- outcomes a command reports (`ok`, or what the caller's `classify` says: `hit`, `miss`, `acquired`,
  `busy`, ...);
- `timeout`: no answer within `timeout` (three in a row with no success for `down_after` seconds, or
  one connection error, mean an outage);
- `error`: Redis answered with an error, or the connection failed;
- `skipped`: an outage is known, so the command was not even tried (a request never waits on a Redis
  that is known to be down).

Health is `up` or `down` (`off` is what the app reports when no URL is configured). The first failure
of an outage logs one warning; a background probe pings every `probe_every` seconds and, once Redis
answers, logs one info line and tells the listeners (`on_status`), so subscriptions and the cursor key
can catch up. Nothing here logs the URL: it may hold a password.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("app.shared")

T = TypeVar("T")
Health = Literal["up", "down", "off"]
OperationRecorder = Callable[[str, str], None]
"""`record(operation, outcome)`: e.g. `lambda op, out: counter.labels(op, out).inc()`."""
Sleep = Callable[[float], Awaitable[None]]


class SharedUnavailable(Exception):
    """Redis did not answer in time, failed, or is known to be down: the caller proceeds locally."""


def _ignore(_operation: str, _outcome: str) -> None:
    return None


class RedisTier:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "facade",
        timeout: float = 0.1,
        probe_every: float = 0.5,
        timeouts_before_down: int = 3,
        down_after: float = 0.5,
        max_connections: int = 64,
        record: OperationRecorder | None = None,
        sleep: Sleep = asyncio.sleep,
        replica_id: str | None = None,
    ) -> None:
        """`url` is `redis://` or `rediss://` (user and password allowed). `timeout` bounds every
        command, waiting for a pooled connection included."""
        if not url.startswith(("redis://", "rediss://")):
            raise ValueError("FACADE_REDIS_URL must start with redis:// or rediss://")
        self.prefix = prefix
        self.timeout = timeout
        self.replica_id = replica_id or os.urandom(8).hex()
        """Identifies this replica in locks, leases and broadcasts (random per process)."""
        self._probe_every = probe_every
        self._timeouts_before_down = timeouts_before_down
        self._down_after = down_after
        self._last_success = 0.0
        self._record = record or _ignore
        self._sleep = sleep
        # No retries inside redis-py: a retry with backoff would outlive the caller's deadline. The
        # pool blocks at most `timeout` for a free connection, so it bounds the connections too.
        self._pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            driver_info=None,  # no CLIENT SETINFO: two round trips less per new connection
        )
        self.client: Redis = Redis(connection_pool=self._pool)
        self._down = False
        self._consecutive_timeouts = 0
        self._probe: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[Health], None]] = []
        self._closed = False
        self._scripts: dict[str, AsyncScript] = {}

    def __repr__(self) -> str:  # never the URL: it may carry a password
        return f"RedisTier(prefix={self.prefix!r}, status={self.status!r})"

    # --- health ---------------------------------------------------------------------------------------
    @property
    def status(self) -> Health:
        return "down" if self._down else "up"

    def on_status(self, listener: Callable[[Health], None]) -> None:
        """Call `listener("up"|"down")` on every change of health."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Ping once, so health is known before the first request (down → the probe starts)."""
        try:
            await self.call("ping", lambda r: r.ping())
        except SharedUnavailable:
            self._mark_down("unreachable at startup")

    def key(self, *parts: str) -> str:
        """`<prefix>:<part>:<part>...`"""
        return ":".join((self.prefix, *parts))

    def script(self, source: str) -> AsyncScript:
        """A Lua script bound to this tier's client (EVALSHA, loaded on first use), made once per source."""
        found = self._scripts.get(source)
        if found is None:
            found = self._scripts[source] = self.client.register_script(source)
        return found

    # --- commands -------------------------------------------------------------------------------------
    async def call(
        self,
        operation: str,
        command: Callable[[Redis], Awaitable[T]],
        *,
        classify: Callable[[T], str] | None = None,
    ) -> T:
        """Run `command(client)` within the tier's timeout; raises `SharedUnavailable` otherwise.

        `operation` is a code-defined label (never caller input); `classify(result)` names the outcome
        of a command that answered (default `ok`)."""
        if self._down:
            self._record(operation, "skipped")
            raise SharedUnavailable(operation)
        try:
            async with asyncio.timeout(self.timeout):
                result = await command(self.client)
        except (TimeoutError, RedisTimeoutError):
            self._record(operation, "timeout")
            self._consecutive_timeouts += 1
            # A burst of slow answers (a busy host) is not an outage; timeouts that go on are.
            since_success = asyncio.get_running_loop().time() - self._last_success
            if self._consecutive_timeouts >= self._timeouts_before_down and since_success >= self._down_after:
                self._mark_down("timeouts")
            raise SharedUnavailable(operation) from None
        except (RedisConnectionError, OSError) as exc:
            self._record(operation, "error")
            self._mark_down(type(exc).__name__)
            raise SharedUnavailable(operation) from None
        except RedisError:
            self._record(operation, "error")
            raise SharedUnavailable(operation) from None
        self._consecutive_timeouts = 0
        self._last_success = asyncio.get_running_loop().time()
        self._record(operation, classify(result) if classify is not None else "ok")
        return result

    def note(self, operation: str, outcome: str) -> None:
        """Count an outcome decided outside `call` (e.g. a wait that ended at its deadline)."""
        self._record(operation, outcome)

    # --- outage bookkeeping ---------------------------------------------------------------------------
    def _mark_down(self, reason: str) -> None:
        if self._down or self._closed:
            return
        self._down = True
        self._consecutive_timeouts = 0
        log.warning(
            "shared cache (Redis) unreachable: each replica uses its own cache, flights and logins until it is back",
            extra={"fields": {"reason": reason}},
        )
        self._notify("down")
        self._probe = asyncio.get_running_loop().create_task(self._probe_until_up())

    async def _probe_until_up(self) -> None:
        while True:
            await self._sleep(self._probe_every)
            try:
                async with asyncio.timeout(max(self.timeout, 0.2)):
                    await self.client.ping()
            except (TimeoutError, RedisError, OSError):
                continue
            # Idle pooled connections are from before the outage (Redis may have restarted): drop them,
            # or each would fail once and end the recovery in a new "outage".
            with contextlib.suppress(RedisError, OSError):
                await self._pool.disconnect(inuse_connections=False)
            self._down = False
            self._consecutive_timeouts = 0
            log.info("shared cache (Redis) reachable again")
            self._notify("up")
            return

    def _notify(self, health: Health) -> None:
        for listener in list(self._listeners):
            try:
                listener(health)
            except Exception:  # a listener's bug must not stop the others or the probe
                log.exception("shared cache status listener failed")

    async def aclose(self) -> None:
        self._closed = True
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        await self.client.aclose()
        await self._pool.disconnect()


def shared_status(tier: RedisTier | None) -> dict[str, Any]:
    """What `/backends` shows: `{"status": "up"|"down"|"off"}`, never the URL or a password."""
    return {"status": tier.status if tier is not None else "off"}
