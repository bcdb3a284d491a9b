"""`fan_out`: one backend failing, even with a bug, never takes the others' answers down."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from app.core.fanout import fan_out
from app.infra.errors import UpstreamBadResponse, UpstreamRateLimited, UpstreamTimeout


@dataclass
class Named:
    name: str


async def test_an_unexpected_exception_is_that_backends_502_entry_logged_once(caplog):
    async def fetch(b: Named) -> str:
        if b.name == "buggy":
            raise OverflowError("date value out of range")
        return b.name

    with caplog.at_level(logging.ERROR, logger="app.core.fanout"):
        good, errors = await fan_out([Named("fine"), Named("buggy")], fetch)
    assert good == ["fine"]
    assert [(e.backend, e.status) for e in errors] == [("buggy", 502)]
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [OverflowError]


async def test_every_backend_failing_raises_the_most_telling_error():
    async def fetch(b: Named) -> str:
        if b.name == "slow":
            raise UpstreamTimeout("slow", backend="slow")
        raise UpstreamRateLimited("throttled", backend="busy", retry_after=7)

    with pytest.raises(UpstreamRateLimited):
        await fan_out([Named("slow"), Named("busy")], fetch)


async def test_a_bug_in_every_backend_is_a_502_not_a_500():
    async def fetch(b: Named) -> str:
        raise KeyError("oops")

    with pytest.raises(UpstreamBadResponse):
        await fan_out([Named("a"), Named("b")], fetch)
