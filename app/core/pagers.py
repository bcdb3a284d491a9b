"""The cursor schemes, one small pager each. Every cursor is signed (`CursorCodec`) and carries the
query it continues, so a cursor alone (without the original parameters) continues the listing, and a
cursor given with other parameters than its own is a 422.

- `after_id`: a list sorted by id, continued after the last id served (`/meters`).
- `time_and_count`: readings ascending by time, continued at the last time served, skipping the
  readings of that instant already served, so a page boundary inside one instant's group of registers
  loses nothing and repeats nothing (`/readings`).
- `feed`: a vendor's own resume token, carried inside ours (`/changes`).
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from app.backends.base import ChangesPage
from app.domain.cursors import CursorCodec
from app.domain.models import Change
from app.infra.errors import InvalidRequest
from app.infra.timeutil import format_rfc3339, parse_rfc3339

T = TypeVar("T")
Query = dict[str, Any]


def _bad(detail: str = "cursor is not valid: pass back next_cursor unchanged") -> InvalidRequest:
    return InvalidRequest(detail, field="cursor")


@dataclass(frozen=True, slots=True)
class Pager:
    """Encodes and decodes one route's cursors."""

    codec: CursorCodec
    scope: str

    def encode(self, query: Query, position: dict[str, Any]) -> str:
        return self.codec.encode(self.scope, {"q": query, **position})

    def decode(self, cursor: str, given: Query | None) -> tuple[Query, dict[str, Any]]:
        """(the cursor's query, its position). `given` is the query sent alongside, if any: it must be
        the cursor's own."""
        state = self.codec.decode(self.scope, cursor)
        query = state.pop("q", None)
        if not isinstance(query, dict):
            raise _bad()
        if given is not None and any(given.get(k) != v for k, v in query.items() if given.get(k) is not None):
            raise _bad("cursor belongs to another query: send it alone, or with the parameters that made it")
        return query, state


def after_id(items: Sequence[T], key: Callable[[T], str], after: str, limit: int) -> tuple[list[T], str | None]:
    """A page of `items` (sorted by `key`) after `after`, and the id to continue after (None at the end)."""
    ids = [key(i) for i in items]
    first = bisect.bisect_right(ids, after) if after else 0
    page = list(items[first : first + limit])
    more = first + limit < len(items) and bool(page)
    return page, key(page[-1]) if more else None


def time_position(state: dict[str, Any]) -> tuple[datetime, int]:
    try:
        return parse_rfc3339(str(state["t"])), int(state["n"])
    except (KeyError, ValueError, TypeError):
        raise _bad() from None


def time_and_count(
    rows: Sequence[T], time_of: Callable[[T], datetime], from_time: datetime, skip: int, limit: int
) -> tuple[list[T], dict[str, Any] | None]:
    """A page of `rows` (ascending by time, starting at `from_time`) after skipping the first `skip`
    rows at `from_time`; and the position to continue at (None at the end). `rows` must hold at
    least `skip + limit + 1` rows when more remain."""
    dropped = 0
    while dropped < skip and dropped < len(rows) and time_of(rows[dropped]) == from_time:
        dropped += 1
    page = list(rows[dropped : dropped + limit])
    if len(rows) <= dropped + limit or not page:
        return page, None
    last = time_of(page[-1])
    at_last = sum(1 for r in rows[: dropped + limit] if time_of(r) == last)
    return page, {"t": format_rfc3339(last), "n": at_last}


FeedPosition = tuple[str | None, int]
"""(the feed's own resume token, None for its first page; how many items of that page were served)."""


def feed_position(raw: list[Any] | None) -> FeedPosition:
    if raw is None:
        return None, 0
    try:
        token, skip = raw
        if (token is not None and not isinstance(token, str)) or not isinstance(skip, int) or skip < 0:
            raise ValueError
    except (TypeError, ValueError):
        raise _bad() from None
    return token, skip


def merge_feeds(
    feeds: Sequence[tuple[str, FeedPosition, ChangesPage]], limit: int
) -> tuple[list[Change], dict[str, list[Any] | None]]:
    """Merge each feed's current page (from its position on) ascending by (changed_at, id), at most
    `limit` items, never past the last item of a page whose feed has more pages (what follows it is
    not known yet). Returns the items and each feed's next position (None: that feed is done)."""
    rest = {name: page.items[skip:] for name, (_, skip), page in feeds}
    horizon = min(
        ((page.items[-1].changed_at, page.items[-1].id) for _, _, page in feeds if page.next_cursor and page.items),
        default=None,
    )
    tagged = heapq.merge(
        *([((c.changed_at, c.id), name, c) for c in items] for name, items in rest.items()),
        key=lambda t: t[0],
    )
    taken: list[Change] = []
    used: dict[str, int] = dict.fromkeys(rest, 0)
    for position, name, change in tagged:
        if len(taken) >= limit or (horizon is not None and position > horizon):
            break
        taken.append(change)
        used[name] += 1
    moved: dict[str, list[Any] | None] = {}
    for name, (token, skip), page in feeds:
        served = skip + used[name]
        if served < len(page.items):
            moved[name] = [token, served]
        else:
            moved[name] = [page.next_cursor, 0] if page.next_cursor else None
    return taken, moved
