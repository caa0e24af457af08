"""The daily count is exact under concurrency; failed calls are not charged; every call is recorded."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from lightrelay.db.models import usage

MSG = [{"role": "user", "content": "hello there"}]


async def _rows(relay) -> list[dict]:
    await relay.lr.recorder.flush()
    async with relay.lr.engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(select(usage).order_by(usage.c.id))).mappings()]


@pytest.mark.parametrize("stream", [False, True])
async def test_100_concurrent_calls_admit_exactly_10(relay, upstream, http, stream):
    await relay.channel("mock", upstream.base_url, "gpt-3.5-turbo-1106")
    upstream.chunk_delay = 0.005
    token = await relay.user("burst@example.com", limit=10)
    body = {"token": token, "messages": MSG, "params": {"stream": stream}}

    async def one() -> int:
        async with http.post(relay.url + "/api/light/chat/createChatCompletion", json=body) as r:
            await r.read()
            return r.status

    statuses = await asyncio.gather(*(one() for _ in range(100)))
    assert statuses.count(200) == 10
    assert statuses.count(429) == 90
    assert await relay.lr.relay.quota.used_today(1) == 10
    rows = await _rows(relay)
    assert sum(r["charged"] for r in rows) == 10
    assert len([r for r in rows if r["status"] == 429]) == 90


async def test_same_count_across_both_doors(relay, upstream, http):
    await relay.channel("mock", upstream.base_url, "gpt-3.5-turbo-1106")
    token = await relay.user("doors@example.com", limit=3)
    await relay.light(http, {"token": token, "messages": MSG})
    async with http.post(relay.url + "/v1/chat/completions", json={"model": "gpt-3.5-turbo-1106", "messages": MSG},
                         headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200
        assert r.headers["x-ratelimit-remaining-requests"] == "1"
    _, body = await relay.light(http, {"token": token, "messages": MSG})
    assert body["data"]["info"]["numOfOneDayAlreadyCallApi"] == 3


@pytest.mark.parametrize("mode", ["fail-500", "fail-429", "malformed", "drop"])
async def test_failed_calls_are_not_charged(relay, upstream, http, mode):
    await relay.channel("mock", upstream.base_url, "gpt-3.5-turbo-1106")
    upstream.mode = mode
    token = await relay.user("fail@example.com", limit=10)
    status, body = await relay.light(http, {"token": token, "messages": MSG})
    assert status == 502 and body["code"] == 502
    assert await relay.lr.relay.quota.used_today(1) == 0
    rows = await _rows(relay)
    assert rows[-1]["status"] == 502 and rows[-1]["charged"] is False and rows[-1]["error"]


async def test_usage_row_fields(relay, upstream, http):
    await relay.channel("mock", upstream.base_url, "gpt-3.5-turbo-1106")
    token = await relay.user("rec@example.com", limit=10)
    await relay.light(http, {"token": token, "messages": MSG})
    async with http.post(relay.url + "/v1/chat/completions",
                         json={"model": "gpt-3.5-turbo-1106", "messages": MSG, "stream": True},
                         headers={"Authorization": f"Bearer {token}"}) as r:
        await r.read()
    light_row, sse_row = await _rows(relay)
    assert light_row["door"] == "light" and light_row["stream"] is False
    assert sse_row["door"] == "openai" and sse_row["stream"] is True
    for row in (light_row, sse_row):
        assert row["account_id"] == 1 and row["token_id"] == 1
        assert row["model"] == "gpt-3.5-turbo-1106" and row["channel"] == "mock"
        assert row["status"] == 200 and row["charged"] is True and row["partial"] is False
        assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
        assert row["total_ms"] > 0
        assert row["day"] == relay.lr.clock.today()
    assert light_row["first_byte_ms"] is None
    assert 0 < sse_row["first_byte_ms"] <= sse_row["total_ms"]


async def test_usage_counted_with_openai_tokenizer_when_upstream_is_silent(relay, upstream, http):
    from lightrelay import tokens

    await relay.channel("mock", upstream.base_url, "gpt-3.5-turbo-1106")
    upstream.mode = "no-usage"
    token = await relay.user("count@example.com")
    _, body = await relay.light(http, {"token": token, "messages": MSG})
    u = body["data"]["completion"]["usage"]
    assert u["completion_tokens"] == tokens.count_text("echo: hello there", "gpt-3.5-turbo-1106") == 4  # echo|:| hello| there
    assert u["prompt_tokens"] == tokens.count_messages(MSG, "gpt-3.5-turbo-1106") == 9  # OpenAI cookbook formula


async def test_usage_rows_flushed_on_shutdown(start_relay, upstream, http):
    relay = await start_relay(usage_flush_seconds=3600)  # never by timer: only the shutdown flush writes
    await relay.channel("mock", upstream.base_url, "gpt-3.5-turbo-1106")
    token = await relay.user("flush@example.com")
    for _ in range(3):
        await relay.light(http, {"token": token, "messages": MSG})
    engine_url = relay.settings.db_url
    await relay.stop()
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(engine_url)
    async with engine.connect() as conn:
        n = len((await conn.execute(select(usage.c.id))).all())
    await engine.dispose()
    assert n == 3
