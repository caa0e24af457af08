"""Callers that leave in droves (before or after the first byte) are not channel failures: the breaker stays closed."""

from __future__ import annotations

import asyncio

import aiohttp

MSG = [{"role": "user", "content": "hello there friend"}]

async def test_mass_client_cancellation_is_not_a_channel_failure(relay, upstream):
    await relay.channel("mock", upstream.base_url, "gpt-3.5-turbo-1106")
    upstream.chunk_size = 1
    upstream.chunk_delay = 0.01
    token = await relay.user("c@example.com", limit=None)

    async def one(i):
        async with aiohttp.ClientSession() as s:
            body = {"model": "gpt-3.5-turbo-1106", "messages": MSG, "stream": True}
            async with s.post(relay.url + "/v1/chat/completions", json=body,
                              headers={"Authorization": f"Bearer {token}"}) as r:
                if i % 2:
                    await r.content.readany()

    for _ in range(3):
        tasks = [asyncio.create_task(one(i)) for i in range(40)]
        await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.2)
    assert relay.lr.router.states()["mock"]["failures"] == 0
    assert relay.lr.router.states()["mock"]["state"] == "closed"
