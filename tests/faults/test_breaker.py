"""Guarantee 1: a failing channel cools down (open), gets one probe after the cooldown (half-open) and
comes back by itself (closed); admins see each state at GET /api/admin/channels/state.

Failover before the first byte for every fault is proven in tests/test_channels.py."""

from __future__ import annotations

import asyncio

from tests.faults.conftest import MODEL, call_text
from tests.mock_upstream import MockUpstream


async def states(http, relay, token: str) -> dict[str, dict]:
    async with http.get(relay.url + "/api/admin/channels/state", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200, await r.text()
        return {c["name"]: c for c in (await r.json())["data"]}


async def test_breaker_opens_probes_and_closes_by_itself(start_relay, http):
    relay = await start_relay(channel_failures_to_cool=2, channel_cooldown_seconds=0.6)
    async with MockUpstream("fail-500") as flaky, MockUpstream() as good:
        await relay.channel("flaky", flaky.base_url, MODEL, priority=10, api_key="sk-flaky-upstream-key-123456")
        await relay.channel("good", good.base_url, MODEL, priority=1)
        user = await relay.user("u@example.com", limit=None)
        admin = await relay.user("admin@example.com", admin=True)

        assert (await states(http, relay, admin))["flaky"]["state"] == "closed"
        for _ in range(2):  # each call fails over to the good channel: one clean reply
            status, body = await call_text(http, relay.url, "openai", user, stream=False)
            assert status == 200 and b"echo: hi" in body
        assert len(flaky.requests) == 2
        seen = (await states(http, relay, admin))["flaky"]
        assert (seen["state"], seen["failures"]) == ("open", 2) and 0 < seen["retry_in"] <= 0.6
        assert seen["api_key"] != "sk-flaky-upstream-key-123456" and "123456" not in seen["api_key"][:-4]

        await call_text(http, relay.url, "light", user, stream=False)
        assert len(flaky.requests) == 2  # open: not even tried

        flaky.mode = "ok"  # the upstream recovers
        await asyncio.sleep(0.7)
        assert (await states(http, relay, admin))["flaky"]["state"] == "half-open"
        status, _ = await call_text(http, relay.url, "light", user, stream=True)
        assert status == 200 and len(flaky.requests) == 3  # the probe went to flaky and succeeded
        seen = (await states(http, relay, admin))["flaky"]
        assert (seen["state"], seen["failures"]) == ("closed", 0)


async def test_failed_probe_opens_again(start_relay, http):
    relay = await start_relay(channel_failures_to_cool=1, channel_cooldown_seconds=0.3)
    async with MockUpstream("fail-503") as flaky, MockUpstream() as good:
        await relay.channel("flaky", flaky.base_url, MODEL, priority=10)
        await relay.channel("good", good.base_url, MODEL, priority=1)
        user = await relay.user("u@example.com", limit=None)
        admin = await relay.user("admin@example.com", admin=True)
        await call_text(http, relay.url, "openai", user, stream=False)
        assert (await states(http, relay, admin))["flaky"]["state"] == "open"
        await asyncio.sleep(0.35)
        status, _ = await call_text(http, relay.url, "openai", user, stream=True)  # probe fails, good answers
        assert status == 200 and len(flaky.requests) == 2
        assert (await states(http, relay, admin))["flaky"]["state"] == "open"


async def test_channel_state_is_admin_only(relay, http):
    user = await relay.user("u@example.com")
    url = relay.url + "/api/admin/channels/state"
    async with http.get(url) as r:
        assert r.status == 401 and (await r.json())["error"]["code"] == "missing_api_key"
    async with http.get(url, headers={"Authorization": f"Bearer {user}"}) as r:
        assert r.status == 403 and (await r.json())["error"]["code"] == "admin_only"
    async with http.get(url, headers={"Authorization": "Bearer sk-00000000-0000-4000-8000-000000000000"}) as r:
        assert r.status == 401
