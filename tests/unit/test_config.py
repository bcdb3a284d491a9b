import pytest

from app.config import Settings
from app.errors import ConfigurationError


def test_nothing_configured_refuses_and_says_what_to_set():
    with pytest.raises(ConfigurationError) as info:
        Settings().validate_startup()
    assert "FACADE_SANDBOX=true" in str(info.value) and "WALTERO_USERNAME" in str(info.value)


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
    assert s.waltero_organizations == ["o1", "o2"]
    assert s.iometer_auth == "basic"
    assert "k1" not in repr(s)
