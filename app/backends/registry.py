"""The vendor registry: the one place that lists backends.

A `Vendor` entry is the whole vendor as the rest of the service sees it: its name (the id prefix), its
settings class (a `VendorSettings` with its own env prefix, secrets as `SecretStr`), `create_backend`,
and the factory of its sandbox emulator. Startup validation, the `backend` enum in the OpenAPI, log
redaction, the sandbox and `/changes` all read the registry, so adding a vendor is one package under
`app/backends/` exposing `VENDOR` plus one line in `BUILT_IN` (or `register(vendor)` at runtime).
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, TypeVar

import httpx
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.backends.base import Backend, IndexStore
from app.backends.http import Sleep
from app.backends.live import LiveContext, LiveSource
from app.doctor.report import DoctorContext
from app.infra.config import Settings
from app.infra.errors import ConfigurationError
from app.infra.timeutil import Clock
from app.shared.tokens import SharedTokenStore

BUILT_IN: tuple[str, ...] = ("iometer", "waltero")
"""Modules under `app.backends` whose `VENDOR` is registered at import."""


class VendorSettings(BaseSettings):
    """One vendor's settings, read from the environment under its own prefix (`IOMETER_`, ...).

    A subclass declares `enabled_by`: the fields that must all be set to enable the vendor (set
    some but not all and startup is refused, naming the missing variables)."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore")
    enabled_by: ClassVar[tuple[str, ...]] = ()

    def env_name(self, field_name: str) -> str:
        return f"{self.model_config.get('env_prefix', '')}{field_name}".upper()

    def configured(self) -> bool:
        return bool(self.enabled_by) and all(getattr(self, f) for f in self.enabled_by)

    def missing(self) -> list[str]:
        """Env names still unset when the vendor is half configured; [] when fully set or not at all."""
        unset = [f for f in self.enabled_by if not getattr(self, f)]
        return [self.env_name(f) for f in unset] if 0 < len(unset) < len(self.enabled_by) else []

    def secrets(self) -> list[str]:
        """Every `SecretStr` value, for log redaction."""
        return [v.get_secret_value() for v in self.__dict__.values() if isinstance(v, SecretStr)]


class Emulator(Protocol):
    """A vendor emulator: an ASGI app plus its fault knobs and counters (`app.sandbox`)."""

    app: Any
    faults: Any
    stats: Any


@dataclass(frozen=True, slots=True)
class BackendContext:
    """What a vendor gets to build its backend. The httpx client is shared and owned by the app (pool
    sized to the upstream concurrency, timeouts set); the backend must not close it."""

    http: httpx.AsyncClient
    clock: Clock
    sleep: Sleep
    rng: random.Random
    mode: Literal["live", "sandbox"]
    deadline: float
    """Seconds a backend call may take in all, retries included (the service's backend deadline)."""
    max_gap: int = 21600
    upstream_concurrency: int = 8
    retry_attempts: int = 4
    on_retry: Callable[[str, str], None] = lambda backend, reason: None
    """Metrics hook: called with (backend name, reason) before each upstream retry."""
    token_store: Callable[[str, str | None], SharedTokenStore | None] | None = None
    """With several replicas (`FACADE_REDIS_URL`): `token_store(account, credential)` is the fleet's
    store for a vendor token (sealed in Redis with a key derived from `credential`), so the fleet
    logs in once per token lifetime (`app.shared.tokens`)."""
    index_store: Callable[[str], IndexStore | None] | None = None
    """With several replicas: `index_store(account)` makes the fleet's shared indexes of a vendor account
    (`account` names it, e.g. its URL and user; it is digested, never stored in clear), so the fleet
    loads each adapter index once (`app.shared.indexes`)."""


@dataclass(frozen=True, slots=True)
class Vendor:
    """Everything the service, the sandbox, live streams and the doctor need of one vendor. Callers loop
    over the registry; nothing outside `app/backends/<vendor>/` names a vendor."""

    name: str
    """The id prefix (`iometer:...`), the `backend` parameter's value and every metric's label."""
    settings: type[VendorSettings]
    create_backend: Callable[[BackendContext, Any], Backend]
    """Called with the context and this vendor's settings (an instance of `settings`)."""
    create_emulator: Callable[[Clock, int, frozenset[str]], Emulator] | None = None
    """The sandbox emulator on an injected clock and seed, serving the given `emulator_variants`; None
    when the vendor has none. It must import nothing of the adapter (its own reading of the docs)."""
    emulator_variants: frozenset[str] = frozenset()
    """Emulator variants, each breaking one pinned assumption (`make doctor` shows its one FAIL)."""
    sandbox_settings: Callable[[str], Mapping[str, Any]] = lambda base_url: {}
    """Env-style settings pointing the vendor at its emulator served at `base_url` (demo credentials)."""
    create_live_source: Callable[[LiveContext], LiveSource] | None = None
    """The vendor's source for `/readings/live`; None when it has none."""
    doctor: Callable[[DoctorContext], Awaitable[None]] | None = None
    """The vendor's read-only self-check (`make doctor`): appends one finding per check."""
    setup_hint: str = ""
    """What to set to enable the vendor, for the startup refusal."""


