import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from app.backends.waltero.feed import ChangesCursor, OrgBatch, merge_feeds
from app.backends.waltero.shapes import AuditChange
from app.infra.errors import InvalidRequest

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def _change(change_id: str, minutes: int) -> AuditChange:
    return AuditChange(
        id=change_id,
        device_id="d",
        timestamp=T0,
        previous_value=1.0,
        new_value=2.0,
        actor="user",
        changed_at=T0 + timedelta(minutes=minutes),
    )


def test_cursor_round_trip() -> None:
    cursor = ChangesCursor(since=T0, after={"org-b": (T0 + timedelta(seconds=1.5), "x"), "org-a": (T0, "y")})
    text = cursor.encode()
    assert "=" not in text
    assert "/" not in text
    assert "+" not in text
    assert ChangesCursor.decode(text) == cursor


def _b64(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


@pytest.mark.parametrize(
    "text",
    [
        "not a cursor!",
        "",
        _b64([1, 2]),
        _b64({"v": 2, "s": "2026-05-01T00:00:00Z", "a": {}}),
        _b64({"v": 1, "s": "yesterday", "a": {}}),
        _b64({"v": 1, "s": "2026-05-01T00:00:00Z", "a": []}),
        _b64({"v": 1, "s": "2026-05-01T00:00:00Z", "a": {"o": ["2026-05-01T00:00:00Z"]}}),
        _b64({"v": 1, "s": "2026-05-01T00:00:00Z", "a": {"o": ["2026-05-01T00:00:00Z", 5]}}),
        _b64({"v": 1, "a": {}}),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_garbled_cursor_is_invalid_request(text: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        ChangesCursor.decode(text)
    assert caught.value.field == "cursor"


def test_merge_interleaves_and_records_each_org_position() -> None:
    a = [_change("a1", 1), _change("a2", 3), _change("a3", 5)]
    b = [_change("b1", 2), _change("b2", 3), _change("b3", 9)]
    page, cursor = merge_feeds([OrgBatch("A", a, more=False), OrgBatch("B", b, more=False)], 4, ChangesCursor(T0))
    assert [c.id for c in page] == ["a1", "b1", "a2", "b2"]  # the tie at minute 3 orders by id
    assert cursor is not None
    assert cursor.after == {"A": (a[1].changed_at, "a2"), "B": (b[1].changed_at, "b2")}
    assert cursor.since == T0


def test_merge_keeps_positions_of_orgs_without_rows_in_the_page() -> None:
    start = ChangesCursor(T0, after={"B": (T0, "b0")})
    page, cursor = merge_feeds([OrgBatch("A", [_change("a1", 1)], more=True), OrgBatch("B", [], more=False)], 1, start)
    assert [c.id for c in page] == ["a1"]
    assert cursor is not None
    assert cursor.after["B"] == (T0, "b0")


def test_merge_ends_when_nothing_remains() -> None:
    page, cursor = merge_feeds([OrgBatch("A", [_change("a1", 1)], more=False)], 5, ChangesCursor(T0))
    assert [c.id for c in page] == ["a1"]
    assert cursor is None


def test_merge_continues_when_an_org_may_have_more() -> None:
    _, cursor = merge_feeds([OrgBatch("A", [_change("a1", 1)], more=True)], 5, ChangesCursor(T0))
    assert cursor is not None
    assert cursor.after == {"A": (T0 + timedelta(minutes=1), "a1")}
