"""`RedisTier`: the one Redis client of a replica, in any deployment, with health, short timeouts and metrics.

Modes (`FACADE_REDIS_MODE`):
- `standalone`: one server at `FACADE_REDIS_URL` (a blocking pool: a burst waits for a connection,
  at most `timeout`, instead of opening hundreds);
- `cluster`: redis-py's asyncio `RedisCluster`; `FACADE_REDIS_URL` names any node, the client finds
  the others and follows `MOVED`/`ASK`. Every multi-key operation of this package uses keys with one
  hash tag (`tier.slot_key`), so it stays in one slot;
- `sentinel`: `Sentinel(FACADE_REDIS_SENTINELS).master_for(FACADE_REDIS_SERVICE)`: the client asks
  Sentinel for the primary and follows a failover (a demoted primary's `READONLY` closes the
  connection; the next one goes to the new primary). `FACADE_REDIS_URL` then gives the scheme
  (`rediss://` for TLS), the user, the password and the database; its host is not used.

Every command goes through `call(operation, command)`, which either returns the command's result
within `timeout` seconds or raises `SharedUnavailable`, and counts the outcome in
`facade_shared_cache_operations_total{operation,outcome}`:

- outcomes a command reports (`ok`, or what the caller's `classify` says: `hit`, `miss`, `acquired`,
  `busy`, ...);
- `timeout`: no answer within `timeout` (three in a row with no success for `down_after` seconds, then
  a PING that does not answer either, or one connection error, mean an outage);
- `error`: Redis answered with an error (OOM, NOPERM, CLUSTERDOWN, ...), or the connection failed;
- `refused`: Redis refused the credentials (wrong password, unknown ACL user);
- `skipped`: an outage is known, so the command was not even tried (a request never waits on a Redis
  that is known to be down).

Health (`status`): `down` during an outage, or when Redis refuses this replica (credentials, a
version before 7); `degraded` when more than `degraded_ratio` of the commands of the last
`window` seconds failed; else `up` (`off` is what the app reports when no URL is configured).
`last_error` names the class of the latest failure (kept while down, and for `window` seconds after).
The first failure of an outage logs one warning; a refusal logs one error naming its cause and is
not retried as an outage (the probe asks again every `refused_probe_every` seconds, silently). A
background probe pings every `probe_every` seconds and, once Redis answers, logs one info line and
tells the listeners (`on_status`), so subscriptions and the cursor key can catch up. A connection
that broke while Redis was up (closed while idle, cut by a timeout) is not an outage: its command is
sent again on a new connection, and only when that reaches another server (another `run_id`: a restart,
a failover) are the listeners told `up` again, to catch up. Nothing here logs the URL: it may hold a
password.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar, cast

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster, Sentinel
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    MaxConnectionsError,
    RedisClusterException,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.infra.config import parse_sentinels

log = logging.getLogger("app.shared")

T = TypeVar("T")
Health = Literal["up", "degraded", "down", "off"]
Mode = Literal["standalone", "cluster", "sentinel"]
MODES: tuple[Mode, ...] = ("standalone", "cluster", "sentinel")
MIN_VERSION = (7, 0)
"""Redis 7: what the tests run and `XINFO STREAM` fields (`entries-added`, `recorded-first-entry-id`) need."""
KEEPALIVE: dict[int, int] = {
    option: value
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
    if (option := getattr(socket, name, None)) is not None
}
"""TCP keepalive on every connection: a dead peer is noticed within about 25 s, not the OS's 2 h."""
ONCE_ON_A_NEW_CONNECTION = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
"""A pooled connection may have been closed while it sat idle (a server's or a proxy's idle timeout, a
load balancer's reset, a restart of Redis): its next command meets a closed socket although Redis is
there. One retry on a new connection answers it; a Redis that is gone refuses the new connection at
once, so an outage is still noticed by its first command. A command retried this way may have reached
Redis before its connection broke: every command of this package may run twice (writes are idempotent
or only invalidate twice; the flight's lookup knows its own lock; a token lock taken twice looks busy
to its taker, which logs in itself once its wait is over)."""
OperationRecorder = Callable[[str, str], None]
"""`record(operation, outcome)`: e.g. `lambda op, out: counter.labels(op, out).inc()`."""
Sleep = Callable[[float], Awaitable[None]]