_registry: dict[str, Vendor] = {}


def register(vendor: Vendor) -> None:
    if not vendor.name.isidentifier() or vendor.name != vendor.name.lower():
        raise ValueError(f"vendor name {vendor.name!r} must be a lower-case identifier")
    _registry[vendor.name] = vendor


def unregister(name: str) -> None:
    _registry.pop(name, None)


def _load_built_in() -> None:
    for module in BUILT_IN:
        if module not in _registry:
            register(importlib.import_module(f"app.backends.{module}").VENDOR)


def vendors() -> Mapping[str, Vendor]:
    """Every registered vendor by name, built-in ones first."""
    _load_built_in()
    return dict(_registry)


def names() -> list[str]:
    return list(vendors())


def iter_vendors() -> Iterator[Vendor]:
    yield from vendors().values()


def vendor_settings(settings: Settings, name: str) -> VendorSettings:
    """The settings of vendor `name`: its env-prefixed variables, explicit values given to `settings`
    (tests, the sandbox) winning over the environment. Read once per `settings` object."""
    cached = settings._vendor_cache.get(name)
    if cached is None:
        vendor = vendors()[name]
        prefix = str(vendor.settings.model_config.get("env_prefix", "")).upper()
        given = {
            k[len(prefix) :].lower(): v
            for k, v in (settings.model_extra or {}).items()
            if prefix and k.upper().startswith(prefix)
        }
        try:
            cached = settings._vendor_cache[name] = vendor.settings(**given)
        except ValidationError as exc:  # name the variable, e.g. IOMETER_AUTH, not the field
            wrong = "; ".join(f"{prefix}{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
            raise ConfigurationError(f"invalid configuration ({wrong}).") from None
    return cached  # type: ignore[no-any-return]


def configured_vendors(settings: Settings) -> list[str]:
    """Vendors whose enabling variables are all set."""
    return [n for n in names() if vendor_settings(settings, n).configured()]


def all_secrets(settings: Settings) -> list[str]:
    """Every configured secret value, the service's and each vendor's `SecretStr`s, for redaction."""
    found = settings.facade_secrets()
    for name in names():
        found.extend(vendor_settings(settings, name).secrets())
    return found


def validate_startup(settings: Settings) -> None:
    """Raise `ConfigurationError` saying what to set when the service could not work."""
    problems: list[str] = []
    for vendor in iter_vendors():
        missing = vendor_settings(settings, vendor.name).missing()
        if missing:
            problems.append(f"{vendor.name} is half configured: also set {' and '.join(missing)}.")
    live = bool(configured_vendors(settings))
    if not settings.sandbox and not live and not problems:
        hints = "; or ".join(v.setup_hint for v in iter_vendors() if v.setup_hint)
        problems.append(
            f"No backend is configured: set {hints}; or set FACADE_SANDBOX=true to serve the built-in emulators."
        )
    problems.extend(settings.startup_problems(live=live))
    if problems:
        raise ConfigurationError(" ".join(problems))


def create_emulators(clock: Clock, *, seed: int = 7) -> dict[str, Emulator]:
    """One sandbox emulator per vendor that has one, all on the same injected clock."""
    return {v.name: v.create_emulator(clock, seed, frozenset()) for v in iter_vendors() if v.create_emulator}


def sandbox_host(name: str) -> str:
    """The base URL of vendor `name`'s in-process emulator (a host only the sandbox transport answers)."""
    return f"http://{name}.sandbox"


def sandbox_settings(settings: Settings) -> Settings:
    """`settings` with every vendor pointed at its emulator and its demo credentials."""
    overrides: dict[str, Any] = {}
    for vendor in iter_vendors():
        overrides.update(vendor.sandbox_settings(sandbox_host(vendor.name)))
    return Settings.model_validate({**settings.model_dump(by_alias=True), **overrides})


S = TypeVar("S", bound=VendorSettings)


def settings_of(settings: Settings, name: str, kind: type[S]) -> S:
    """Vendor `name`'s settings out of the service's `Settings`, as its own settings class."""
    found = vendor_settings(settings, name)
    if not isinstance(found, kind):
        raise TypeError(f"{name}'s settings are a {type(found).__name__}, not a {kind.__name__}")
    return found
