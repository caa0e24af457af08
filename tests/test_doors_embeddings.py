"""The embeddings door (``POST /v1/embeddings``), driven by the official ``openai`` package."""

from __future__ import annotations

import openai
import pytest
from sqlalchemy import select

from lightrelay.db.models import usage


@pytest.fixture
async def sdk(relay, upstream):
    await relay.channel("mock", upstream.base_url, "text-embedding-3-small")
    token = await relay.user("embed@example.com", limit=3)
    client = openai.AsyncOpenAI(base_url=relay.url + "/v1", api_key=token, max_retries=0)
    yield relay, upstream, client
    await client.close()


async def last_row(relay):
    await relay.lr.recorder.flush()
    async with relay.lr.engine.connect() as conn:
        return (await conn.execute(select(usage).order_by(usage.c.id.desc()))).mappings().first()


async def test_strings_floats_and_base64(sdk):
    relay, upstream, client = sdk
    floats = await client.embeddings.create(model="text-embedding-3-small", input=["hello", "world"],
                                            encoding_format="float", dimensions=4)
    assert [d.index for d in floats.data] == [0, 1] and all(len(d.embedding) == 4 for d in floats.data)
    assert floats.model == "text-embedding-3-small" and floats.usage.prompt_tokens == 4
    sent = upstream.requests[-1].body
    assert sent == {"model": "text-embedding-3-small", "input": ["hello", "world"], "encoding_format": "float",
                    "dimensions": 4}
    # the SDK asks for base64 by default and decodes it: the same vectors come back
    decoded = await client.embeddings.create(model="text-embedding-3-small", input=["hello", "world"], dimensions=4)
    assert upstream.requests[-1].body["encoding_format"] == "base64"
    for got, want in zip(decoded.data, floats.data, strict=True):
        assert got.embedding == pytest.approx(want.embedding, abs=1e-6)
    row = await last_row(relay)
    assert row["door"] == "embeddings" and row["charged"] and row["prompt_tokens"] == 4


async def test_token_arrays_and_one_call_per_request(sdk):
    relay, upstream, client = sdk
    reply = await client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3], [4, 5]],
                                           encoding_format="float")
    assert len(reply.data) == 2 and reply.usage.prompt_tokens == 5
    assert upstream.requests[-1].body["input"] == [[1, 2, 3], [4, 5]]
    await client.embeddings.create(model="text-embedding-3-small", input="one", encoding_format="float")
    await client.embeddings.create(model="text-embedding-3-small", input="two", encoding_format="float")
    with pytest.raises(openai.RateLimitError):  # limit 3: three requests, whatever their inputs
        await client.embeddings.create(model="text-embedding-3-small", input="three", encoding_format="float")


async def test_failover_and_bad_input(relay, upstream):
    await relay.channel("broken", upstream.base_url, "text-embedding-3-small=fail-500", priority=10)
    await relay.channel("good", upstream.base_url, "text-embedding-3-small", priority=0)
    token = await relay.user("embed2@example.com", limit=5)
    client = openai.AsyncOpenAI(base_url=relay.url + "/v1", api_key=token, max_retries=0)
    try:
        reply = await client.embeddings.create(model="text-embedding-3-small", input="x", encoding_format="float")
        assert len(reply.data) == 1
        assert [r.body["model"] for r in upstream.requests] == ["fail-500", "text-embedding-3-small"]
        with pytest.raises(openai.BadRequestError) as err:
            await client.embeddings.create(model="text-embedding-3-small", input=[])
        assert err.value.body["param"] == "input"
        with pytest.raises(openai.NotFoundError):
            await client.embeddings.create(model="nope", input="x")
    finally:
        await client.close()


async def test_upstream_down_is_refunded(sdk):
    relay, upstream, client = sdk
    upstream.mode = "fail-503"
    with pytest.raises(openai.APIStatusError) as err:
        await client.embeddings.create(model="text-embedding-3-small", input="x", encoding_format="float")
    assert err.value.status_code == 502
    row = await last_row(relay)
    assert row["door"] == "embeddings" and not row["charged"]
