import pytest

from app.infra.config import Settings
from app.infra.errors import ConfigurationError


def test_nothing_configured_refuses_and_says_what_to_set():
    with pytest.raises(ConfigurationError) as info:
        Settings().validate_startup()
    assert "FACADE_SANDBOX=true" in str(info.value)
    assert "WALTERO_USERNAME" in str(info.value)


def test_sandbox_alone_is_enough():
    Settings(FACADE_SANDBOX="true").validate_startup()


@pytest.mark.parametrize(
    "values, needle",
    [
        ({"IOMETER_PARTNER_ID": "p"}, "IOMETER_PARTNER_SECRET"),
        ({"WALTERO_PASSWORD": "p"}, "WALTERO_USERNAME"),
        ({"WALTERO_USERNAME": "u", "WALTERO_PASSWORD": "p"}, "FACADE_API_KEYS"),
        ({"FACADE_SANDBOX": "true", "FACADE_TIMEZONE": "Nowhere/Land"}, "FACADE_TIMEZONE"),
    ],
)
def test_refusals(values, needle):
    with pytest.raises(ConfigurationError) as info:
        Settings(**values).validate_startup()
    assert needle in str(info.value)


def test_live_with_keys_or_anonymous_starts():
    Settings(WALTERO_USERNAME="u", WALTERO_PASSWORD="p", FACADE_API_KEYS="a, b").validate_startup()
    Settings(WALTERO_USERNAME="u", WALTERO_PASSWORD="p", FACADE_ALLOW_ANONYMOUS="true").validate_startup()


def test_environment_is_read(monkeypatch):
    monkeypatch.setenv("FACADE_API_KEYS", "k1,k2 , ")
    monkeypatch.setenv("WALTERO_ORGANIZATIONS", "o1,o2")
    monkeypatch.setenv("IOMETER_AUTH", "BASIC")
    s = Settings()
    assert [k.get_secret_value() for k in s.api_keys] == ["k1", "k2"]
    assert s.vendor_settings("waltero").organizations == ["o1", "o2"]  # type: ignore[attr-defined]
    assert s.vendor_settings("iometer").auth == "basic"  # type: ignore[attr-defined]
    assert "k1" not in repr(s)


def test_only_prefixed_variables_are_read(monkeypatch):
    # field names without the prefix must never switch on the sandbox, anonymous access, or a zone
    for name, value in {
        "SANDBOX": "true",
        "ALLOW_ANONYMOUS": "true",
        "TIMEZONE": "Asia/Tokyo",
        "API_KEYS": "k",
    }.items():
        monkeypatch.setenv(name, value)
    s = Settings(WALTERO_USERNAME="u", WALTERO_PASSWORD="p")
    assert (s.sandbox, s.allow_anonymous, s.timezone, s.api_keys) == (False, False, "UTC", [])
    with pytest.raises(ConfigurationError):
        s.validate_startup()


def test_the_sandbox_gets_a_longer_default_deadline_unless_one_is_set(monkeypatch):
    assert Settings(FACADE_SANDBOX=True).request_deadline == 30
    assert Settings(FACADE_SANDBOX=True, FACADE_REQUEST_DEADLINE=5).request_deadline == 5
    monkeypatch.setenv("FACADE_REQUEST_DEADLINE", "7")
    assert Settings(FACADE_SANDBOX=True).request_deadline == 7
    monkeypatch.delenv("FACADE_REQUEST_DEADLINE")
    assert Settings(WALTERO_USERNAME="u", WALTERO_PASSWORD="p").request_deadline == 10
