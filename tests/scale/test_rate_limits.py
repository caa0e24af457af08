"""Rate limits are shared across processes through Redis: unknown API tokens sent to two relay
processes add up to one count per client address (in memory, each process would count only its own)."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.scale.conftest import REDIS_URL, Database, Relays, light_call

MODEL = "gpt-3.5-turbo-1106"
BAD = "sk-00000000-0000-4000-8000-0000000000{:02d}"


async def test_bad_token_limit_is_shared_across_processes(pg: Database, redis_prefix, relays: Relays,
                                                          mock_upstream):
    await pg.channel("mock", mock_upstream.base_url, MODEL)
    good = await pg.user("good@example.com", limit=100)
    settings = {"database_url": pg.url, "redis_url": REDIS_URL, "redis_prefix": redis_prefix,
                "rate_bad_token": "4/60"}
    a, b = await asyncio.gather(relays.start(**settings), relays.start(**settings))
    async with aiohttp.ClientSession() as http:
        assert await light_call(http, a.url, good) == 200
        # two unknown tokens to each process: four in all, the limit
        for i, relay in enumerate((a, b, a, b)):
            assert await light_call(http, relay.url, BAD.format(i)) == 401
        # now this address is refused everywhere, even with a good token, until the window ends
        for relay in (a, b):
            async with http.post(relay.url + "/api/light/chat/createChatCompletion",
                                 json={"token": good, "messages": [{"role": "user", "content": "x"}]}) as r:
                body = await r.json()
                assert r.status == 429 and body["code"] == 429
                assert 0 < int(r.headers["retry-after"]) <= 60


async def test_console_login_limit_is_shared_across_processes(pg: Database, redis_prefix, relays: Relays):
    await pg.user("someone@example.com")
    settings = {"database_url": pg.url, "redis_url": REDIS_URL, "redis_prefix": redis_prefix,
                "rate_login": "3/60"}
    a, b = await asyncio.gather(relays.start(**settings), relays.start(**settings))
    statuses = []
    for relay in (a, b, a, b):
        # a fresh visitor each time (no cookies shared): only the Redis count links the attempts
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(relay.url + "/login") as r:
                page = await r.text()
            csrf = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
            async with http.post(relay.url + "/login", data={"email": "someone@example.com",
                                                             "password": "wrong-password", "csrf": csrf}) as r:
                statuses.append(r.status)
    assert statuses[:3] == [400, 400, 400]
    assert statuses[3] == 429


async def test_a_blocked_address_learns_nothing_from_a_good_cached_token(pg: Database, redis_prefix, relays: Relays,
                                                                        mock_upstream):
    """With Redis, a known good token's call checks its address inside its own take (one round trip): while
    the address is blocked it is refused with 429 and charged nothing — and a call the token would have had
    refused for another reason (a model it may not use) gets the same 429, not a 403 that tells the token
    is good."""
    from lightrelay.services import accounts

    await pg.channel("mock", mock_upstream.base_url, f"{MODEL},gpt-other")
    account = await accounts.create_account(pg.engine, email="cached@example.com", daily_limit=100)
    good = await accounts.add_token(pg.engine, account_id=account, name="t",
                                    limits=accounts.TokenLimits(models=[MODEL]))
    relay = await relays.start(database_url=pg.url, redis_url=REDIS_URL, redis_prefix=redis_prefix,
                               rate_bad_token="3/60")
    async with aiohttp.ClientSession() as http:
        assert await light_call(http, relay.url, good) == 200  # the token is in the cache now
        for i in range(3):
            assert await light_call(http, relay.url, BAD.format(i)) == 401
        for model in (MODEL, "gpt-other"):
            async with http.post(relay.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {good}"},
                                 json={"model": model, "messages": [{"role": "user", "content": "x"}]}) as r:
                body = await r.json()
                assert r.status == 429 and body["error"]["code"] == "too_many_invalid_tokens", body
                assert 0 < int(r.headers["retry-after"]) <= 60
        await asyncio.sleep(1.5)  # the count's copy in the database catches up (LIGHTRELAY_USAGE_FLUSH_SECONDS)
    assert await pg.scalar("SELECT count FROM daily_counts WHERE account_id = $1", account) == 1
    assert len(mock_upstream.requests) == 1
