import os
from collections.abc import Iterator

import pytest

from app.infra import tolerance

_PREFIXES = ("FACADE_", "IOMETER_", "WALTERO_")


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing depends on the developer's environment variables."""
    for name in list(os.environ):
        if name.startswith(_PREFIXES):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _wire_shapes() -> Iterator[None]:
    """A wire-shape recorder of the test's own, as each app has its own (`app.infra.tolerance`)."""
    with tolerance.recording(tolerance.WireShapes()):
        yield


# A real redis-server per test that asks for it (the Debian package redis-server; never a mock).
from tests.support.redis_server import redis_server  # noqa: E402, F401
