"""Tool calling end to end on /v1/chat/completions: passed through untouched (openai SDK as the client)."""

from __future__ import annotations

import json

import openai
import pytest

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
             "type": "object", "properties": {"q": {"type": "string"}}}}},
         {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}]


@pytest.fixture
async def sdk(relay, upstream):
    await relay.channel("mock", upstream.base_url, "gpt-3.5-turbo")
    token = await relay.user("tools@example.com", limit=10)
    client = openai.AsyncOpenAI(base_url=relay.url + "/v1", api_key=token, max_retries=0)
    yield upstream, client
    await client.close()


async def test_tool_round_trip(sdk):
    upstream, client = sdk
    messages = [{"role": "user", "content": "weather in Rome"}]
    first = await client.chat.completions.create(model="gpt-3.5-turbo", messages=messages, tools=TOOLS,
                                                 tool_choice="auto", parallel_tool_calls=True)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"q": "weather in Rome"}
    sent = upstream.requests[-1].body
    assert sent["tools"] == TOOLS and sent["tool_choice"] == "auto" and sent["parallel_tool_calls"] is True
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "hot"}]
    second = await client.chat.completions.create(model="gpt-3.5-turbo", messages=messages, tools=TOOLS)
    assert second.choices[0].message.content == "echo tool: hot"
    sent = upstream.requests[-1].body["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.id and sent[1].get("content") is None
    assert sent[2] == {"role": "tool", "tool_call_id": call.id, "content": "hot"}


async def test_tool_calls_in_stream_deltas(sdk):
    upstream, client = sdk
    upstream.chunk_size = 3
    stream = await client.chat.completions.create(model="gpt-3.5-turbo", stream=True, tools=TOOLS,
                                                  messages=[{"role": "user", "content": "both now"}])
    calls: dict[int, dict] = {}
    finish = None
    async for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for d in choice.delta.tool_calls or ():
                entry = calls.setdefault(d.index, {"name": "", "arguments": ""})
                entry["name"] += d.function.name or ""
                entry["arguments"] += d.function.arguments or ""
    assert finish == "tool_calls"
    assert [c["name"] for c in calls.values()] == ["get_weather", "get_time"]
    assert all(json.loads(c["arguments"]) == {"q": "both now"} for c in calls.values())


async def test_forced_tool_and_no_parallel(sdk):
    upstream, client = sdk
    reply = await client.chat.completions.create(
        model="gpt-3.5-turbo", messages=[{"role": "user", "content": "both now"}], tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}}, parallel_tool_calls=False)
    assert [c.function.name for c in reply.choices[0].message.tool_calls] == ["get_time"]
    assert upstream.requests[-1].body["parallel_tool_calls"] is False


async def test_local_model_refuses_tools_clearly():
    """The built-in model cannot call tools: a clear 400 before anything is started or queued."""
    from lightrelay.errors import BadRequest
    from lightrelay.providers.base import ChatCall
    from lightrelay.providers.local import LocalProvider

    provider = LocalProvider()
    call = ChatCall(messages=[{"role": "user", "content": "hi"}], model="smollm2", public_model="gpt-3.5-turbo",
                    params={"tools": TOOLS})
    try:
        with pytest.raises(BadRequest) as err:
            await provider.complete(call)
        assert err.value.code == "tools_not_supported" and err.value.param == "tools"
        with pytest.raises(BadRequest):
            await anext(provider.stream(call))
        assert provider.state != "ready"  # nothing was started for it
    finally:
        await provider.close()
