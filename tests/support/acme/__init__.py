"""Acme: a third vendor defined in the tests, all the way (adapter, emulator, live source, doctor), to
prove that a vendor is one package plus one registry line. `vendors.register(VENDOR)` is that line."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from app.backends import registry as vendors
from app.backends.live import LiveContext, LiveSource
from app.backends.registry import BackendContext, Emulator, Vendor, VendorSettings
from app.doctor.report import DoctorContext
from app.infra.timeutil import Clock
from tests.support.acme.adapter import AcmeBackend


class AcmeSettings(VendorSettings):
    model_config = SettingsConfigDict(env_prefix="ACME_", env_file=None, extra="ignore")
    enabled_by: ClassVar[tuple[str, ...]] = ("user", "token")

    url: str = "https://api.acme.example"
    user: str | None = None
    token: SecretStr | None = None
    live_poll: float = Field(0.2, gt=0)


def create_backend(ctx: BackendContext, settings: AcmeSettings) -> AcmeBackend:
    token = settings.token.get_secret_value() if settings.token else ""
    return AcmeBackend(ctx.http, settings.url, settings.user or "", token, mode=ctx.mode)


def _emulator(clock: Clock, seed: int, variants: frozenset[str]) -> Emulator:
    from tests.support.acme.emulator import create_emulator

    emulator: Any = create_emulator(clock, seed=seed, breaks=set(variants))
    return emulator  # type: ignore[no-any-return]


def _sandbox_settings(base_url: str) -> dict[str, str]:
    from tests.support.acme.emulator import DEMO_TOKEN, DEMO_USER

    return {"ACME_URL": base_url, "ACME_USER": DEMO_USER, "ACME_TOKEN": DEMO_TOKEN}


def _live_source(ctx: LiveContext) -> LiveSource:
    from tests.support.acme.live_source import AcmeLiveSource

    return AcmeLiveSource(ctx)


async def _doctor(ctx: DoctorContext) -> None:
    from tests.support.acme import doctor

    await doctor.check(ctx)


VENDOR = Vendor(
    name="acme",
    settings=AcmeSettings,
    create_backend=create_backend,
    create_emulator=_emulator,
    emulator_variants=frozenset({"wh_units"}),
    sandbox_settings=_sandbox_settings,
    create_live_source=_live_source,
    doctor=_doctor,
    setup_hint="ACME_USER and ACME_TOKEN",
)


def settings_of(settings: Any) -> AcmeSettings:
    return vendors.settings_of(settings, "acme", AcmeSettings)
