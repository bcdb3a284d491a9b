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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, TypeVar

import httpx
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.backends.base import Backend
from app.backends.http import Sleep
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


@dataclass(frozen=True, slots=True)
class Vendor:
    name: str
    """The id prefix (`iometer:...`), the `backend` parameter's value and every metric's label."""
    settings: type[VendorSettings]
    create_backend: Callable[[BackendContext, Any], Backend]
    """Called with the context and this vendor's settings (an instance of `settings`)."""
    create_emulator: Callable[[Clock, int], Emulator] | None = None
    """The sandbox emulator on an injected clock and seed; None when the vendor has none."""
    sandbox_settings: Callable[[], Mapping[str, str]] = dict
    """Env-style settings pointing the vendor at its emulator (URL on a sandbox host, demo credentials)."""
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


S = TypeVar("S", bound=VendorSettings)


def settings_of(settings: Any, name: str, kind: type[S]) -> S:
    """Vendor `name`'s settings out of the service's `Settings`, as its own settings class."""
    found = settings.vendor_settings(name)
    if not isinstance(found, kind):
        raise TypeError(f"{name}'s settings are a {type(found).__name__}, not a {kind.__name__}")
    return found
