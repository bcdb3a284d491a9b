"""Facade ids are `<backend>:<upstream id>`; the facade routes on the prefix.

An id is checked completely (prefix known, upstream part in the backend's own format) before any
upstream call, so junk never reaches a vendor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.infra.errors import InvalidRequest, NotFound

_SHAPE = re.compile(r"^([a-z][a-z0-9_-]{0,31}):([A-Za-z0-9._~-]{1,128})$")


@dataclass(frozen=True, slots=True)
class FacadeId:
    backend: str
    upstream: str

    def __str__(self) -> str:
        return f"{self.backend}:{self.upstream}"


def split_id(value: str, *, field: str, in_path: bool) -> FacadeId:
    """Split an id syntactically. A malformed id in the query is a 422 (the request is wrong); in the
    path it is a 404 (no resource has that name)."""
    match = _SHAPE.match(value)
    if not match:
        message = f"{field} must look like '<backend>:<id>', e.g. 'iometer:578936dc-8020-4022-a560-2f59d2dca9ee'"
        if in_path:
            raise NotFound(f"No resource has the id {value!r}: {message}.")
        raise InvalidRequest(message, field=field)
    return FacadeId(match.group(1), match.group(2))
