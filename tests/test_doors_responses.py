"""The Responses door (``POST /v1/responses``), driven by the official ``openai`` package."""

from __future__ import annotations

import json

import openai
import pytest
from sqlalchemy import select

from lightrelay.db.models import usage

MODEL = "gpt-3.5-turbo"
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}
TIME = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}


@pytest.fixture
async def sdk(relay, upstream):
    await relay.channel("mock", upstream.base_url, MODEL)
    token = await relay.user("responses@example.com", limit=10)
    client = openai.AsyncOpenAI(base_url=relay.url + "/v1", api_key=token, max_retries=0)
    yield relay, upstream, client
    await client.close()


async def usage_rows(relay):
    await relay.lr.recorder.flush()
    async with relay.lr.engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(select(usage).order_by(usage.c.id))).mappings()]


async def test_create_with_a_string(sdk):
    relay, upstream, client = sdk
    raw = await client.responses.with_raw_response.create(model=MODEL, input="hello", instructions="be brief",
                                                          max_output_tokens=50, temperature=0.2)
    assert raw.headers["x-ratelimit-remaining-requests"] == "9"
    resp = raw.parse()
    assert resp.object == "response" and resp.status == "completed" and resp.model == MODEL
    assert resp.output_text == "echo: hello"
    assert resp.output[0].type == "message" and resp.output[0].content[0].type == "output_text"
    assert resp.usage.input_tokens > 0 and resp.usage.output_tokens == 3
    assert resp.usage.total_tokens == resp.usage.input_tokens + 3
    sent = upstream.requests[-1].body
    assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    assert sent["max_tokens"] == 50 and sent["temperature"] == 0.2
    rows = await usage_rows(relay)
    assert rows[-1]["door"] == "responses" and rows[-1]["charged"] and rows[-1]["completion_tokens"] == 3


async def test_message_items_and_incomplete(sdk):
    _, upstream, client = sdk
    resp = await client.responses.create(model=MODEL, max_output_tokens=1, input=[
        {"role": "developer", "content": "rules"},
        {"role": "user", "content": [{"type": "input_text", "text": "look: "},
                                     {"type": "input_image", "image_url": "https://img.example/cat.png"}]}])
    assert resp.status == "incomplete" and resp.incomplete_details.reason == "max_output_tokens"
    sent = upstream.requests[-1].body["messages"]
    assert sent[0] == {"role": "developer", "content": "rules"}
    assert sent[1]["content"] == [{"type": "text", "text": "look: "},
                                  {"type": "image_url", "image_url": {"url": "https://img.example/cat.png"}}]


async def test_function_tool_round_trip(sdk):
    _, upstream, client = sdk
    question = [{"role": "user", "content": "weather in Oslo"}]
    first = await client.responses.create(model=MODEL, input=question, tools=[WEATHER, TIME], tool_choice="auto")
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"q": "weather in Oslo"}
    assert first.output_text == ""
    sent = upstream.requests[-1].body
    assert sent["tools"][0] == {"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city", "parameters": WEATHER["parameters"]}}
    follow = [*question, call.model_dump(exclude_none=True),
              {"type": "function_call_output", "call_id": call.call_id, "output": "rain, 7C"}]
    second = await client.responses.create(model=MODEL, input=follow, tools=[WEATHER, TIME])
    assert second.output_text == "echo tool: rain, 7C"
    sent = upstream.requests[-1].body["messages"]
    assert sent[1]["role"] == "assistant" and sent[1]["tool_calls"][0]["id"] == call.call_id
    assert sent[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "rain, 7C"}


async def test_stream_events_in_order(sdk):
    relay, upstream, client = sdk
    upstream.chunk_size = 3
    stream = await client.responses.create(model=MODEL, input="hello", stream=True)
    events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "echo: hello"
    done = events[-1].response
    assert done.output_text == "echo: hello" and done.usage.output_tokens == 3
    rows = await usage_rows(relay)
    assert rows[-1]["door"] == "responses" and rows[-1]["stream"] and rows[-1]["charged"]


async def test_stream_helper_with_function_calls(sdk):
    _, upstream, client = sdk
    upstream.chunk_size = 4
    async with client.responses.stream(model=MODEL, input="both at once", tools=[WEATHER, TIME]) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    calls = [item for item in final.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    assert all(json.loads(c.arguments) == {"q": "both at once"} for c in calls)


async def test_stateless_refusals(sdk):
    _, upstream, client = sdk
    with pytest.raises(openai.BadRequestError) as err:
        await client.responses.create(model=MODEL, input="x", previous_response_id="resp_123")
    assert err.value.body["param"] == "previous_response_id" and err.value.body["code"] == "unsupported_parameter"
    with pytest.raises(openai.BadRequestError) as err:
        await client.responses.create(model=MODEL, input="x", store=True)
    assert err.value.body["param"] == "store"
    with pytest.raises(openai.BadRequestError) as err:
        await client.responses.create(model=MODEL, input="x", tools=[{"type": "web_search"}])
    assert err.value.body["param"] == "tools.0.type"
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model="no-such-model", input="x")
    with pytest.raises(openai.BadRequestError) as err:  # echoed in the response object: must be one
        await client.responses.create(model=MODEL, input="x", extra_body={"metadata": [None, None]})
    assert err.value.body["param"] == "metadata"
    assert upstream.requests == []
    resp = await client.responses.create(model=MODEL, input="x", metadata={"k": "v"})
    assert resp.metadata == {"k": "v"}


async def test_upstream_failure_mid_stream(sdk):
    relay, upstream, client = sdk
    upstream.mode = "cut"
    stream = await client.responses.create(model=MODEL, input="hello world", stream=True)
    events = [event async for event in stream]
    assert [e.type for e in events[-2:]] == ["error", "response.failed"]
    assert events[-1].response.status == "failed" and events[-1].response.error.message
    rows = await usage_rows(relay)
    assert rows[-1]["partial"] and not rows[-1]["charged"]
