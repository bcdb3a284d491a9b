"""What comes back from Redis is validated as strictly as what comes from a vendor: an entry or a
token record with non-finite numbers, out-of-bounds times or a malformed shape is dropped, counted
(`facade_shared_cache_operations_total{outcome="corrupt"}`) and replaced by a fresh load; it is never
served and never a 500. A real redis-server, written to by hand."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import redis

from tests.integration.test_shared_tier import replicas, sample
from tests.support.redis_server import RedisServer

TODAY = datetime.now(UTC).date()
DAILY = {"backend": "waltero", "start": str(TODAY - timedelta(days=8)), "end": str(TODAY - timedelta(days=1))}
Rewrite = Callable[[dict[str, object], bytes], tuple[dict[str, object], bytes]]


def header(**changes: object) -> Rewrite:
    return lambda meta, body: ({**meta, **changes}, body)


def body(old: bytes, new: bytes) -> Rewrite:
    return lambda meta, value: (meta, re.sub(old, new, value, count=1))


GARBAGE: dict[str, Rewrite] = {
    "fresh_until Infinity": header(f=math.inf),
    "fresh_until 1e300": header(f=1e300, s=1e300),
    "created NaN": header(c=math.nan),
    "created next year": header(c=time.time() + 365 * 86400, f=time.time() + 366 * 86400, s=time.time() + 367 * 86400),
    "stale before fresh": header(s=0),
    "fresh_until a string": header(f="soon"),
    "tags not a list": header(t="meter"),
    "consumption 1e999": body(rb'"consumption":[-0-9.e]+', b'"consumption":1e999'),
    "consumption NaN": body(rb'"consumption":[-0-9.e]+', b'"consumption":NaN'),
}


def rewrite_entries(server: RedisServer, rewrite: Rewrite) -> int:
    client = redis.Redis.from_url(server.url)
    try:
        changed = 0
        for key in client.scan_iter(match="facade:e:*daily*", count=1000):
            blob = client.get(key)
            assert blob is not None
            head, _, value = blob.partition(b"\n")
            meta, value = rewrite(json.loads(head), value)
            client.set(key, json.dumps(meta).encode() + b"\n" + value, keepttl=True)
            changed += 1
        return changed
    finally:
        client.close()


@pytest.mark.parametrize("garbage", list(GARBAGE))
async def test_an_invalid_entry_in_redis_is_dropped_counted_and_loaded_afresh(redis_server, garbage):
    async with replicas(redis_server.url, n=1) as ((a,), _):
        good = await a.get("/consumption/daily", params=DAILY)
        assert good.status_code == 200, good.text
        assert any(row["consumption"] is not None for row in good.json()["items"])
    assert rewrite_entries(redis_server, GARBAGE[garbage]) >= 1
    async with replicas(redis_server.url, n=1) as ((b,), waltero):
        calls = waltero.stats["requests"]
        answer = await b.get("/consumption/daily", params=DAILY)
        assert answer.status_code == 200, (garbage, answer.text)
        assert answer.json() == good.json()  # the vendor's rows, not Redis's garbage
        assert waltero.stats["requests"] > calls  # loaded afresh
        max_age = int(answer.headers["cache-control"].rpartition("max-age=")[2])
        assert 0 <= max_age <= 86400, answer.headers["cache-control"]
        metrics = (await b.get("/metrics")).text
        assert sample(metrics, 'facade_shared_cache_operations_total{operation="lookup",outcome="corrupt"}') >= 1
        again = await b.get("/consumption/daily", params=DAILY)  # the replacement is valid
        assert again.status_code == 200 and again.json() == good.json()


def rewrite_tokens(server: RedisServer, **fields: str) -> int:
    client = redis.Redis.from_url(server.url)
    try:
        keys = list(client.scan_iter(match="facade:token:*", count=1000))
        for key in keys:
            client.hset(key, mapping=fields)
        return len(keys)
    finally:
        client.close()


@pytest.mark.parametrize(
    "fields",
    [
        {"expires": "inf", "renew_at": "inf"},
        {"expires": "nan"},
        {"expires": "1e300", "renew_at": "1e300"},
        {"renew_at": "-5"},
        {"token": "abc\r\nX-Injected: 1"},
    ],
    ids=["inf", "nan", "1e300", "negative-renewal", "header-injection"],
)
async def test_an_invalid_token_record_is_dropped_and_the_replica_logs_in(redis_server, fields):
    async with replicas(redis_server.url, n=1) as ((a,), _):
        assert (await a.get("/meters", params={"backend": "waltero"})).status_code == 200
    assert rewrite_tokens(redis_server, **fields) == 1
    async with replicas(redis_server.url, n=1) as ((b,), waltero):  # "after a restart"
        assert (await b.get("/devices/waltero:11111111-1111-1111-1111-111111111101/status")).status_code == 200
        assert waltero.stats["login"] == 1  # the record was refused: this replica logged in itself
        backends = await b.get("/backends")
        assert backends.status_code == 200, backends.text
        [info] = [i for i in backends.json()["items"] if i["name"] == "waltero"]
        expires = info["token_expires_at"]
        assert expires is not None and expires < "2100", info
        metrics = await b.get("/metrics")
        assert metrics.status_code == 200
        # counted each time it was read (a record sealed with another credential is left to its owner)
        assert (
            sample(metrics.text, 'facade_shared_cache_operations_total{operation="token_get",outcome="corrupt"}') >= 1
        )
