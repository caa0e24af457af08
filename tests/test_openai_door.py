"""The OpenAI door, driven by the official ``openai`` package."""

from __future__ import annotations

import openai
import pytest


@pytest.fixture
async def sdk(relay, upstream):
    await relay.channel("mock", upstream.base_url, "gpt-3.5-turbo-1106,gpt-4")
    token = await relay.user("sdk@example.com", limit=10)
    client = openai.AsyncOpenAI(base_url=relay.url + "/v1", api_key=token, max_retries=0)
    yield relay, upstream, client
    await client.close()


MSG = [{"role": "user", "content": "hello"}]


async def test_create_and_headers(sdk):
    relay, _, client = sdk
    raw = await client.chat.completions.with_raw_response.create(model="gpt-3.5-turbo-1106", messages=MSG)
    assert raw.headers["x-ratelimit-limit-requests"] == "10"
    assert raw.headers["x-ratelimit-remaining-requests"] == "9"
    assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
    assert raw.headers["x-request-id"].startswith("req_")
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: hello"
    assert completion.model == "gpt-3.5-turbo-1106"
    assert completion.usage.total_tokens > 0


async def test_n2_and_params_passed_on(sdk):
    _, upstream, client = sdk
    completion = await client.chat.completions.create(model="gpt-3.5-turbo-1106", messages=MSG, n=2,
                                                      temperature=0.5, max_tokens=50, seed=7, stop=["zz"])
    assert [c.index for c in completion.choices] == [0, 1]
    sent = upstream.requests[-1].body
    assert sent["n"] == 2 and sent["temperature"] == 0.5 and sent["max_tokens"] == 50 and sent["seed"] == 7
    assert sent["stop"] == ["zz"]


async def test_stream(sdk):
    _, upstream, client = sdk
    upstream.chunk_size = 3
    stream = await client.chat.completions.create(model="gpt-3.5-turbo-1106", messages=MSG, stream=True)
    text, usage_seen = "", False
    async for chunk in stream:
        assert chunk.model == "gpt-3.5-turbo-1106"
        if chunk.usage:
            usage_seen = True
        for choice in chunk.choices:
            text += choice.delta.content or ""
    assert text == "echo: hello"
    assert not usage_seen  # not asked for
    sent = upstream.requests[-1].body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}  # the relay always asks


async def test_stream_include_usage_and_n2(sdk):
    _, _, client = sdk
    stream = await client.chat.completions.create(model="gpt-3.5-turbo-1106", messages=MSG, stream=True, n=2,
                                                  stream_options={"include_usage": True})
    texts: dict[int, str] = {}
    last = None
    async for chunk in stream:
        last = chunk
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert texts == {0: "echo: hello", 1: "echo#1: hello"}
    assert last is not None and last.choices == [] and last.usage.completion_tokens > 0


async def test_stream_usage_counted_when_upstream_gives_none(sdk):
    _, upstream, client = sdk
    upstream.mode = "no-usage"
    stream = await client.chat.completions.create(model="gpt-3.5-turbo-1106", messages=MSG, stream=True,
                                                  stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    usage = chunks[-1].usage
    from lightrelay import tokens

    assert usage.completion_tokens == tokens.count_text("echo: hello", "gpt-3.5-turbo-1106")
    assert usage.prompt_tokens == tokens.count_messages(MSG, "gpt-3.5-turbo-1106")


async def test_models_list(sdk):
    _, _, client = sdk
    models = [m.id async for m in client.models.list()]
    assert models == ["gpt-3.5-turbo-1106", "gpt-4"]


async def test_sdk_exception_classes(sdk):
    relay, _, client = sdk
    with pytest.raises(openai.NotFoundError) as e:
        await client.chat.completions.create(model="nope", messages=MSG)
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.PermissionDeniedError):
        await client.chat.completions.create(model="gpt-4", messages=MSG)
    with pytest.raises(openai.BadRequestError) as e:
        await client.chat.completions.create(model="gpt-3.5-turbo-1106", messages=[])
    assert e.value.param == "messages"
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="gpt-3.5-turbo-1106", messages=MSG, temperature=5)
    bad = openai.AsyncOpenAI(base_url=relay.url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await bad.chat.completions.create(model="gpt-3.5-turbo-1106", messages=MSG)
    with pytest.raises(openai.AuthenticationError):
        await bad.models.list()
    await bad.close()


async def test_rate_limit_error(relay, upstream):
    await relay.channel("mock", upstream.base_url, "gpt-3.5-turbo-1106")
    token = await relay.user("rl@example.com", limit=1)
    # default retries on: x-should-retry: false must stop the SDK from retrying
    client = openai.AsyncOpenAI(base_url=relay.url + "/v1", api_key=token, max_retries=2)
    await client.chat.completions.create(model="gpt-3.5-turbo-1106", messages=MSG)
    calls_before = len(upstream.requests)
    with pytest.raises(openai.RateLimitError) as e:
        await client.chat.completions.create(model="gpt-3.5-turbo-1106", messages=MSG)
    assert e.value.response.headers["x-should-retry"] == "false"
    assert int(e.value.response.headers["retry-after"]) > 0
    assert e.value.code == "daily_limit_reached"
    assert len(upstream.requests) == calls_before
    await client.close()


async def test_upstream_failure_is_502_and_not_charged(sdk):
    relay, upstream, client = sdk
    upstream.mode = "fail-500"
    with pytest.raises(openai.InternalServerError) as e:
        await client.chat.completions.create(model="gpt-3.5-turbo-1106", messages=MSG)
    assert e.value.status_code == 502
    assert await relay.lr.relay.quota.used_today(1) == 0
