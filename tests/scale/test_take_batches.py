"""The Redis takes of one event-loop turn go out as one script call (``PerTurn`` + ``TAKE_MANY``): exact,
in order, and a caller that leaves while its take is on the way gets it given back."""

from __future__ import annotations

import asyncio
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis

from lightrelay.clock import Clock
from lightrelay.db.redis_link import RedisLink
from lightrelay.services import accounts
from lightrelay.services.redis_quota import RedisCounter
from tests.scale.conftest import REDIS_URL, Database


async def counter_for(pg: Database, prefix: str) -> tuple[RedisCounter, RedisLink]:
    link = RedisLink(REDIS_URL, prefix=prefix, timeout=2.0)
    return RedisCounter(link, pg.engine, Clock(ZoneInfo("Asia/Shanghai"))), link


async def test_a_burst_is_one_script_call_and_admits_exactly_the_limit(pg: Database, redis_prefix: str):
    account = await accounts.create_account(pg.engine, email="b@example.com", daily_limit=30)
    counter, link = await counter_for(pg, redis_prefix)
    try:
        day = counter._clock.today()
        takes = await asyncio.gather(*(counter.take(account, day, 30, extra=False) for _ in range(100)))
        assert sorted(t[1] for t in takes if t[0] == "daily") == list(range(1, 31))
        assert sum(t[0] == "full" for t in takes) == 70
        assert counter._takes.batches == 2  # the first round (the key missing), then all seeded at once
        assert await counter.get(account, day) == 30
    finally:
        await counter.close()
        await link.close()


async def test_a_caller_who_leaves_while_its_take_is_on_the_way_gets_it_back(pg: Database, redis_prefix: str):
    account = await accounts.create_account(pg.engine, email="c@example.com", daily_limit=1000)
    counter, link = await counter_for(pg, redis_prefix)
    try:
        day = counter._clock.today()
        await counter.take(account, day, 1000)  # seeded: the next takes are one round trip each batch
        calls = [asyncio.ensure_future(counter.take(account, day, 1000)) for _ in range(40)]
        for _ in range(3):  # the batch is written to Redis, its answer not yet read
            await asyncio.sleep(0)
        assert counter._takes._sending, "the batch already came back: the test would prove nothing"
        for call in calls[::2]:
            call.cancel()
        results = await asyncio.gather(*calls, return_exceptions=True)
        await counter._takes.drain()
        kept = [r for r in results if isinstance(r, tuple)]
        assert len(kept) == 20 and all(r[0] == "daily" for r in kept)
        raw = aioredis.from_url(REDIS_URL)
        try:
            assert int(await raw.get(counter._key(account, day))) == 1 + 20
        finally:
            await raw.aclose()
    finally:
        await counter.close()
        await link.close()
