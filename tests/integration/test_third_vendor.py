"""Adding a vendor is one registry entry: a minimal third vendor, defined here and nowhere else, works
through startup validation, `/meters`, `/backends`, `?backend=`, `/changes`, the OpenAPI enum and log
redaction, with no edit to the service."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import ClassVar

import pytest
from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from app.backends import registry as vendors
from app.backends.registry import BackendContext, Vendor, VendorSettings
from app.domain.models import Change
from app.factory import create_app
from app.infra.config import Settings
from app.infra.errors import ConfigurationError
from app.infra.logs import configure_logging
from app.infra.timeutil import parse_rfc3339
from tests.support.apps import API_KEY, running
from tests.support.fake_backend import FakeBackend, fake_uuid


class AcmeSettings(VendorSettings):
    model_config = SettingsConfigDict(env_prefix="ACME_", env_file=None, extra="ignore")
    enabled_by: ClassVar[tuple[str, ...]] = ("user", "token")

    url: str = "https://acme.example/api"
    user: str | None = None
    token: SecretStr | None = None


built: list[AcmeSettings] = []


def create_acme(ctx: BackendContext, settings: AcmeSettings) -> FakeBackend:
    built.append(settings)
    backend = FakeBackend("acme", meters=2, changes=True)
    backend.change_log = [
        Change(
            id=f"acme:{fake_uuid('acme', 'change', i)}",
            backend="acme",
            meter_id=f"acme:{backend.meter_ids[0]}",
            time=parse_rfc3339("2026-05-01T00:00:00Z"),
            previous_value=1.0,
            new_value=2.0,
            unit="kWh",
            actor="user",
            changed_at=parse_rfc3339(f"2026-05-02T0{i}:00:00Z"),
        )
        for i in range(3)
    ]
    return backend


ACME = Vendor(name="acme", settings=AcmeSettings, create_backend=create_acme, setup_hint="ACME_USER and ACME_TOKEN")


@pytest.fixture
def acme() -> Iterator[Vendor]:
    vendors.register(ACME)
    built.clear()
    try:
        yield ACME
    finally:
        vendors.unregister("acme")


def acme_only(**extra: str) -> Settings:
    return Settings(
        ACME_USER="u", ACME_TOKEN="acme-token-value", FACADE_API_KEYS=API_KEY, FACADE_CHANGES_POLL=0, **extra
    )


def test_startup_validation_comes_from_the_registry(acme):
    acme_only().validate_startup()  # acme alone is a working configuration
    with pytest.raises(ConfigurationError) as half:
        Settings(ACME_USER="u", FACADE_API_KEYS=API_KEY).validate_startup()
    assert "ACME_TOKEN" in str(half.value)
    with pytest.raises(ConfigurationError) as nothing:
        Settings().validate_startup()
    assert "ACME_USER and ACME_TOKEN" in str(nothing.value)


def test_the_vendors_settings_read_their_own_prefix(acme, monkeypatch):
    monkeypatch.setenv("ACME_URL", "https://acme.test/v2")
    settings = acme_only().vendor_settings("acme")
    assert isinstance(settings, AcmeSettings)
    assert settings.url == "https://acme.test/v2"
    assert settings.token is not None
    assert settings.token.get_secret_value() == "acme-token-value"
    assert "acme-token-value" in acme_only().secrets()


async def test_a_third_vendor_serves_every_list_and_filter(acme):
    app = create_app(acme_only())
    async with running(app) as c:
        assert built[0].user == "u"  # the factory handed the vendor its own settings
        meters = (await c.get("/meters")).json()
        assert [m["backend"] for m in meters["items"]] == ["acme", "acme"]
        only = await c.get("/meters", params={"backend": "acme"})
        assert only.status_code == 200
        assert len(only.json()["items"]) == 2
        wrong = await c.get("/meters", params={"backend": "iometer"})
        assert wrong.status_code == 422
        assert "acme" in wrong.json()["detail"]
        one = await c.get(f"/meters/{meters['items'][0]['id']}")
        assert one.json()["backend"] == "acme"
        backends = (await c.get("/backends")).json()["items"]
        assert [(b["name"], "changes" in b["capabilities"]) for b in backends] == [("acme", True)]
        feed = (await c.get("/changes", params={"since": "2026-05-01T00:00:00Z", "limit": 2})).json()
        assert [ch["backend"] for ch in feed["items"]] == ["acme", "acme"]
        rest = (await c.get("/changes", params={"cursor": feed["next_cursor"]})).json()
        assert len(rest["items"]) == 1
        assert rest["next_cursor"] is None
        spec = (await c.get("/openapi.json")).json()
        assert spec["components"]["schemas"]["BackendName"]["enum"] == ["acme"]


async def test_every_backend_with_a_feed_is_merged_into_changes(acme):
    other = FakeBackend("waltero", changes=True)
    other.change_log = [
        Change(
            id=f"waltero:{fake_uuid('w', i)}",
            backend="waltero",
            meter_id=f"waltero:{other.meter_ids[0]}",
            time=parse_rfc3339("2026-05-01T00:00:00Z"),
            previous_value=None,
            new_value=1.0,
            unit="m3",
            actor="system",
            changed_at=parse_rfc3339(f"2026-05-02T0{i}:30:00Z"),
        )
        for i in range(3)
    ]
    factories = {"acme": lambda ctx: create_acme(ctx, AcmeSettings()), "waltero": lambda ctx: other}
    app = create_app(acme_only(), backend_factories=factories)
    seen: list[str] = []
    async with running(app) as c:
        page = (await c.get("/changes", params={"since": "2026-05-01T00:00:00Z", "limit": 2})).json()
        seen += [ch["changed_at"] for ch in page["items"]]
        while page["next_cursor"]:
            page = (await c.get("/changes", params={"cursor": page["next_cursor"], "limit": 2})).json()
            seen += [ch["changed_at"] for ch in page["items"]]
    # every correction of both feeds once, in order: acme at :00, waltero at :30 of hours 0..2
    assert seen == [f"2026-05-02T0{h}:{m}:00Z" for h in range(3) for m in ("00", "30")]


async def test_a_new_vendors_secret_is_never_logged(acme):
    stream = io.StringIO()
    settings = acme_only()
    configure_logging("INFO", settings.secrets(), stream=stream)
    try:
        logging.getLogger("app.test").info("token is acme-token-value")
    finally:
        configure_logging("WARNING", stream=io.StringIO())
    assert "acme-token-value" not in stream.getvalue()
    assert "[redacted]" in stream.getvalue()
