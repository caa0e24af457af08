"""The images door (``POST /v1/images/generations``) and the daily image limit, with the ``openai`` package."""

from __future__ import annotations

import asyncio
import base64

import openai
import pytest
from sqlalchemy import select

from lightrelay.db.models import image_counts, usage
from tests.test_cli import cli

MODEL = "dall-e-3"


@pytest.fixture
async def sdk(start_relay, upstream):
    relay = await start_relay(default_image_limit=5)
    await relay.channel("mock", upstream.base_url, f"{MODEL},gpt-3.5-turbo")
    token = await relay.user("painter@example.com", limit=100)
    client = openai.AsyncOpenAI(base_url=relay.url + "/v1", api_key=token, max_retries=0)
    yield relay, upstream, client, token
    await client.close()


async def images_today(relay) -> int:
    async with relay.lr.engine.connect() as conn:
        row = (await conn.execute(select(image_counts.c.count))).first()
    return row[0] if row else 0


async def test_generate_url_and_b64(sdk):
    relay, upstream, client, _ = sdk
    reply = await client.images.generate(model=MODEL, prompt="a red fox", n=2, size="1024x1024")
    assert [d.url for d in reply.data] == ["http://img.mock/0.png", "http://img.mock/1.png"]
    assert upstream.requests[-1].body == {"model": MODEL, "prompt": "a red fox", "n": 2, "size": "1024x1024"}
    b64 = await client.images.generate(model=MODEL, prompt="a cat", response_format="b64_json")
    assert base64.b64decode(b64.data[0].b64_json) == b"png#0:a cat"
    assert await images_today(relay) == 3  # charged per image
    await relay.lr.recorder.flush()
    async with relay.lr.engine.connect() as conn:
        row = (await conn.execute(select(usage).order_by(usage.c.id.desc()))).mappings().first()
    assert row["door"] == "images" and row["charged"]


async def test_limit_is_exact_under_concurrency(sdk):
    relay, _, client, _ = sdk
    results = await asyncio.gather(*(client.images.generate(model=MODEL, prompt=f"p{i}") for i in range(12)),
                                   return_exceptions=True)
    ok = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(ok) == 5 and len(refused) == 7
    assert refused[0].body["code"] == "image_limit_reached"
    assert refused[0].response.headers["retry-after"]
    assert await images_today(relay) == 5
    with pytest.raises(openai.RateLimitError):  # n larger than what is left
        await client.images.generate(model=MODEL, prompt="one more")


async def test_refunded_on_failure_and_past_the_limit(sdk):
    relay, upstream, client, _ = sdk
    upstream.mode = "fail-500"
    with pytest.raises(openai.APIStatusError):
        await client.images.generate(model=MODEL, prompt="x", n=3)
    assert await images_today(relay) == 0
    upstream.mode = "ok"
    with pytest.raises(openai.RateLimitError):
        await client.images.generate(model=MODEL, prompt="x", n=6)
    await client.images.generate(model=MODEL, prompt="x", n=5)
    assert await images_today(relay) == 5


async def test_no_image_channel_is_a_clear_404(sdk):
    _, upstream, client, _ = sdk
    with pytest.raises(openai.NotFoundError) as err:
        await client.images.generate(model="no-image-model", prompt="x")
    assert "no-image-model" in err.value.message
    with pytest.raises(openai.BadRequestError):
        await client.images.generate(model=MODEL, prompt="x", n=11)
    assert upstream.requests == []


async def test_user_set_image_limit_and_light_info(sdk, http):
    relay, _, client, token = sdk
    await client.images.generate(model=MODEL, prompt="x", n=2)
    status, body = await relay.light(http, {"token": token, "model": "gpt-3.5-turbo", "prompt": "hi"})
    assert status == 200
    info = body["data"]["info"]
    assert info["sdLimitCount"] == 5 and info["sdTextToImg"] == 2 and info["isSdHide"] == "2"

    await cli(relay, "user", "set", "painter@example.com", "--image-limit", "3")
    relay.lr.relay.auth.forget()
    await client.images.generate(model=MODEL, prompt="x")
    with pytest.raises(openai.RateLimitError):
        await client.images.generate(model=MODEL, prompt="x")
    async with http.post(f"{relay.url}/api/light/chat/createChatCompletion",
                         json={"token": token, "model": "gpt-3.5-turbo", "prompt": "hi",
                               "params": {"stream": True}}) as r:
        raw = (await r.read()).decode()
    assert '"sdLimitCount":3' in raw and '"sdTextToImg":3' in raw

    await cli(relay, "user", "set", "painter@example.com", "--image-limit", "0")
    relay.lr.relay.auth.forget()
    status, body = await relay.light(http, {"token": token, "model": "gpt-3.5-turbo", "prompt": "hi"})
    assert body["data"]["info"]["isSdHide"] == "1" and body["data"]["info"]["sdLimitCount"] == 0
    await cli(relay, "user", "set", "painter@example.com", "--image-limit", "unlimited")
    relay.lr.relay.auth.forget()
    await client.images.generate(model=MODEL, prompt="x", n=10)
    status, body = await relay.light(http, {"token": token, "model": "gpt-3.5-turbo", "prompt": "hi"})
    assert body["data"]["info"]["sdLimitCount"] == -1 and body["data"]["info"]["isSdHide"] == "2"
