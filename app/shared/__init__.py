"""What replicas share through Redis when `FACADE_REDIS_URL` is set: an accelerator, never a dependency.

- `tier.RedisTier`: the connection, its health (`up`/`down`; `off` when no URL is configured), short
  timeouts on every command, one warning log line per outage, a background probe that notices the
  way back, and `facade_shared_cache_operations_total{operation,outcome}`.
- `entries.SharedEntries`: cache entries (value + created/fresh_until/stale_until/tags) under
  schema-versioned keys, with a tag index so a correction deletes the shared copies once.
- `flight.FleetFlight`: one vendor call per key for the whole fleet (`SET NX PX` lock, renewed while
  its holder lives; waiters woken by pub/sub, polling as a fallback, bounded by their deadline).
- `tokens.SharedTokenStore`: one vendor login per token lifetime for the fleet; a 401 drops the shared
  token once.
- `lease.LeaderLease`, `lease.SharedWatermark`: the corrections poller runs on one replica at a time,
  and its watermark survives a change of leader.
- `bus.Broadcast`: pub/sub fan-out (evictions, "value ready" wake-ups) on one connection per replica.
- `evictions.EvictionBroadcast`: a correction deletes the shared entries once and reaches every replica.
- `locks.FleetLock`: `SET NX PX` with a token, renewed by its live holder, expiring with a dead one.
- `cursor_key.shared_cursor_secret`: one cursor signing key for the fleet when none is configured.
- `fleet.Fleet`: all of the above wired for the app (the cache's `SharedTier`, the token store, the
  poller's lease and watermark, the cursor key); `factory.create_app` builds it from the settings.

Every operation degrades: when Redis is down, slow or refuses, the caller is told "unavailable" within
the tier's timeout (or at once while an outage is known) and carries on with its own cache, flight,
login and poller.
"""

from app.shared.tier import Health, RedisTier, SharedUnavailable

__all__ = ["Health", "RedisTier", "SharedUnavailable"]
