"""The legacy completions door (``POST /v1/completions``), driven by the official ``openai`` package."""

from __future__ import annotations

import openai
import pytest
from sqlalchemy import select

from lightrelay.db.models import usage


@pytest.fixture
async def sdk(relay, upstream):
    await relay.channel("mock", upstream.base_url, "gpt-3.5-turbo-instruct=gpt-3.5-turbo")
    token = await relay.user("legacy@example.com", limit=10)
    client = openai.AsyncOpenAI(base_url=relay.url + "/v1", api_key=token, max_retries=0)
    yield relay, upstream, client
    await client.close()


async def test_create(sdk):
    relay, upstream, client = sdk
    done = await client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi", max_tokens=20,
                                           temperature=0, stop="\n", n=2)
    assert done.object == "text_completion" and done.model == "gpt-3.5-turbo-instruct"
    assert [c.text for c in done.choices] == ["echo: Say hi", "echo#1: Say hi"]
    assert done.choices[0].finish_reason == "stop" and done.usage.completion_tokens > 0
    sent = upstream.requests[-1].body
    assert sent["messages"] == [{"role": "user", "content": "Say hi"}]
    assert sent["model"] == "gpt-3.5-turbo" and sent["stop"] == ["\n"] and sent["max_tokens"] == 20 and sent["n"] == 2
    await relay.lr.recorder.flush()
    async with relay.lr.engine.connect() as conn:
        row = (await conn.execute(select(usage).order_by(usage.c.id.desc()))).mappings().first()
    assert row["door"] == "completion" and row["charged"]


async def test_stream_with_usage(sdk):
    _, upstream, client = sdk
    upstream.chunk_size = 2
    stream = await client.completions.create(model="gpt-3.5-turbo-instruct", prompt="abc", stream=True,
                                             stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "echo: abc"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


async def test_unsupported(sdk):
    _, upstream, client = sdk
    with pytest.raises(openai.BadRequestError) as err:
        await client.completions.create(model="gpt-3.5-turbo-instruct", prompt="x", echo=True)
    assert err.value.body["param"] == "echo"
    with pytest.raises(openai.BadRequestError) as err:
        await client.completions.create(model="gpt-3.5-turbo-instruct", prompt=["a", "b"])
    assert err.value.body["param"] == "prompt"
    assert upstream.requests == []


async def test_upstream_failure_mid_stream(sdk):
    relay, upstream, client = sdk
    upstream.mode = "cut"
    stream = await client.completions.create(model="gpt-3.5-turbo-instruct", prompt="hello world", stream=True)
    async with stream:  # the SDK raises mid-iteration: close its HTTP stream here, not at garbage collection
        with pytest.raises(openai.APIError) as err:
            async for _ in stream:
                pass
    assert err.value.body["type"] == "upstream_error"
    await relay.lr.recorder.flush()
    async with relay.lr.engine.connect() as conn:
        row = (await conn.execute(select(usage).order_by(usage.c.id.desc()))).mappings().first()
    assert row["door"] == "completion" and row["partial"] and not row["charged"]
