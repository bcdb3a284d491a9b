import os

import pytest

_PREFIXES = ("FACADE_", "IOMETER_", "WALTERO_")


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing depends on the developer's environment variables."""
    for name in list(os.environ):
        if name.startswith(_PREFIXES):
            monkeypatch.delenv(name, raising=False)


# A real redis-server per test that asks for it (the Debian package redis-server; never a mock).
from tests.support.redis_server import (  # noqa: E402, F401
    any_redis,
    redis_deployment,
    redis_mode,
    redis_server,
    shared_deployments,
)
