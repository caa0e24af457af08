"""The built-in local model answering for real through the relay (no channel configured)."""

from __future__ import annotations

import openai
import pytest

from lightrelay.client import LightFrameParser

pytestmark = pytest.mark.localmodel


@pytest.fixture
async def local_relay(start_relay):
    relay = await start_relay(local_model="auto", local_max_tokens=12)
    await relay.lr.router.routes("gpt-3.5-turbo-1106")[0].provider.warmup()
    return relay


async def test_light_non_stream_and_stream(local_relay, http):
    relay = local_relay
    token = await relay.user("local@example.com", limit=10)
    status, body = await relay.light(http, {"token": token, "messages": [{"role": "user", "content": "Say hello."}],
                                            "params": {"max_tokens": 8, "temperature": 0}})
    assert status == 200, body
    completion = body["data"]["completion"]
    assert completion["choices"][0]["message"]["content"].strip()
    assert 0 < completion["usage"]["completion_tokens"] <= 8
    assert completion["usage"]["prompt_tokens"] > 5
    assert body["data"]["info"]["numOfOneDayAlreadyCallApi"] == 1

    body = {"token": token, "model": "gpt-3.5-turbo-16k",
            "messages": [{"role": "user", "content": "Count to five."}],
            "params": {"stream": True, "max_tokens": 10, "include_usage": True}}
    parser, events = LightFrameParser(), []
    async with http.post(relay.url + "/api/light/chat/createChatCompletion", json=body) as r:
        assert r.status == 200
        async for piece in r.content.iter_any():
            events += parser.feed(piece)
    events += parser.close()
    assert events[0][0] == "header" and events[0][1]["model"] == "gpt-3.5-turbo-16k"
    assert "".join(v for k, v in events if k == "text").strip()
    assert events[-1][0] == "frame" and 0 < events[-1][1]["usage"]["completion_tokens"] <= 10


async def test_openai_sdk_against_local(local_relay):
    relay = local_relay
    token = await relay.user("local-sdk@example.com", limit=10)
    client = openai.AsyncOpenAI(base_url=relay.url + "/v1", api_key=token, max_retries=0)
    stream = await client.chat.completions.create(model="gpt-3.5-turbo-1106", messages=[
        {"role": "user", "content": "Hi"}], stream=True, max_tokens=6, stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage.completion_tokens > 0
    models = sorted([m.id async for m in client.models.list()])
    assert models == sorted(relay.settings.default_models)
    await client.close()
