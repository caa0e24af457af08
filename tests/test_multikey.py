"""Multi-key channels: keys used in turn; a revoked or exhausted key retires itself (with the reason, stored)
and the call moves to the next key before any byte reaches the caller; `channel enable-key` puts it back; a
channel whose keys are all retired is skipped like a cooling one."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from lightrelay.db.models import channel_keys
from tests.faults.conftest import MODEL, call_text
from tests.mock_providers import MockAnthropic, MockGemini
from tests.mock_upstream import MockUpstream
from tests.test_cli import cli
from tests.test_provider_anthropic import CLAUDE, chat, reply_text

KEYS = ["sk-ant-key-one-000001", "sk-ant-key-two-000002", "sk-ant-key-three-0003"]


async def stored(relay) -> dict[int, str | None]:
    async with relay.lr.engine.connect() as conn:
        rows = (await conn.execute(select(channel_keys.c.position, channel_keys.c.retired_reason))).all()
    return {p: r for p, r in rows}


async def wait_stored(relay, position: int) -> str:
    for _ in range(200):
        reason = (await stored(relay)).get(position)
        if reason:
            return reason
        await asyncio.sleep(0.01)
    raise AssertionError("the retirement was not stored")


@pytest.mark.parametrize("stream", [False, True])
async def test_revoked_key_loses_no_call(relay, http, stream):
    async with MockAnthropic() as up:
        up.keys = set(KEYS)
        up.revoked = {KEYS[0]}
        await relay.channel("claude", up.base_url, f"{MODEL}={CLAUDE}", type="anthropic", api_keys=KEYS)
        token = await relay.user("k@example.com", limit=None)
        results = await asyncio.gather(*(call_text(http, relay.url, "openai", token, f"q{i}", stream=stream)
                                         for i in range(12)))
        assert all(status == 200 and reply_text(raw) == f"echo: q{i}" for i, (status, raw) in enumerate(results))
        used = [rec.headers["x-api-key"] for rec in up.requests]
        assert KEYS[0] in used and len(used) == 12 + used.count(KEYS[0])  # each refusal was retried on another key
        before = len(up.requests)
        for _ in range(4):  # retired: never sent again; the others in turn
            assert (await call_text(http, relay.url, "openai", token, "x", stream=stream))[0] == 200
        later = [rec.headers["x-api-key"] for rec in up.requests[before:]]
        assert KEYS[0] not in later and later.count(KEYS[1]) == later.count(KEYS[2]) == 2
        reason = await wait_stored(relay, 0)
        assert reason.startswith("rejected by the upstream (401)") and "invalid x-api-key" in reason
        assert (await stored(relay))[1] is None


async def test_exhausted_balance_retires_and_enable_key_puts_it_back(relay, http):
    async with MockAnthropic() as up:
        up.keys = set(KEYS[:2])
        up.exhausted = {KEYS[0]}
        await relay.channel("claude", up.base_url, f"{MODEL}={CLAUDE}", type="anthropic", api_keys=KEYS[:2])
        token = await relay.user("k@example.com", limit=None)
        assert (await chat(http, relay, token, {"messages": [{"role": "user", "content": "hi"}]}))[0] == 200
        reason = await wait_stored(relay, 0)
        assert reason.startswith("quota or balance exhausted (400)") and "credit balance is too low" in reason

        _, out, _ = await cli(relay, "channel", "list")
        assert "#1=sk-…0001 (retired)" in out and "key #1 retired at" in out and "credit balance" in out
        assert "sk-ant-key-one-000001" not in out

        up.exhausted = set()  # the operator topped it up
        _, out, _ = await cli(relay, "channel", "enable-key", "claude", "1")
        assert "#1 back in use" in out
        await relay.lr.reload_channels()
        assert (await stored(relay))[0] is None
        for _ in range(2):
            assert (await chat(http, relay, token, {"messages": [{"role": "user", "content": "hi"}]}))[0] == 200
        assert {rec.headers["x-api-key"] for rec in up.requests[-2:]} == set(KEYS[:2])


async def test_all_keys_retired_is_skipped_like_a_cooling_channel(relay, http):
    async with MockAnthropic() as dead, MockUpstream() as good:
        dead.revoked = set(KEYS[:2])
        await relay.channel("dead", dead.base_url, f"{MODEL}={CLAUDE}", type="anthropic", api_keys=KEYS[:2],
                            priority=5)
        await relay.channel("good", good.base_url, MODEL, priority=1)
        token = await relay.user("k@example.com", limit=None)
        for _ in range(3):
            status, raw = await call_text(http, relay.url, "openai", token, "hi", stream=True)
            assert status == 200 and reply_text(raw) == "echo: hi"
        assert len(dead.requests) == 2  # each key tried once; then the channel is skipped
        assert relay.lr.router.snapshot()["dead"]["keys_left"] is False
        await wait_stored(relay, 0)  # retirements are written in the background
        await wait_stored(relay, 1)
        await relay.lr.reload_channels()  # the stored retirements keep it out after a reload too
        assert [r.channel for r in relay.lr.router.routes(MODEL)] == ["good"]


async def test_gemini_invalid_key_retires(relay, http):
    async with MockGemini() as up:
        up.keys = {"AIzaGood-000000000000000000000"}
        await relay.channel("gem", up.base_url, f"{MODEL}=gemini-2.5-flash", type="gemini",
                            api_keys=["AIzaBad-0000000000000000000000", "AIzaGood-000000000000000000000"])
        token = await relay.user("k@example.com")
        status, body = await chat(http, relay, token, {"messages": [{"role": "user", "content": "hi"}]})
        assert status == 200 and body["choices"][0]["message"]["content"] == "echo: hi"
        assert (await wait_stored(relay, 0)).startswith("rejected by the upstream (invalid key)")


async def test_key_file_and_openai_type(relay, http, tmp_path):
    async with MockUpstream() as up:
        keys = tmp_path / "keys.txt"
        keys.write_text("# two keys\nsk-file-key-000000001\n\nsk-file-key-000000002\n")
        await cli(relay, "channel", "add", "filed", "--base-url", up.base_url, "--models", MODEL,
                  "--api-keys-file", str(keys))
        await relay.lr.reload_channels()
        token = await relay.user("k@example.com", limit=None)
        for _ in range(4):
            assert (await chat(http, relay, token, {"messages": [{"role": "user", "content": "hi"}]}))[0] == 200
        sent = [rec.headers["Authorization"] for rec in up.requests]
        assert sent == ["Bearer sk-file-key-000000001", "Bearer sk-file-key-000000002"] * 2
