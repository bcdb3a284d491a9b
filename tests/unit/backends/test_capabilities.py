"""Optional backend features are protocols the service checks with `isinstance`: each built-in backend
implements exactly the ones it has, and a backend without them takes the default path."""

from __future__ import annotations

from app.backends.base import Backend, ChunkedReadings, RegisterValues, SerialLookup, WindowedReadings
from app.factory import create_app
from app.infra.config import Settings
from tests.support.apps import running

EXPECTED = {
    "iometer": {SerialLookup, WindowedReadings, RegisterValues},
    "waltero": {SerialLookup, ChunkedReadings},
}
OPTIONAL = (SerialLookup, WindowedReadings, RegisterValues, ChunkedReadings)


async def test_each_built_in_backend_has_exactly_its_capabilities() -> None:
    app = create_app(Settings(FACADE_SANDBOX="true"))
    async with running(app, key=None):
        found = {
            name: {p for p in OPTIONAL if isinstance(guarded.backend, p)}
            for name, guarded in app.service.backends.items()  # type: ignore[attr-defined]
        }
        assert all(isinstance(g.backend, Backend) for g in app.service.backends.values())  # type: ignore[attr-defined]
    assert found == EXPECTED


def test_a_plain_object_has_none_of_them() -> None:
    class Plain:
        readings_chunk_days = "x"

    assert [p for p in OPTIONAL if isinstance(Plain(), p)] == [ChunkedReadings]
    assert [p for p in OPTIONAL if isinstance(object(), p)] == []