class SharedUnavailable(Exception):
    """Redis did not answer in time, failed, or is known to be down: the caller proceeds locally.

    `timed_out`: the command got no answer in time while Redis was not known to be down (a busy
    moment, which asking again may outlast), as opposed to an error answer or a known outage."""

    def __init__(self, operation: str, *, timed_out: bool = False) -> None:
        super().__init__(operation)
        self.timed_out = timed_out


class UnsupportedVersion(Exception):
    """The Redis server is older than `MIN_VERSION`."""


def _ignore(_operation: str, _outcome: str) -> None:
    return None


def version_of(info: dict[str, Any]) -> tuple[int, int]:
    """The (major, minor) of `INFO server` (a cluster answers per node: the oldest counts)."""
    if "redis_version" in info:
        major, minor, *_ = [*str(info["redis_version"]).split("."), "0"]
        return int(major), int(minor)
    versions = [version_of(v) for v in info.values() if isinstance(v, dict)]
    if not versions:
        raise ValueError("INFO server holds no redis_version")
    return min(versions)


async def run_id_of(connection: Any) -> str | None:
    """The `run_id` of the server behind a connection just opened (`INFO server` on it), or None
    when this user may not send INFO."""
    try:
        await connection.send_command("INFO", "server")
        reply = await connection.read_response()
    except ResponseError:
        return None
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    for line in text.splitlines():
        if line.startswith("run_id:"):
            return line.removeprefix("run_id:").strip()
    return None


async def server_version(client: Redis) -> tuple[int, int] | None:
    """The server's (major, minor) from `HELLO` (then `INFO server`); None when neither may be sent
    (a managed service's restricted user): the commands themselves will tell."""
    try:
        reply: Any = await client.execute_command("HELLO")  # type: ignore[no-untyped-call]
        fields = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2], strict=False))
        text = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in fields.items()}["version"]
        return version_of({"redis_version": text.decode() if isinstance(text, bytes) else str(text)})
    except (ResponseError, RedisClusterException, KeyError, ValueError, TypeError, IndexError):
        pass  # a cluster client cannot route a command without a key: INFO it is
    try:
        return version_of(await client.info("server"))
    except (ResponseError, ValueError, TypeError):
        return None


def connect(
    url: str,
    *,
    mode: Mode = "standalone",
    sentinels: str = "",
    service: str = "mymaster",
    timeout: float,
    connect_timeout: float,
    max_connections: int,
    on_connect: Callable[[Any], Awaitable[None]] | None = None,
) -> tuple[Redis, Sentinel | None]:
    """A client for `mode` (typed as `Redis`: a `RedisCluster` speaks the same commands), and the
    `Sentinel` to close with it.

    Standalone and Sentinel: a command whose pooled connection turns out to be broken is sent once more
    on a new connection (`ONCE_ON_A_NEW_CONNECTION`), and `on_connect(connection)` runs instead of
    redis-py's own handshake on every connection opened (it must run `connection.on_connect()`).
    Nothing else is retried inside redis-py, where a retry would outlive the caller's deadline; the
    cluster client keeps its own retries, bounded by the tier's timeout, to follow `MOVED`."""
    common: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": connect_timeout,
        "socket_keepalive": True,
        "socket_keepalive_options": KEEPALIVE,
        "driver_info": None,  # no CLIENT SETINFO: two round trips less per new connection
    }
    hooked: dict[str, Any] = {"redis_connect_func": on_connect} if on_connect is not None else {}
    if mode == "standalone":
        pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout, retry=ONCE_ON_A_NEW_CONNECTION, **common, **hooked
        )
        return Redis(connection_pool=pool), None
    if mode == "cluster":
        return cast(Redis, RedisCluster.from_url(url, max_connections=max_connections, **common)), None
    if mode == "sentinel":
        kwargs = dict(parse_url(url))
        for unused in ("host", "port"):
            kwargs.pop(unused, None)
        tls = kwargs.pop("connection_class", None) is SSLConnection
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            parse_sentinels(sentinels),
            sentinel_kwargs={k: v for k, v in common.items() if k != "driver_info"} | {"ssl": tls},
            ssl=tls,
            **kwargs,
            **common,
        )
        client = sentinel.master_for(
            service, redis_class=Redis, max_connections=max_connections, retry=ONCE_ON_A_NEW_CONNECTION, **hooked
        )
        return client, sentinel
    raise ValueError(f"unknown FACADE_REDIS_MODE {mode!r}")


