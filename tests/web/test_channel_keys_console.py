"""The admin channel page shows why a channel or a key is out, and puts a retired key back (issue 12)."""

from __future__ import annotations

import asyncio

from lightrelay.services.channels import get_channel
from tests.mock_providers import MockAnthropic

PASSWORD = "correct horse 42"
KEYS = ["sk-ant-console-key-0001", "sk-ant-console-key-0002"]


async def test_retired_key_and_breaker_reason_on_the_channel_page(start_relay, visitor, http) -> None:
    relay = await start_relay(channel_failures_to_cool=1)
    async with MockAnthropic() as up:
        up.revoked = {KEYS[0]}
        await relay.channel("claude", up.base_url, "gpt-3.5-turbo-1106=claude-sonnet-4-5", type="anthropic",
                            api_keys=KEYS)
        token = await relay.user("u@example.com")
        status, _ = await relay.light(http, {"token": token, "messages": [{"role": "user", "content": "hi"}]})
        assert status == 200  # the revoked key was retired, the second one answered
        for _ in range(100):  # the retirement is stored in the background
            if (await get_channel(relay.lr.engine, name="claude"))["keys"][0]["retired_reason"]:
                break
            await asyncio.sleep(0.01)
        await relay.user("admin@example.com", admin=True, password=PASSWORD)
        page = await visitor(relay)
        await page.login("admin@example.com", PASSWORD)
        await page.get("/admin/channels")
        assert page.status == 200
        assert 'data-key="1"' in page.text and "invalid x-api-key" in page.text and "已停用" in page.text
        assert KEYS[0] not in page.text and KEYS[1] not in page.text  # masked
        channel_id = (await get_channel(relay.lr.engine, name="claude"))["id"]

        up.revoked = set()
        await page.post(f"/admin/channels/{channel_id}/keys/1/enable")
        assert page.status == 200 and "invalid x-api-key" not in page.text
        assert (await get_channel(relay.lr.engine, name="claude"))["keys"][0]["retired_reason"] is None
        assert relay.lr.router.snapshot()["claude"]["retired_keys"] == []

        up.mode = "overloaded"  # one failure opens the breaker here: the page says why
        status, _ = await relay.light(http, {"token": token, "messages": [{"role": "user", "content": "hi"}]})
        assert status == 502
        await page.get("/admin/channels")
        assert "冷却中" in page.text and "upstream answered 529: Overloaded" in page.text


async def test_add_form_takes_a_type_several_keys_and_an_api_version(start_relay, visitor, http) -> None:
    from tests.mock_providers import MockAzure

    relay = await start_relay()
    await relay.user("admin@example.com", admin=True, password=PASSWORD)
    page = await visitor(relay)
    await page.login("admin@example.com", PASSWORD)
    await page.get("/admin/channels")
    async with MockAzure() as up:
        await page.post("/admin/channels", {"name": "az", "type": "azure", "base_url": up.base_url,
                                            "api_key": "azure-key-one-000001, azure-key-two-000002",
                                            "models": "gpt-3.5-turbo-1106=my-deployment", "priority": "0",
                                            "weight": "1", "timeout": "", "api_version": "2025-01-01-preview"})
        assert page.status == 200 and 'data-channel="az"' in page.text, page.text[-2000:]
        row = await get_channel(relay.lr.engine, name="az")
        assert (row["type"], row["api_version"], len(row["keys"])) == ("azure", "2025-01-01-preview", 2)
        token = await relay.user("u@example.com")
        for _ in range(2):
            status, _ = await relay.light(http, {"token": token, "messages": [{"role": "user", "content": "hi"}]})
            assert status == 200
        assert [(c.deployment, c.api_version, c.api_key) for c in up.azure] == [
            ("my-deployment", "2025-01-01-preview", "azure-key-one-000001"),
            ("my-deployment", "2025-01-01-preview", "azure-key-two-000002")]
