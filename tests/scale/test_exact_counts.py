"""The daily count stays exact across real relay processes sharing PostgreSQL (and Redis):
hundreds of concurrent calls spread over several processes at a limit of 10 — exactly 10 pass."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.scale.conftest import REDIS_URL, Database, Relays, light_call

CALLS = 300
MODEL = "gpt-3.5-turbo-1106"


async def _burst(http: aiohttp.ClientSession, urls: list[str], token: str, n: int) -> list[int]:
    return await asyncio.gather(*(light_call(http, urls[i % len(urls)], token) for i in range(n)))


async def _eventually(fn, expect, timeout: float = 5.0):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while True:
        value = await fn()
        if value == expect or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("backend", ["redis", "sql"])
async def test_hundreds_of_calls_over_processes_admit_exactly_10(backend, pg: Database, redis_prefix, relays: Relays,
                                                                  mock_upstream):
    await pg.channel("mock", mock_upstream.base_url, MODEL)
    settings = {"database_url": pg.url, "usage_flush_seconds": 0.2}
    if backend == "redis":
        settings |= {"redis_url": REDIS_URL, "redis_prefix": redis_prefix}
    # three processes in all: one `serve --workers 2` and one single-process `serve`
    started = await asyncio.gather(relays.start(workers=2, **settings), relays.start(**settings))
    urls = [r.url for r in started]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        for round_ in range(3):  # every run: three accounts, one after the other, same processes
            token = await pg.user(f"burst{round_}@example.com", limit=10)
            statuses = await _burst(http, urls, token, CALLS)
            assert Counter(statuses) == {200: 10, 429: CALLS - 10}
            account = await pg.scalar("SELECT id FROM accounts WHERE email = $1", f"burst{round_}@example.com")
            # the durable record: daily_counts (the authority for sql, the mirror for redis) and usage rows
            count = await _eventually(lambda a=account: pg.scalar(
                "SELECT count FROM daily_counts WHERE account_id = $1", a), 10)
            assert count == 10
            charged = await _eventually(lambda a=account: pg.scalar(
                "SELECT count(*) FROM usage WHERE account_id = $1 AND charged", a), 10)
            assert charged == 10
        if backend == "redis":  # `serve --workers 2`: /metrics sums every worker (multiprocess mode)
            async with http.get(urls[0] + "/metrics") as r:
                text = await r.text()
            calls = sum(s.value for f in text_string_to_metric_families(text) if f.name == "lightrelay_calls"
                        for s in f.samples if s.name == "lightrelay_calls_total")
            assert calls == 3 * CALLS // 2
