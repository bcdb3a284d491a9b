"""One changes feed over every organization's data-audit feed (pure functions; no I/O).

Waltero has one data-audit feed per organization, each ascending by (`changed_at`, `id`). The facade
shows one feed, ascending by (`changed_at`, `id`) across organizations, with one opaque cursor.

The cursor records, per organization, the key (`changed_at`, `id`) of the last row already handed
out (plus the original `since`). Resuming an organization asks Waltero with `since` = that
`changed_at` (inclusive) and drops rows whose key is not greater, so a page can interleave
organizations freely without losing or repeating a row, and the position does not depend on Waltero's
own cursor or page size. An organization without a recorded key resumes from `since`.

Cursor text: URL-safe base64 of compact JSON `{"v": 1, "s": since, "a": {org: [changed_at, id]}}`.
A cursor that does not decode to exactly that raises `InvalidRequest`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime

from app.backends.waltero.shapes import AuditChange
from app.infra.errors import InvalidRequest
from app.infra.timeutil import format_rfc3339, parse_rfc3339

CURSOR_VERSION = 1

FeedKey = tuple[datetime, str]
"""(`changed_at`, `id`): the feed's order."""


def feed_key(change: AuditChange) -> FeedKey:
    return change.changed_at, change.id


@dataclass(frozen=True, slots=True)
class ChangesCursor:
    since: datetime
    after: dict[str, FeedKey] = field(default_factory=dict)
    """Per organization, the key of the last row handed out."""

    def encode(self) -> str:
        payload = {
            "v": CURSOR_VERSION,
            "s": format_rfc3339(self.since),
            "a": {org: [format_rfc3339(at), change_id] for org, (at, change_id) in sorted(self.after.items())},
        }
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> ChangesCursor:
        """Raises `InvalidRequest` (field `cursor`) for anything but a cursor made by `encode`."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            payload = json.loads(raw)
            if not isinstance(payload, dict) or payload.get("v") != CURSOR_VERSION:
                raise ValueError("wrong version")
            since = parse_rfc3339(payload["s"])
            after: dict[str, FeedKey] = {}
            positions = payload["a"]
            if not isinstance(positions, dict):
                raise ValueError("positions")
            for org, key in positions.items():
                if not (isinstance(key, list) and len(key) == 2 and all(isinstance(k, str) for k in key)):
                    raise ValueError("position")
                after[org] = (parse_rfc3339(key[0]), key[1])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise InvalidRequest(
                "cursor is not a valid Waltero changes cursor", field="cursor", backend="waltero"
            ) from None
        return cls(since=since, after=after)


@dataclass(frozen=True, slots=True)
class OrgBatch:
    """What one organization's feed gave past its position: rows ascending, and whether more may follow."""

    org_id: str
    items: list[AuditChange]
    more: bool


def merge_feeds(
    batches: list[OrgBatch], limit: int, cursor: ChangesCursor
) -> tuple[list[AuditChange], ChangesCursor | None]:
    """The first `limit` rows over all organizations by (`changed_at`, `id`), and the cursor that
    resumes right after them (None when no organization has anything left)."""
    tagged = sorted(
        ((feed_key(item), batch.org_id, item) for batch in batches for item in batch.items),
        key=lambda entry: entry[0],
    )
    page = tagged[:limit]
    after = dict(cursor.after)
    for key, org_id, _ in page:
        after[org_id] = key  # ascending, so the last assignment per org is its newest handed-out key
    remaining = len(tagged) > len(page) or any(batch.more for batch in batches)
    next_cursor = ChangesCursor(since=cursor.since, after=after) if remaining else None
    return [item for _, _, item in page], next_cursor
