"""Every setting of the service, read from the environment (CONTRACT.md's table and the cache knobs).

`Settings()` reads the environment; tests build `Settings(...)` with explicit values. `validate()`
refuses configurations that cannot work and says what to set.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.errors import ConfigurationError
from app.timeutil import zone

DEFAULT_IOMETER_URL = "https://partner.prod.iometer.cloud/api/v1/query"
DEFAULT_WALTERO_URL = "https://qs0iya7cfk.execute-api.eu-central-1.amazonaws.com/prod"

CommaList = Annotated[list[str], NoDecode]
SANDBOX_REQUEST_DEADLINE = 30.0


class Settings(BaseSettings):
    # Only the prefixed names below are read: field names like `sandbox` must never switch anything on.
    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=False)

    # --- modes and client auth -------------------------------------------------------------
    sandbox: bool = Field(False, alias="FACADE_SANDBOX")
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list, alias="FACADE_API_KEYS")
    allow_anonymous: bool = Field(False, alias="FACADE_ALLOW_ANONYMOUS")
    timezone: str = Field("UTC", alias="FACADE_TIMEZONE")
    max_gap: int = Field(21600, alias="FACADE_MAX_GAP", ge=1)
    cursor_secret: SecretStr | None = Field(None, alias="FACADE_CURSOR_SECRET")
    log_level: str = Field("INFO", alias="FACADE_LOG_LEVEL")

    # --- IOmeter ------------------------------------------------------------------------------
    iometer_url: str = Field(DEFAULT_IOMETER_URL, alias="IOMETER_URL")
    iometer_partner_id: str | None = Field(None, alias="IOMETER_PARTNER_ID")
    iometer_partner_secret: SecretStr | None = Field(None, alias="IOMETER_PARTNER_SECRET")
    iometer_auth: Literal["wsse", "basic"] = Field("wsse", alias="IOMETER_AUTH")

    # --- Waltero ------------------------------------------------------------------------------
    waltero_url: str = Field(DEFAULT_WALTERO_URL, alias="WALTERO_URL")
    waltero_username: str | None = Field(None, alias="WALTERO_USERNAME")
    waltero_password: SecretStr | None = Field(None, alias="WALTERO_PASSWORD")
    waltero_organizations: CommaList = Field(default_factory=list, alias="WALTERO_ORGANIZATIONS")

    # --- caching, coalescing, resilience ---------------------------------------------------------
    # Entries per cache. Sized so every cache full stays near 150 MB with realistic entries (README,
    # "Performance", gives the measured cost per entry to size them differently).
    cache_maxsize: int = Field(2048, alias="FACADE_CACHE_MAXSIZE", ge=1, description="meters, meter, device status")
    cache_maxsize_readings: int = Field(512, alias="FACADE_CACHE_MAXSIZE_READINGS", ge=1)
    cache_maxsize_daily: int = Field(128, alias="FACADE_CACHE_MAXSIZE_DAILY", ge=1)
    cache_maxsize_changes: int = Field(128, alias="FACADE_CACHE_MAXSIZE_CHANGES", ge=1)
    cache_maxsize_responses: int = Field(2048, alias="FACADE_CACHE_MAXSIZE_RESPONSES", ge=1)
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
    retry_attempts: int = Field(4, alias="FACADE_RETRY_ATTEMPTS", ge=1)
    circuit_failures: int = Field(5, alias="FACADE_CIRCUIT_FAILURES", ge=1)
    circuit_reset: float = Field(30, alias="FACADE_CIRCUIT_RESET", gt=0)

    # --- live readings (`/readings/live`) ----------------------------------------------------------
    live_poll: float = Field(60, alias="FACADE_LIVE_POLL", gt=0, description="s between shared Waltero polls")
    live_max_clients: int = Field(1000, alias="FACADE_LIVE_MAX_CLIENTS", ge=0)
    live_ping: float = Field(15, alias="FACADE_LIVE_PING", gt=0, le=15, description="s between keep-alives")
    live_linger: float = Field(30, alias="FACADE_LIVE_LINGER", ge=0, le=30, description="s after the last client")
    live_queue: int = Field(256, alias="FACADE_LIVE_QUEUE", ge=1, le=100_000, description="events per client")
    live_backoff: float = Field(1, alias="FACADE_LIVE_BACKOFF", gt=0, description="first reconnect delay, s")
    live_overflow_grace: float = Field(5, alias="FACADE_LIVE_OVERFLOW_GRACE", gt=0)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("waltero_organizations", mode="before")
    @classmethod
    def _split_orgs(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("iometer_auth", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _sandbox_deadline(self) -> Settings:
        # The in-process GraphQL emulator executes every field with graphql-core (~1 s per 10 days of
        # partner-wide readings), so long sandbox windows need more than the live default of 10 s.
        if self.sandbox and "request_deadline" not in self.model_fields_set:
            self.request_deadline = SANDBOX_REQUEST_DEADLINE
        return self

    def cache_size(self, cache: str) -> int:
        """Configured entries for a cache by name (`readings`, `daily`, `changes`, `responses`, others)."""
        return {
            "readings": self.cache_maxsize_readings,
            "daily": self.cache_maxsize_daily,
            "changes": self.cache_maxsize_changes,
            "responses": self.cache_maxsize_responses,
        }.get(cache, self.cache_maxsize)

    @property
    def iometer_enabled(self) -> bool:
        return bool(self.iometer_partner_id and self.iometer_partner_secret)

    @property
    def waltero_enabled(self) -> bool:
        return bool(self.waltero_username and self.waltero_password)

    def validate_startup(self) -> None:
        """Raise `ConfigurationError` saying what to set when the service could not work."""
        problems: list[str] = []
        if bool(self.iometer_partner_id) != bool(self.iometer_partner_secret):
            problems.append("IOmeter is half configured: set both IOMETER_PARTNER_ID and IOMETER_PARTNER_SECRET.")
        if bool(self.waltero_username) != bool(self.waltero_password):
            problems.append("Waltero is half configured: set both WALTERO_USERNAME and WALTERO_PASSWORD.")
        live = self.iometer_enabled or self.waltero_enabled
        if not self.sandbox and not live and not problems:
            problems.append(
                "No backend is configured: set IOMETER_PARTNER_ID and IOMETER_PARTNER_SECRET, and/or "
                "WALTERO_USERNAME and WALTERO_PASSWORD, or set FACADE_SANDBOX=true to serve the built-in emulators."
            )
        if not self.sandbox and live and not self.api_keys and not self.allow_anonymous:
            problems.append(
                "Live backends need client auth: set FACADE_API_KEYS (comma-separated keys) "
                "or FACADE_ALLOW_ANONYMOUS=true to serve without keys."
            )
        try:
            zone(self.timezone)
        except ValueError:
            problems.append(f"FACADE_TIMEZONE={self.timezone!r} is not an IANA time zone (e.g. Europe/Berlin).")
        if problems:
            raise ConfigurationError(" ".join(problems))
