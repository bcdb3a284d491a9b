"""Which backend answers: the one behind an id (checked before any vendor call), or the ones a list
spans."""

from __future__ import annotations

from collections.abc import Mapping

from app.domain.ids import FacadeId, split_id
from app.guard.guarded import GuardedBackend
from app.infra.errors import InvalidRequest, NotFound, NotSupported


class BackendRouter:
    def __init__(self, backends: Mapping[str, GuardedBackend]) -> None:
        self.backends = dict(backends)

    def resolve(self, raw_id: str, *, field: str, in_path: bool, capability: str) -> tuple[GuardedBackend, FacadeId]:
        """The backend behind an id, after checking the id fully; nothing goes upstream for junk."""
        fid = split_id(raw_id, field=field, in_path=in_path)
        guarded = self.backends.get(fid.backend)
        if guarded is None or not guarded.backend.is_valid_id(fid.upstream):
            raise NotFound(f"No {field.removesuffix('_id')} {raw_id!r} exists.")
        if capability not in guarded.capabilities:
            raise NotSupported(f"{guarded.name} has no {capability}.", backend=guarded.name)
        return guarded, fid

    def selected(self, backend: str | None, capability: str) -> list[GuardedBackend]:
        """Backends a list spans: the one named, or every configured one that can do `capability`."""
        if backend is not None:
            chosen = self.backends.get(backend)
            if chosen is None:
                configured = ", ".join(sorted(self.backends))
                raise InvalidRequest(f"backend {backend[:40]!r} is not one of: {configured}", field="backend")
            if capability not in chosen.capabilities:
                raise NotSupported(f"{backend} has no {capability}.", backend=backend)
            return [chosen]
        found = [b for b in self.backends.values() if capability in b.capabilities]
        if not found:
            raise NotSupported(f"No configured backend offers {capability}.")
        return found