class RedisTier:
    def __init__(
        self,
        url: str,
        *,
        mode: Mode = "standalone",
        sentinels: str = "",
        service: str = "mymaster",
        prefix: str = "facade",
        timeout: float = 0.1,
        connect_timeout: float | None = None,
        max_connections: int = 64,
        probe_every: float = 0.5,
        refused_probe_every: float = 30.0,
        timeouts_before_down: int = 3,
        down_after: float = 0.5,
        window: float = 10.0,
        degraded_ratio: float = 0.2,
        degraded_min_calls: int = 5,
        record: OperationRecorder | None = None,
        sleep: Sleep = asyncio.sleep,
        replica_id: str | None = None,
    ) -> None:
        """`url` is `redis://` or `rediss://` (user and password allowed). `timeout` bounds every
        command, waiting for a pooled connection included; `connect_timeout` (default `timeout`)
        bounds opening a connection (a TLS handshake to a remote Redis needs more than a command)."""
        if not url.startswith(("redis://", "rediss://")):
            raise ValueError("FACADE_REDIS_URL must start with redis:// or rediss://")
        if mode not in MODES:
            raise ValueError(f"FACADE_REDIS_MODE must be one of {', '.join(MODES)}")
        self.mode: Mode = mode
        self.prefix = prefix
        self.timeout = timeout
        self.replica_id = replica_id or os.urandom(8).hex()
        """Identifies this replica in locks, leases and broadcasts (random per process)."""
        self._probe_every = probe_every
        self._refused_probe_every = refused_probe_every
        self._timeouts_before_down = timeouts_before_down
        self._down_after = down_after
        self._window = window
        self._degraded_ratio = degraded_ratio
        self._degraded_min_calls = degraded_min_calls
        self._calls: collections.deque[tuple[float, bool]] = collections.deque()
        self._failures = 0
        self._last_error: str | None = None
        self._last_error_at = float("-inf")
        self._logged_errors: set[str] = set()
        self._last_success = 0.0
        self._record = record or _ignore
        self._sleep = sleep
        self.client, self._sentinel = connect(
            url,
            mode=mode,
            sentinels=sentinels,
            service=service,
            timeout=timeout,
            connect_timeout=connect_timeout if connect_timeout is not None else timeout,
            max_connections=max_connections,
            on_connect=self._on_connect,
        )
        self._epoch = 0
        self._server: str | None = None
        """The `run_id` of the server that answers, when known."""
        """Bumped by each recovery: a connection opened again in the epoch it was first opened in broke
        while Redis was thought up (see `_on_connect`)."""
        self._down = False
        self._refused = False
        self._consecutive_timeouts = 0
        self._probe: asyncio.Task[None] | None = None
        self._verifying: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[Health], None]] = []
        self._closed = False
        self._scripts: dict[str, AsyncScript] = {}

    def __repr__(self) -> str:  # never the URL: it may carry a password
        return f"RedisTier(mode={self.mode!r}, prefix={self.prefix!r}, status={self.status!r})"

    # --- health ---------------------------------------------------------------------------------------
    @property
    def status(self) -> Health:
        if self._down:
            return "down"
        if self._error_ratio() > self._degraded_ratio:
            return "degraded"
        return "up"

    @property
    def available(self) -> bool:
        """Whether commands are tried at all (False while an outage or a refusal is known)."""
        return not self._down

    @property
    def last_error(self) -> str | None:
        """The class name of the latest failure: while down, and for `window` seconds after it."""
        if self._down or self._now() - self._last_error_at <= self._window:
            return self._last_error
        return None

    def describe(self) -> dict[str, Any]:
        """What `/backends` shows as `shared_cache` (never the URL or a password)."""
        return {"status": self.status, "mode": self.mode, "last_error": self.last_error}

    def _now(self) -> float:
        return time.monotonic()

    def _error_ratio(self) -> float:
        self._trim(self._now())
        total = len(self._calls)
        if total < self._degraded_min_calls:
            return 0.0
        return self._failures / total

    def _trim(self, now: float) -> None:
        horizon = now - self._window
        while self._calls and self._calls[0][0] < horizon:
            _, failed = self._calls.popleft()
            self._failures -= failed

    def _count(self, failed: bool, error: str | None = None) -> None:
        now = self._now()
        self._calls.append((now, failed))
        self._failures += failed
        if len(self._calls) > 10_000:  # bounded whatever the rate: the oldest go first
            _, dropped = self._calls.popleft()
            self._failures -= dropped
        if error is not None:
            self._last_error = error
            self._last_error_at = now

    def on_status(self, listener: Callable[[Health], None]) -> None:
        """Call `listener("up"|"down")` on every change of availability."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Check the server once (reachable, credentials, version >= 7 from `HELLO`, which an ACL user
        without `@dangerous` may still send), so health is known before the first request (down →
        the probe starts; refused or too old → one error line and a slow probe)."""
        try:
            found = await self.call("version", server_version)
        except SharedUnavailable:
            return  # down (the probe runs), refused, or an error answer health reports
        if found is not None and found < MIN_VERSION:
            self._refuse(UnsupportedVersion(f"Redis {found[0]}.{found[1]}"))
            return
        await self._learn_server()

    async def _check(self) -> None:
        async with asyncio.timeout(max(self.timeout, 1.0)):
            found = await server_version(self.client)
        if found is not None and found < MIN_VERSION:
            raise UnsupportedVersion(f"Redis {found[0]}.{found[1]} is older than 7.0")

    def key(self, *parts: str) -> str:
        """`<prefix>:<part>:<part>...`"""
        return ":".join((self.prefix, *parts))

    def slot_key(self, kind: str, group: str, *rest: str) -> str:
        """`<prefix>:<kind>:{<group>}:<rest>...`: keys with the same `group` share a Redis Cluster
        hash slot, so one script or transaction may touch them all."""
        return ":".join((self.prefix, kind, "{" + group + "}", *rest))

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
            self._count(True, "TimeoutError")
            self._consecutive_timeouts += 1
            # A burst of slow answers (a busy host) is not an outage; timeouts that go on are.
            since_success = time.monotonic() - self._last_success
            if self._consecutive_timeouts >= self._timeouts_before_down and since_success >= self._down_after:
                self._verify_outage()
            raise SharedUnavailable(operation, timed_out=True) from None
        except MaxConnectionsError:  # this replica's pool is full: a busy replica, not a Redis outage
            self._record(operation, "error")
            self._count(True, "MaxConnectionsError")
            raise SharedUnavailable(operation) from None
        except (AuthenticationError, AuthorizationError) as exc:
            self._record(operation, "refused")
            self._refuse(exc)
            raise SharedUnavailable(operation) from None
        except (RedisConnectionError, OSError) as exc:
            self._record(operation, "error")
            self._count(True, type(exc).__name__)
            self._mark_down(type(exc).__name__)
            raise SharedUnavailable(operation) from None
        except (RedisError, RedisClusterException) as exc:
            # Redis answered, with an error (OOM, NOPERM, READONLY, CLUSTERDOWN, CROSSSLOT...): not an
            # outage, but health turns `degraded` when such answers are frequent.
            self._record(operation, "error")
            self._error(exc)
            raise SharedUnavailable(operation) from None
        self._consecutive_timeouts = 0
        self._last_success = time.monotonic()
        self._count(False)
        self._record(operation, classify(result) if classify is not None else "ok")
        return result

    def note(self, operation: str, outcome: str) -> None:
        """Count an outcome decided outside `call` (e.g. a wait that ended at its deadline)."""
        self._record(operation, outcome)

    # --- outage bookkeeping ---------------------------------------------------------------------------
    def _error(self, exc: BaseException) -> None:
        name = type(exc).__name__
        self._count(True, name)
        if name not in self._logged_errors:  # once per kind of error: the metric counts them all
            self._logged_errors.add(name)
            log.warning(
                "shared cache (Redis) answered with an error: those operations fall back to this replica alone",
                extra={"fields": {"error": name}},
            )

    def _refuse(self, exc: BaseException) -> None:
        """Credentials refused or a server too old: not an outage to retry every half second."""
        name = type(exc).__name__
        self._count(True, name)
        if self._down or self._closed:
            self._refused = True
            return
        self._refused = True
        cause = (
            "the Redis server is older than 7.0"
            if isinstance(exc, UnsupportedVersion)
            else "Redis refused this replica's credentials: check the user and password in FACADE_REDIS_URL "
            "and the ACL user's permissions"
        )
        log.error(
            f"shared cache disabled: {cause}; each replica uses its own cache, flights and logins",
            extra={"fields": {"error": name, "retry_every": self._refused_probe_every}},
        )
        self._set_down()

    async def _on_connect(self, connection: Any) -> None:
        """Every connection's handshake (redis-py's own), then: a connection that opens again in the
        epoch it first opened in broke while Redis was thought up. Closed while idle, or cut by a
        command's timeout, it finds the same server; but a Redis that restarted (or a Sentinel
        failover's new primary) may have lost what it held, and the listeners are told `up` again to
        catch up as after an outage (the eviction stream checks for a gap, the cursor key is written
        back). The server is told apart by its `run_id` (`INFO server`); a user that may not send
        INFO is told every time."""
        await connection.on_connect()
        opened_in = getattr(connection, "_facade_epoch", None)
        connection._facade_epoch = self._epoch
        if opened_in != self._epoch or self._down or self._closed:
            return
        server = await run_id_of(connection)
        if server is not None and server == self._server:
            return
        self._server = server
        log.info("shared cache (Redis) is another server than before: checking for anything lost meanwhile")
        self._notify("up")

    async def _learn_server(self) -> None:
        """Remember which server answers (its `run_id`), once Redis is known up (a cluster has many:
        its client follows them itself, and `_on_connect` is not used there)."""
        if self.mode == "cluster":
            return
        with contextlib.suppress(RedisError, RedisClusterException, OSError, TimeoutError):
            async with asyncio.timeout(max(self.timeout, 1.0)):
                info = await self.client.info("server")
            found = info.get("run_id") if isinstance(info, dict) else None
            self._server = str(found) if found is not None else None

    def _verify_outage(self) -> None:
        """Timeouts that went on: one PING with a deadline of its own decides whether Redis is down.

        Commands in flight together all time out together when this replica's own loop was held up
        (a long GC pause, a busy host that did not schedule the process) though Redis answered at
        once: those are not evidence of an outage, and a replica that declared one would send every
        caller to the vendor and log a false warning. A Redis that is really hung does not answer the
        PING either (one more `timeout`, so still down well within a second)."""
        if self._down or self._closed or (self._verifying is not None and not self._verifying.done()):
            return
        self._verifying = asyncio.get_running_loop().create_task(self._verify())

    async def _verify(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self.client.ping()
        except (AuthenticationError, AuthorizationError) as exc:
            self._refuse(exc)
        except (TimeoutError, RedisError, RedisClusterException, OSError):
            self._mark_down("timeouts")
        else:
            self._consecutive_timeouts = 0  # Redis answers: the timeouts were this replica's own delay
            self._last_success = time.monotonic()

    def _mark_down(self, reason: str) -> None:
        if self._down or self._closed:
            return
        log.warning(
            "shared cache (Redis) unreachable: each replica uses its own cache, flights and logins until it is back",
            extra={"fields": {"reason": reason}},
        )
        self._set_down()

    def _set_down(self) -> None:
        self._down = True
        self._consecutive_timeouts = 0
        self._notify("down")
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._probe_until_up())

    async def _probe_until_up(self) -> None:
        while True:
            await self._sleep(self._refused_probe_every if self._refused else self._probe_every)
            try:
                async with asyncio.timeout(max(self.timeout, 1.0 if self._refused else 0.2)):
                    await self._check()
            except (AuthenticationError, AuthorizationError, UnsupportedVersion) as exc:
                self._refused = True
                self._count(True, type(exc).__name__)
                continue
            except (TimeoutError, RedisError, RedisClusterException, OSError):
                continue
            # Idle pooled connections are from before the outage (Redis may have restarted): drop them,
            # or each would fail once and end the recovery in a new "outage".
            if not isinstance(self.client, RedisCluster):  # a cluster client keeps a pool per node, renewed itself
                with contextlib.suppress(RedisError, OSError):
                    await self.client.connection_pool.disconnect(inuse_connections=False)
            self._epoch += 1  # connections from before the outage open again without a second notice
            self._down = False
            self._refused = False
            self._consecutive_timeouts = 0
            self._calls.clear()
            self._failures = 0
            self._last_success = time.monotonic()
            log.info("shared cache (Redis) reachable again")
            await self._learn_server()
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
        for task in (self._probe, self._verifying):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.client.aclose()
        if not isinstance(self.client, RedisCluster):
            await self.client.connection_pool.disconnect()
        if self._sentinel is not None:
            await self._sentinel.aclose()


def shared_status(tier: RedisTier | None) -> dict[str, Any]:
    """What `/backends` shows: `{"status", "mode", "last_error"}`, never the URL or a password."""
    if tier is None:
        return {"status": "off", "mode": None, "last_error": None}
    return tier.describe()
