"""Issue 11's image limit across real relay processes sharing PostgreSQL (with and without Redis for
the call count): concurrent image requests spread over two processes make exactly the limit."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.scale.conftest import REDIS_URL, Database, Relays

MODEL = "dall-e-3"


@pytest.mark.parametrize("backend", ["redis", "sql"])
async def test_image_limit_exact_over_processes(backend, pg: Database, redis_prefix, relays: Relays, mock_upstream):
    await pg.channel("mock", mock_upstream.base_url, MODEL)
    settings = {"database_url": pg.url, "default_image_limit": 7}
    if backend == "redis":
        settings |= {"redis_url": REDIS_URL, "redis_prefix": redis_prefix}
    started = await asyncio.gather(*(relays.start(**settings) for _ in range(2)))
    token = await pg.user("images@example.com", limit=None)

    async def generate(http: aiohttp.ClientSession, i: int) -> int:
        async with http.post(started[i % 2].url + "/v1/images/generations", headers={"Authorization": f"Bearer {token}"},
                             json={"model": MODEL, "prompt": f"p{i}", "n": 2}) as r:
            await r.read()
            return r.status

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        statuses = await asyncio.gather(*(generate(http, i) for i in range(16)))
    assert sorted(statuses) == [200] * 3 + [429] * 13  # 3 × 2 images fit in 7, a fourth would make 8
    assert await pg.scalar("SELECT count FROM image_counts") == 6
