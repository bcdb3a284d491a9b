"""Every setting of the service, read from the environment (the README's configuration table; cache knobs too).

`Settings()` reads the environment; tests build `Settings(...)` with explicit values. `validate()`
refuses configurations that cannot work and says what to set.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.infra.timeutil import zone


def split_commas(value: object) -> object:
    """`"a, b,"` → `["a", "b"]` for list settings given as one environment string."""
    if isinstance(value, str):
        return [k.strip() for k in value.split(",") if k.strip()]
    return value


_KEY_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


def parse_sentinels(text: str) -> list[tuple[str, int]]:
    """`host:port,host:port` → `[(host, port), ...]`; raises `ValueError` for anything else."""
    found: list[tuple[str, int]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"not host:port: {part!r}")
        found.append((host.strip("[]"), int(port)))
    if not found:
        raise ValueError("no sentinel given")
    return found


class ApiKey(SecretStr):
    """A client API key with its label: the label is logged with each request, the key never is."""

    def __init__(self, secret_value: str, label: str) -> None:
        super().__init__(secret_value)
        self.label = label


def parse_api_keys(value: str) -> list[ApiKey]:
    """`FACADE_API_KEYS`: comma-separated entries, each `label:key` or a plain `key`.

    The label is the part before the first `:` when it looks like one (`[A-Za-z0-9][A-Za-z0-9._-]*`, at
    most 64); a plain key is labelled by its 1-based position, `key1`, `key2`, ... (so a key that
    itself contains `:` must be given a label)."""
    keys = []
    entries = [e.strip() for e in value.split(",") if e.strip()]
    for position, entry in enumerate(entries, start=1):
        label, sep, key = entry.partition(":")
        if sep and _KEY_LABEL.match(label) and key.strip():
            keys.append(ApiKey(key.strip(), label))
        else:
            keys.append(ApiKey(entry, f"key{position}"))
    return keys


SANDBOX_REQUEST_DEADLINE = 30.0
RESPONSES_BYTE_SHARE = 0.3
"""The response cache's share of the byte budget; the data caches' shares are in `app.core.caches`."""


def _as_api_key(value: object, position: int) -> object:
    if isinstance(value, ApiKey):
        return value
    if isinstance(value, SecretStr):
        return ApiKey(value.get_secret_value(), f"key{position}")
    return ApiKey(value, f"key{position}") if isinstance(value, str) else value


class Settings(BaseSettings):
    # Only the prefixed names below are read: field names like `sandbox` must never switch anything on.
    # Vendor variables (`IOMETER_*`, `WALTERO_*`, ...) are each vendor's own settings class's (see
    # `vendor_settings`); given explicitly here (tests, the sandbox) they are kept as extras and win
    # over the environment.
    model_config = SettingsConfigDict(env_file=None, extra="allow", populate_by_name=False)

    _vendor_cache: dict[str, Any] = PrivateAttr(default_factory=dict)
    """Each vendor's settings once read (`app.backends.registry.vendor_settings`)."""

    # --- modes and client auth -------------------------------------------------------------
    sandbox: bool = Field(False, alias="FACADE_SANDBOX")
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list, alias="FACADE_API_KEYS")
    allow_anonymous: bool = Field(False, alias="FACADE_ALLOW_ANONYMOUS")
    timezone: str = Field("UTC", alias="FACADE_TIMEZONE")
    max_gap: int = Field(21600, alias="FACADE_MAX_GAP", ge=1)
    cursor_secret: SecretStr | None = Field(None, alias="FACADE_CURSOR_SECRET")
    log_level: str = Field("INFO", alias="FACADE_LOG_LEVEL")

    # --- several replicas (README, "Running several replicas") ---------------------------------
    redis_url: SecretStr | None = Field(None, alias="FACADE_REDIS_URL", description="redis:// or rediss://")
    redis_prefix: str = Field("facade", alias="FACADE_REDIS_PREFIX", min_length=1, max_length=64)
    redis_timeout: float = Field(0.25, alias="FACADE_REDIS_TIMEOUT", gt=0, le=5, description="seconds per command")

    # --- caching, coalescing, resilience ---------------------------------------------------------
    # Entries per cache. Sized so every cache full stays near 150 MB with realistic entries (README,
    # "Performance", gives the measured cost per entry to size them differently).
    cache_maxsize: int = Field(2048, alias="FACADE_CACHE_MAXSIZE", ge=1, description="meters, meter, device status")
    cache_maxsize_readings: int = Field(512, alias="FACADE_CACHE_MAXSIZE_READINGS", ge=1)
    cache_maxsize_daily: int = Field(128, alias="FACADE_CACHE_MAXSIZE_DAILY", ge=1)
    cache_maxsize_changes: int = Field(128, alias="FACADE_CACHE_MAXSIZE_CHANGES", ge=1)
    cache_maxsize_responses: int = Field(2048, alias="FACADE_CACHE_MAXSIZE_RESPONSES", ge=1)
    # Bytes, for every cache together (shares: app/core/caches.py); a client controls what it asks
    # for, so entry counts alone do not bound memory (README, "Performance").
    cache_max_bytes: int = Field(48 * 1024 * 1024, alias="FACADE_CACHE_MAX_BYTES", ge=1024 * 1024)
    cache_max_entry_bytes: int = Field(
        1024 * 1024, alias="FACADE_CACHE_MAX_ENTRY_BYTES", ge=1024, description="larger responses are not stored"
    )
    negative_ttl: float = Field(30, alias="FACADE_TTL_NOT_FOUND", ge=0)
    max_loads: int = Field(32, alias="FACADE_MAX_LOADS", ge=1, description="vendor loads in flight per backend")
    ttl_meters: float = Field(300, alias="FACADE_TTL_METERS", ge=0)
    ttl_device_status: float = Field(30, alias="FACADE_TTL_DEVICE_STATUS", ge=0)
    ttl_past: float = Field(3600, alias="FACADE_TTL_PAST", ge=0)
    ttl_recent: float = Field(60, alias="FACADE_TTL_RECENT", ge=0)
    ttl_changes: float = Field(15, alias="FACADE_TTL_CHANGES", ge=0)
    stale_if_error: float = Field(600, alias="FACADE_STALE_IF_ERROR", ge=0)
    changes_poll: float = Field(300, alias="FACADE_CHANGES_POLL", ge=0)
    request_deadline: float = Field(10, alias="FACADE_REQUEST_DEADLINE", gt=0)
    connect_timeout: float = Field(3, alias="FACADE_CONNECT_TIMEOUT", gt=0)
    read_timeout: float = Field(8, alias="FACADE_READ_TIMEOUT", gt=0)
    upstream_concurrency: int = Field(8, alias="FACADE_UPSTREAM_CONCURRENCY", ge=1)
    upstream_transport: Literal["aiohttp", "httpx"] = Field("aiohttp", alias="FACADE_UPSTREAM_TRANSPORT")
    retry_attempts: int = Field(4, alias="FACADE_RETRY_ATTEMPTS", ge=1)
    circuit_failures: int = Field(5, alias="FACADE_CIRCUIT_FAILURES", ge=1)
    circuit_reset: float = Field(30, alias="FACADE_CIRCUIT_RESET", gt=0)

    # --- live readings (`/readings/live`) ----------------------------------------------------------
    live_max_clients: int = Field(1000, alias="FACADE_LIVE_MAX_CLIENTS", ge=0)
    live_ping: float = Field(15, alias="FACADE_LIVE_PING", gt=0, le=15, description="s between keep-alives")
    live_linger: float = Field(30, alias="FACADE_LIVE_LINGER", ge=0, le=30, description="s after the last client")
    live_queue: int = Field(256, alias="FACADE_LIVE_QUEUE", ge=1, le=100_000, description="events per client")
    live_backoff: float = Field(1, alias="FACADE_LIVE_BACKOFF", gt=0, description="first reconnect delay, s")
    live_overflow_grace: float = Field(5, alias="FACADE_LIVE_OVERFLOW_GRACE", gt=0)

    # --- issue 21: plausibility bounds of consumption figures (docs/api-guide.md, "Quality") -------
    # The most one metering point can use per hour; a figure above it (times the interval's hours) is
    # `suspect` and never complete. Generous defaults: a large building's connection, a district-heating
    # substation, a big gas or water meter. Meters of unknown medium are not bounded.
    plausible_kw_electricity: float = Field(1000, alias="FACADE_PLAUSIBLE_KW_ELECTRICITY", gt=0, description="kW")
    plausible_kw_heat: float = Field(2000, alias="FACADE_PLAUSIBLE_KW_HEAT", gt=0, description="kW")
    plausible_m3h_gas: float = Field(250, alias="FACADE_PLAUSIBLE_M3H_GAS", gt=0, description="m3 per hour")
    plausible_m3h_water: float = Field(100, alias="FACADE_PLAUSIBLE_M3H_WATER", gt=0, description="m3 per hour")

    # --- issue 25: performance (README "Performance") ------------------------------------------------
    upstream_proxy: SecretStr | None = Field(
        None, alias="FACADE_UPSTREAM_PROXY", description="http(s):// proxy for vendor calls (environment ignored)"
    )
    settle_age: float = Field(
        3 * 86400, alias="FACADE_SETTLE_AGE", ge=0, description="s after which a readings chunk is settled"
    )
    ttl_settled: float = Field(
        7 * 86400, alias="FACADE_TTL_SETTLED", ge=0, description="settled chunks of a vendor without a correction feed"
    )

    # --- issue 22 (items 2, 3): memory and work per `/consumption` request (README, "Operating it") ------
    consumption_max_page: int = Field(
        3000, alias="FACADE_CONSUMPTION_MAX_PAGE", ge=1, le=100_000, description="largest `limit` of /consumption"
    )
    consumption_window_budget: int = Field(
        100_000,
        alias="FACADE_CONSUMPTION_WINDOW_BUDGET",
        ge=1,
        description="meters x intervals one /consumption window may span (a month counts its days)",
    )

    # --- issue 22: limits on what a client sends (README, "Operating it") --------------------------
    max_header_bytes: int = Field(
        64 * 1024, alias="FACADE_MAX_HEADER_BYTES", ge=8 * 1024, le=1024 * 1024, description="request head, 431 past it"
    )

    # --- issue 23: the shared tier on any Redis deployment (README, "Running several replicas") ----
    redis_mode: Literal["standalone", "cluster", "sentinel"] = Field(
        "standalone", alias="FACADE_REDIS_MODE", description="standalone, cluster (any node in the URL) or sentinel"
    )
    redis_sentinels: str = Field("", alias="FACADE_REDIS_SENTINELS", description="host:port,host:port (sentinel mode)")
    redis_service: str = Field("mymaster", alias="FACADE_REDIS_SERVICE", min_length=1, description="Sentinel service")
    redis_connect_timeout: float = Field(
        1.0, alias="FACADE_REDIS_CONNECT_TIMEOUT", gt=0, le=30, description="s to open a connection (TLS included)"
    )
    redis_pool_size: int = Field(64, alias="FACADE_REDIS_POOL_SIZE", ge=1, le=10_000, description="connections")
    corrections_lookback: float = Field(
        300, alias="FACADE_CORRECTIONS_LOOKBACK", ge=0, le=86400, description="s before start-up the first poll reads"
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_api_keys(value)
        if isinstance(value, list):  # e.g. Settings(FACADE_API_KEYS=["k1", "k2"]) or a model_dump round trip
            return [_as_api_key(v, position) for position, v in enumerate(value, start=1)]
        return value

    def client_keys(self) -> list[tuple[str, str]]:
        """(label, key) per configured client key, in the order of `FACADE_API_KEYS`."""
        return [(getattr(k, "label", f"key{i}"), k.get_secret_value()) for i, k in enumerate(self.api_keys, start=1)]

    @model_validator(mode="after")
    def _sandbox_deadline(self) -> Settings:
        # The in-process GraphQL emulator executes every field with graphql-core (~1 s per 10 days of
        # partner-wide readings), so long sandbox windows need more than the live default of 10 s.
        if self.sandbox and "request_deadline" not in self.model_fields_set:
            self.request_deadline = SANDBOX_REQUEST_DEADLINE
        return self

    def responses_cache_bytes(self) -> int:
        """The response cache's share of `FACADE_CACHE_MAX_BYTES`."""
        return int(self.cache_max_bytes * RESPONSES_BYTE_SHARE)

    def facade_secrets(self) -> list[str]:
        """The service's own secret values (API keys, cursor key, Redis password), for redaction; with
        the vendors' secrets: `app.backends.registry.all_secrets`."""
        found = [k.get_secret_value() for k in self.api_keys]
        if self.cursor_secret is not None:
            found.append(self.cursor_secret.get_secret_value())
        if self.redis_url is not None:
            password = urlsplit(self.redis_url.get_secret_value()).password
            if password:
                found.append(password)
        if self.upstream_proxy is not None:
            password = urlsplit(self.upstream_proxy.get_secret_value()).password
            if password:
                found.append(password)
        return found

    def _redis_problems(self) -> list[str]:
        """What FACADE_REDIS_MODE needs beside FACADE_REDIS_URL (issue 23)."""
        if self.redis_url is None:
            return []
        if self.redis_mode == "sentinel":
            try:
                parse_sentinels(self.redis_sentinels)
            except ValueError:
                return ["FACADE_REDIS_MODE=sentinel needs FACADE_REDIS_SENTINELS=host:port,host:port."]
        if self.redis_mode == "cluster" and urlsplit(self.redis_url.get_secret_value()).path.strip("/") not in (
            "",
            "0",
        ):
            return ["FACADE_REDIS_MODE=cluster has only database 0: drop the /<db> from FACADE_REDIS_URL."]
        return []

    def startup_problems(self, *, live: bool) -> list[str]:
        """What to set when the service could not work (`live`: some vendor is configured); the vendors'
        own problems are added by `app.backends.registry.validate_startup`."""
        problems: list[str] = []
        if not self.sandbox and live and not self.api_keys and not self.allow_anonymous:
            problems.append(
                "Live backends need client auth: set FACADE_API_KEYS (comma-separated keys) "
                "or FACADE_ALLOW_ANONYMOUS=true to serve without keys."
            )
        if self.redis_url is not None and not self.redis_url.get_secret_value().startswith(("redis://", "rediss://")):
            problems.append(
                "FACADE_REDIS_URL must start with redis:// or rediss:// (e.g. rediss://user:pw@host:6380/0)."
            )
        problems.extend(self._redis_problems())
        labels = [label for label, _ in self.client_keys()]
        if len(set(labels)) != len(labels):
            twice = sorted({label for label in labels if labels.count(label) > 1})
            problems.append(f"FACADE_API_KEYS gives the label(s) {', '.join(twice)} to more than one key.")
        try:
            zone(self.timezone)
        except ValueError:
            problems.append(f"FACADE_TIMEZONE={self.timezone!r} is not an IANA time zone (e.g. Europe/Berlin).")
        return problems
