"""A token revoked, an account disabled or a limit changed through one process (or the CLI) stops
working on every other process within seconds, although tokens stay cached in memory: the change is
broadcast over Redis. The token cache TTL is set to 5 minutes here, so only the broadcast can do it."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from lightrelay.services import accounts
from tests.scale.conftest import REDIS_URL, Database, Relays, light_call

MODEL = "gpt-3.5-turbo-1106"


async def _until(http: aiohttp.ClientSession, urls: list[str], token: str, status: int, timeout: float = 3.0) -> float:
    """Seconds until every relay answers ``status`` for ``token``."""
    started = time.monotonic()
    while True:
        got = [await light_call(http, url, token) for url in urls]
        if all(s == status for s in got):
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, f"still {got} after {timeout}s"
        await asyncio.sleep(0.05)


async def test_changes_reach_every_process_within_seconds(pg: Database, redis_prefix, relays: Relays,
                                                          start_relay, mock_upstream):
    await pg.channel("mock", mock_upstream.base_url, MODEL)
    settings = {"database_url": pg.url, "redis_url": REDIS_URL, "redis_prefix": redis_prefix,
                "auth_cache_ttl": 300}
    procs = await asyncio.gather(relays.start(**settings), relays.start(**settings))
    # and one in this process, standing in for the console (which calls auth.invalidate() after a change)
    inproc = await start_relay(**settings, secret_key="scale-test-secret-0123456789")
    urls = [p.url for p in procs] + [inproc.url]
    tokens = {name: await pg.user(f"{name}@example.com", limit=100) for name in ("revoked", "disabled", "limited",
                                                                                    "console")}
    async with aiohttp.ClientSession() as http:
        for token in tokens.values():  # every token now cached as valid everywhere
            await _until(http, urls, token, 200)

        await asyncio.to_thread(relays.cli, "token", "revoke", tokens["revoked"], **settings)
        await _until(http, urls, tokens["revoked"], 401)

        await asyncio.to_thread(relays.cli, "user", "set", "disabled@example.com", "--disable", **settings)
        await _until(http, urls, tokens["disabled"], 403)

        await asyncio.to_thread(relays.cli, "user", "set", "limited@example.com", "--daily-limit", "0", **settings)
        await _until(http, urls, tokens["limited"], 429)

        # a change made through a running relay (the console path): revoke in the database, then invalidate
        await accounts.revoke_token(pg.engine, token=tokens["console"])
        inproc.lr.relay.auth.invalidate()
        await _until(http, urls, tokens["console"], 401)


async def test_without_a_broadcast_the_ttl_still_expires_entries(pg: Database, relays: Relays, mock_upstream):
    """No Redis: a revocation elsewhere takes effect within the cache TTL (the fallback)."""
    await pg.channel("mock", mock_upstream.base_url, MODEL)
    settings = {"database_url": pg.url, "auth_cache_ttl": 1}
    procs = await asyncio.gather(relays.start(**settings), relays.start(**settings))
    token = await pg.user("ttl@example.com", limit=100)
    async with aiohttp.ClientSession() as http:
        await _until(http, [p.url for p in procs], token, 200)
        await accounts.revoke_token(pg.engine, token=token)
        assert await _until(http, [p.url for p in procs], token, 401, timeout=3) <= 3
