"""`FACADE_API_KEYS`: `label:key` pairs and plain keys, and the label a request is logged with."""

from __future__ import annotations

import pytest

from app.infra.config import Settings, parse_api_keys
from app.infra.errors import ConfigurationError


def test_labels_and_plain_keys_by_position():
    keys = parse_api_keys(" app1:KEY1 , KEY2,billing.v2:K:3 ,, :odd,x y:z")
    assert [(k.label, k.get_secret_value()) for k in keys] == [
        ("app1", "KEY1"),
        ("key2", "KEY2"),
        ("billing.v2", "K:3"),  # split at the first colon only
        ("key4", ":odd"),  # no label before the colon: a plain key
        ("key5", "x y:z"),  # not a label: a plain key
    ]
    assert "KEY1" not in repr(keys)
    assert "KEY1" not in str(keys[0])


def test_settings_hand_out_label_key_pairs_and_keep_them_through_a_copy(monkeypatch):
    monkeypatch.setenv("FACADE_API_KEYS", "app1:KEY1,KEY2")
    settings = Settings()
    assert settings.client_keys() == [("app1", "KEY1"), ("key2", "KEY2")]
    assert [k.get_secret_value() for k in settings.api_keys] == ["KEY1", "KEY2"]
    copied = Settings.model_validate(settings.model_dump(by_alias=True))  # as sandbox_settings does
    assert copied.client_keys() == settings.client_keys()
    assert Settings(FACADE_API_KEYS=["a", "b"]).client_keys() == [("key1", "a"), ("key2", "b")]


def test_a_label_given_twice_refuses_to_start():
    settings = Settings(FACADE_SANDBOX=True, FACADE_API_KEYS="app:one,app:two")
    with pytest.raises(ConfigurationError, match="app"):
        settings.validate_startup()
