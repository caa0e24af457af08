"""Issue 13 across real relay processes sharing PostgreSQL (with and without Redis): extra calls,
redemption codes and a token's RPM stay exact under concurrent calls spread over processes."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp
import pytest

from lightrelay.services import accounts, redeem
from tests.scale.conftest import REDIS_URL, Database, Relays, light_call

MODEL = "gpt-3.5-turbo-1106"
APPUSE = "/api/light/exchangeCode/appUse"


def _settings(backend: str, pg: Database, prefix: str) -> dict:
    # (50 tokens no process has seen yet, from one address at once: past the unknown-token limiter's default)
    settings = {"database_url": pg.url, "usage_flush_seconds": 0.2, "rate_redeem": "1000/60",
                "rate_bad_token": "1000/60"}
    if backend == "redis":
        settings |= {"redis_url": REDIS_URL, "redis_prefix": prefix}
    return settings


async def _redeem(http: aiohttp.ClientSession, url: str, token: str, code: str) -> int:
    async with http.post(url + APPUSE, json={"token": token, "code": code}) as r:
        await r.read()
        return r.status


@pytest.mark.parametrize("backend", ["redis", "sql"])
async def test_daily_2_plus_5_extra_admit_exactly_7_over_processes(backend, pg: Database, redis_prefix,
                                                                   relays: Relays, mock_upstream):
    await pg.channel("mock", mock_upstream.base_url, MODEL)
    started = await asyncio.gather(*(relays.start(**_settings(backend, pg, redis_prefix)) for _ in range(2)))
    urls = [r.url for r in started]
    _, codes = await redeem.add_codes(pg.engine, calls=5)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        token = await pg.user("seven@example.com", limit=2)
        assert await _redeem(http, urls[0], token, codes[0]) == 200
        statuses = await asyncio.gather(*(light_call(http, urls[i % 2], token) for i in range(100)))
        assert Counter(statuses) == {200: 7, 429: 93}
        assert await pg.scalar("SELECT extra_calls FROM accounts WHERE email = 'seven@example.com'") == 0
        # a failed call gives its extra call back
        mock_upstream.mode = "fail-500"
        token2 = await pg.user("back@example.com", limit=0)
        _, codes = await redeem.add_codes(pg.engine, calls=1)
        assert await _redeem(http, urls[1], token2, codes[0]) == 200
        assert await light_call(http, urls[0], token2) == 502
        assert await pg.scalar("SELECT extra_calls FROM accounts WHERE email = 'back@example.com'") == 1


@pytest.mark.parametrize("backend", ["redis", "sql"])
async def test_one_code_50_requests_over_processes_credits_once(backend, pg: Database, redis_prefix,
                                                                relays: Relays):
    started = await asyncio.gather(*(relays.start(**_settings(backend, pg, redis_prefix)) for _ in range(2)))
    tokens = [await pg.user(f"c{i}@example.com") for i in range(50)]
    _, codes = await redeem.add_codes(pg.engine, calls=10)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        statuses = await asyncio.gather(*(_redeem(http, started[i % 2].url, t, codes[0])
                                          for i, t in enumerate(tokens)))
    assert Counter(statuses) == {200: 1, 409: 49}
    assert await pg.scalar("SELECT sum(extra_calls) FROM accounts") == 10


async def test_token_rpm_is_exact_across_processes_with_redis(pg: Database, redis_prefix, relays: Relays,
                                                              mock_upstream):
    await pg.channel("mock", mock_upstream.base_url, MODEL)
    started = await asyncio.gather(*(relays.start(**_settings("redis", pg, redis_prefix)) for _ in range(2)))
    account_id = await accounts.create_account(pg.engine, email="rpm@example.com", daily_limit=None)
    token = await accounts.add_token(pg.engine, account_id=account_id, limits=accounts.TokenLimits(rpm=5))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        statuses = await asyncio.gather(*(light_call(http, started[i % 2].url, token) for i in range(40)))
    assert Counter(statuses) == {200: 5, 429: 35}


async def test_usage_totals_search_and_prune_on_postgresql(pg: Database, redis_prefix, relays: Relays,
                                                           mock_upstream):
    await pg.channel("mock", mock_upstream.base_url, MODEL)
    started = await asyncio.gather(*(relays.start(**_settings("redis", pg, redis_prefix)) for _ in range(2)))
    token = await pg.user("pgusage@example.com", limit=20)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        statuses = await asyncio.gather(*(light_call(http, started[i % 2].url, token) for i in range(30)))
    assert Counter(statuses) == {200: 20, 429: 10}
    for _ in range(100):  # the relays write their usage batches every 0.2 s
        if await pg.scalar("SELECT count(*) FROM usage") == 30:
            break
        await asyncio.sleep(0.1)
    assert await pg.scalar("SELECT sum(calls) FROM usage_daily") == 30
    assert await pg.scalar("SELECT sum(calls) FROM usage_hourly") == 30
    assert await pg.scalar("SELECT sum(charged) FROM usage_daily") == 20
    settings = _settings("redis", pg, redis_prefix)
    out = relays.cli("usage", "pgusage@example.com", "--csv", "--status", "429", **settings)
    assert len(out.strip().splitlines()) == 1 + 10
    out = relays.cli("usage", "prune", "--before", "2999-01-01", **settings)
    assert "deleted 30" in out
    assert await pg.scalar("SELECT count(*) FROM usage") == 0
    assert await pg.scalar("SELECT sum(calls) FROM usage_daily") == 30


async def test_redeem_attempts_are_limited_across_processes_with_redis(pg: Database, redis_prefix, relays: Relays):
    settings = {**_settings("redis", pg, redis_prefix), "rate_redeem": "5/600"}
    started = await asyncio.gather(*(relays.start(**settings) for _ in range(2)))
    token = await pg.user("guess@example.com")
    async with aiohttp.ClientSession() as http:
        statuses = [await _redeem(http, started[i % 2].url, token, f"AAAAA-BBBBB-CCCCC-{i:05d}") for i in range(20)]
    assert Counter(statuses) == {404: 5, 429: 15}  # one count for both processes
