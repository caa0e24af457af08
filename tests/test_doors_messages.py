"""The Anthropic Messages door, driven by the official ``anthropic`` package."""

from __future__ import annotations

import anthropic
import pytest
from sqlalchemy import select

from lightrelay.db.models import usage

MODEL = "claude-3-5-haiku-latest"
WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}
TIME = {"name": "get_time", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}


@pytest.fixture
async def sdk(relay, upstream):
    await relay.channel("mock", upstream.base_url, f"{MODEL}=gpt-4o-mini")
    token = await relay.user("claude@example.com", limit=5)
    client = anthropic.AsyncAnthropic(base_url=relay.url, api_key=token, max_retries=0)
    yield relay, upstream, client, token
    await client.close()


async def usage_rows(relay):
    await relay.lr.recorder.flush()
    async with relay.lr.engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(select(usage).order_by(usage.c.id))).mappings()]


async def test_create(sdk):
    relay, upstream, client, _ = sdk
    msg = await client.messages.create(model=MODEL, max_tokens=100, system="be brief",
                                       messages=[{"role": "user", "content": "hello"}], stop_sequences=["zz"],
                                       extra_body={"temperature": 0.3})
    assert msg.type == "message" and msg.role == "assistant" and msg.model == MODEL
    assert [b.type for b in msg.content] == ["text"] and msg.content[0].text == "echo: hello"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens == 3
    sent = upstream.requests[-1].body
    assert sent["model"] == "gpt-4o-mini"  # mapped by the channel
    assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    assert sent["max_tokens"] == 100 and sent["stop"] == ["zz"] and sent["temperature"] == 0.3
    rows = await usage_rows(relay)
    assert rows[-1]["door"] == "messages" and rows[-1]["charged"] and rows[-1]["status"] == 200


async def test_max_tokens_stop_reason_and_blocks(sdk):
    _, upstream, client, _ = sdk
    msg = await client.messages.create(model=MODEL, max_tokens=1, messages=[
        {"role": "user", "content": [{"type": "text", "text": "a long question"},
                                     {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                  "data": "iVBORw0KGgo="}}]}])
    assert msg.stop_reason == "max_tokens"
    parts = upstream.requests[-1].body["messages"][0]["content"]
    assert parts == [{"type": "text", "text": "a long question"},
                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]


async def test_stream(sdk):
    relay, upstream, client, _ = sdk
    upstream.chunk_size = 3
    async with client.messages.stream(model=MODEL, max_tokens=100,
                                      messages=[{"role": "user", "content": "hello"}]) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "content_block_stop" in kinds and "message_delta" in kinds
    assert final.content[0].text == "echo: hello"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3 and final.usage.input_tokens > 0
    rows = await usage_rows(relay)
    assert rows[-1]["door"] == "messages" and rows[-1]["stream"] and rows[-1]["charged"]


async def test_tool_use_round_trip(sdk):
    _, upstream, client, _ = sdk
    question = [{"role": "user", "content": "weather in Paris"}]
    msg = await client.messages.create(model=MODEL, max_tokens=100, messages=question, tools=[WEATHER, TIME],
                                       tool_choice={"type": "auto"})
    assert msg.stop_reason == "tool_use"
    [call] = [b for b in msg.content if b.type == "tool_use"]
    assert call.name == "get_weather" and call.input == {"q": "weather in Paris"}
    sent = upstream.requests[-1].body
    assert sent["tools"][0] == {"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city", "parameters": WEATHER["input_schema"]}}
    assert sent["tool_choice"] == "auto"

    follow = [*question, {"role": "assistant", "content": msg.content},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21C"}]}]
    reply = await client.messages.create(model=MODEL, max_tokens=100, messages=follow, tools=[WEATHER, TIME])
    assert reply.stop_reason == "end_turn" and reply.content[0].text == "echo tool: sunny, 21C"
    sent = upstream.requests[-1].body["messages"]
    assert sent[1]["role"] == "assistant" and sent[1]["tool_calls"][0]["id"] == call.id
    assert sent[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"q":"weather in Paris"}'}
    assert sent[2] == {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}


async def test_tool_use_stream_and_forced_choice(sdk):
    _, upstream, client, _ = sdk
    upstream.chunk_size = 5
    async with client.messages.stream(model=MODEL, max_tokens=100, tools=[WEATHER, TIME],
                                      tool_choice={"type": "tool", "name": "get_time",
                                                   "disable_parallel_tool_use": True},
                                      messages=[{"role": "user", "content": "now?"}]) as stream:
        deltas = [e.delta.type async for e in stream if e.type == "content_block_delta"]
        final = await stream.get_final_message()
    assert set(deltas) == {"input_json_delta"}
    assert final.stop_reason == "tool_use"
    assert [(b.type, b.name, b.input) for b in final.content] == [("tool_use", "get_time", {"q": "now?"})]
    sent = upstream.requests[-1].body
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
    assert sent["parallel_tool_calls"] is False


async def test_parallel_tool_use_stream(sdk):
    _, _, client, _ = sdk
    async with client.messages.stream(model=MODEL, max_tokens=100, tools=[WEATHER, TIME],
                                      messages=[{"role": "user", "content": "both please"}]) as stream:
        final = await stream.get_final_message()
    assert [b.name for b in final.content] == ["get_weather", "get_time"]
    assert all(b.input == {"q": "both please"} for b in final.content)


async def test_count_tokens_is_free(sdk):
    relay, upstream, client, _ = sdk
    count = await client.messages.count_tokens(model=MODEL, system="be brief",
                                               messages=[{"role": "user", "content": "hello there"}])
    assert count.input_tokens > 3
    more = await client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hello there"}],
                                              tools=[WEATHER])
    assert more.input_tokens > count.input_tokens - 5
    assert upstream.requests == []
    assert await usage_rows(relay) == []


