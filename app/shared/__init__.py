"""What replicas share through Redis when `FACADE_REDIS_URL` is set: an accelerator, never a dependency.

- `tier.RedisTier`: the client for `FACADE_REDIS_MODE` (`standalone`, `cluster` with redis-py's
  `RedisCluster`, `sentinel` following failovers), its health (`up`/`degraded`/`down` with the last
  error class; `off` when no URL is configured; a refused password or a server older than 7.0 said
  so, not retried as an outage), short timeouts on every command, one warning log line per outage, a
  background probe that notices the way back, and `facade_shared_cache_operations_total`.
- `entries.SharedEntries`: cache entries (value + created/fresh_until/stale_until/tags and each tag's
  generation) under schema-versioned keys; a correction bumps generation counters that never expire,
  so every shared copy it touched is invalid whatever Redis evicted. Not-found answers are entries too.
- `flight.FleetFlight`: one vendor call per key for the whole fleet (`SET NX PX` lock in the entry's
  hash slot, renewed while its holder lives; waiters woken by pub/sub, polling as a fallback, bounded
  by their deadline).
- `tokens.SharedTokenStore`: one vendor login per token lifetime for the fleet, the token sealed at
  rest with a key derived from the vendor credential; a 401 drops the shared token once.
- `indexes.SharedIndexes`: the adapters' indexes (installations, organizations, device directory and
  records) loaded once for the fleet through the flight, kept for their refresh age, checked when
  read back (`app.backends.base.SharedIndex` is what an adapter sees).
- `lease.LeaderLease`, `lease.SharedWatermark`: the corrections poller runs on one replica at a time,
  and its watermark (in the lease's hash slot) survives a change of leader.
- `bus.Broadcast`: pub/sub "value ready" wake-ups on one connection per replica, with keepalive PINGs.
- `evictions.EvictionBroadcast`: a correction bumps the generations and is appended to a Redis Stream
  every replica reads from its last id (catching up after a gap, or dropping what it may have missed).
- `locks.FleetLock`: redis-py's `Lock` run through the tier, renewed by its live holder, expiring with a dead one.
- `cursor_key.shared_cursor_secret`: one cursor signing key for the fleet when none is configured,
  written back when Redis lost it, with a few recent keys kept valid.
- `fleet.Fleet`: all of the above wired for the app (the cache's `SharedTier` with fleet
  stale-if-error, the token store, the poller's lease and watermark, the cursor key);
  `factory.create_app` builds it from the settings.

Every operation degrades: when Redis is down, slow or refuses, the caller is told "unavailable" within
the tier's timeout (or at once while an outage is known) and carries on with its own cache, flight,
login and poller.
"""

from app.shared.tier import Health, RedisTier, SharedUnavailable

__all__ = ["Health", "RedisTier", "SharedUnavailable"]
