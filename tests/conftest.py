import gc
import os
from collections.abc import Iterator

import pytest

from app.backends import registry as vendors
from app.infra import tolerance


def _prefixes() -> tuple[str, ...]:
    """The service's own prefix and every registered vendor's (from the registry, never a list here)."""
    vendor = (str(v.settings.model_config.get("env_prefix", "")).upper() for v in vendors.iter_vendors())
    return ("FACADE_", *(p for p in vendor if p))


@pytest.fixture(autouse=True, scope="module")
def _short_gc_pauses() -> None:
    """What earlier modules left alive is frozen out of the collector's generations before each module.

    One process runs the whole suite, and what tests leave behind (apps, Hypothesis' data, module
    caches) grows to over a million tracked objects; a full collection then held the event loop for up
    to 1.5 s in the middle of a test, longer than the Redis timeout of the fleet tests, so every command
    in flight timed out together. Frozen objects are still freed by reference counting; a collection
    first, so no garbage is frozen. The same remedy the served process uses (`create_app(freeze_gc=True)`)."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing depends on the developer's environment variables."""
    prefixes = _prefixes()
    for name in list(os.environ):
        if name.startswith(prefixes):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _wire_shapes() -> Iterator[None]:
    """A wire-shape recorder of the test's own, as each app has its own (`app.infra.tolerance`)."""
    with tolerance.recording(tolerance.WireShapes()):
        yield


# A real redis-server per test that asks for it (the Debian package redis-server; never a mock).
from tests.support.redis_server import (  # noqa: E402, F401
    any_redis,
    redis_deployment,
    redis_mode,
    redis_server,
    shared_deployments,
)