async def test_error_classes(sdk):
    relay, upstream, client, token = sdk
    bad = anthropic.AsyncAnthropic(base_url=relay.url, api_key="sk-not-a-token", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as err:
        await bad.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert err.value.body["error"]["type"] == "authentication_error"
    await bad.close()
    with pytest.raises(anthropic.NotFoundError) as err:
        await client.messages.create(model="claude-unknown", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert err.value.body["type"] == "error" and err.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as err:  # no max_tokens
        await client.post("/v1/messages", cast_to=object, body={"model": MODEL, "messages": [
            {"role": "user", "content": "x"}]})
    assert err.value.body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in err.value.body["error"]["message"]
    for _ in range(5):
        await client.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.RateLimitError) as err:
        await client.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert err.value.body["error"]["type"] == "rate_limit_error"
    assert err.value.response.headers["retry-after"]


async def test_bearer_token_and_version_header(sdk, http):
    relay, _, _, token = sdk
    async with http.post(f"{relay.url}/v1/messages", headers={"Authorization": f"Bearer {token}",
                                                              "anthropic-version": "2023-06-01"},
                         json={"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.status == 200
        assert (await r.json())["content"] == [{"type": "text", "text": "echo: hi"}]


async def test_upstream_failure_mid_stream_ends_in_error_event(sdk):
    relay, upstream, client, _ = sdk
    upstream.mode = "cut"
    with pytest.raises(anthropic.APIStatusError) as err:
        async with client.messages.stream(model=MODEL, max_tokens=100,
                                          messages=[{"role": "user", "content": "hello world"}]) as stream:
            async for _ in stream:
                pass
    assert err.value.body["error"]["type"] == "api_error"
    rows = await usage_rows(relay)
    assert rows[-1]["partial"] and not rows[-1]["charged"]


async def test_upstream_down_is_an_anthropic_error(sdk):
    _, upstream, client, _ = sdk
    upstream.mode = "fail-503"
    with pytest.raises(anthropic.InternalServerError) as err:
        await client.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert err.value.body["type"] == "error"


async def test_through_an_anthropic_channel(relay):
    """Messages door → chat → an Anthropic-typed channel → back: both halves of translate/anthropic.py."""
    from tests.mock_providers import MockAnthropic

    async with MockAnthropic() as up:
        await relay.channel("claude", up.base_url, f"{MODEL}=claude-haiku-4-5", type="anthropic", api_key="sk-ant-x")
        token = await relay.user("native@example.com", limit=10)
        client = anthropic.AsyncAnthropic(base_url=relay.url, api_key=token, max_retries=0)
        try:
            msg = await client.messages.create(model=MODEL, max_tokens=100, system="be brief", stop_sequences=["zz"],
                                               messages=[{"role": "user", "content": "hello"}])
            assert msg.content[0].text == "echo: hello" and msg.stop_reason == "end_turn" and msg.model == MODEL
            sent = up.requests[-1].body
            assert sent["model"] == "claude-haiku-4-5" and sent["system"] == "be brief"
            assert sent["max_tokens"] == 100 and sent["stop_sequences"] == ["zz"]
            question = [{"role": "user", "content": "weather in Lima"}]
            async with client.messages.stream(model=MODEL, max_tokens=100, messages=question,
                                              tools=[WEATHER]) as stream:
                first = await stream.get_final_message()
            assert [b.type for b in first.content] == ["text", "tool_use"]  # the mock says "Let me check." first
            [call] = [b for b in first.content if b.type == "tool_use"]
            assert first.stop_reason == "tool_use" and call.name == "get_weather"
            assert call.input == {"q": "weather in Lima"}
            reply = await client.messages.create(model=MODEL, max_tokens=100, tools=[WEATHER], messages=[
                *question, {"role": "assistant", "content": first.content},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "warm"}]}])
            assert reply.content[0].text == "echo tool: warm"
        finally:
            await client.close()
