"""Anthropic channels (``--type anthropic``): what the mock Anthropic upstream received (the exact translated
Messages request) and what the caller got (text, tool calls, finish_reason, usage), streamed and not, through
the chat door and the light door; errors, failover, a stream cut mid-way."""

from __future__ import annotations

import orjson
import pytest

from tests.faults.conftest import MODEL, call_text, last_row
from tests.mock_providers import MockAnthropic
from tests.mock_upstream import MockUpstream

CLAUDE = "claude-sonnet-4-5"
KEY = "sk-ant-api03-test-key-0001"
TOOLS = [{"type": "function", "function": {"name": "weather", "description": "the weather in a city",
                                           "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]


async def chat(http, relay, token: str, body: dict) -> tuple[int, dict]:
    async with http.post(relay.url + "/v1/chat/completions", json={"model": MODEL, **body},
                         headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, await r.json()


async def chat_stream(http, relay, token: str, body: dict) -> list[dict]:
    async with http.post(relay.url + "/v1/chat/completions",
                         json={"model": MODEL, "stream": True, "stream_options": {"include_usage": True}, **body},
                         headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200
        raw = await r.read()
    events = [e[len(b"data: "):] for e in raw.split(b"\n\n") if e]
    assert events[-1] == b"[DONE]"
    return [orjson.loads(e) for e in events[:-1]]


def reply_text(raw: bytes) -> str:
    """The reply text of a raw chat-door body, streamed (SSE) or not."""
    if raw.startswith(b"data:"):
        events = [orjson.loads(e[len(b"data: "):]) for e in raw.split(b"\n\n") if e and e != b"data: [DONE]"]
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c.get("choices"))
    return orjson.loads(raw)["choices"][0]["message"]["content"]


def joined(chunks: list[dict]) -> tuple[str, list[str | None], dict | None]:
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    usage = next((c["usage"] for c in chunks if not c["choices"] and c.get("usage")), None)
    return text, finish, usage


@pytest.fixture
async def claude(relay):
    async with MockAnthropic() as up:
        up.keys = {KEY}
        await relay.channel("claude", up.base_url, f"{MODEL}={CLAUDE}", type="anthropic", api_key=KEY)
        yield up


async def test_request_translation_and_reply(relay, http, claude):
    token = await relay.user("a@example.com")
    status, body = await chat(http, relay, token, {
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                     {"role": "user", "content": [{"type": "text", "text": "there"}]}],
        "stop": "END", "temperature": 1.5, "top_p": 0.9, "user": "u-1"})
    assert status == 200, body
    rec = claude.requests[-1]
    assert rec.path == "/v1/messages"
    assert rec.headers["x-api-key"] == KEY and rec.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in rec.headers
    assert rec.body == {"model": CLAUDE, "max_tokens": 4096, "system": "be brief",
                        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"},
                                                                  {"type": "text", "text": "there"}]}],
                        "stop_sequences": ["END"], "temperature": 1.0, "top_p": 0.9, "metadata": {"user_id": "u-1"}}
    assert body["model"] == MODEL and body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "echo: hithere"}
    assert choice["finish_reason"] == "stop"
    prompt = 2 + 2  # "be brief", "hithere" (one merged turn) at one token per started 4 characters
    assert body["usage"] == {"prompt_tokens": prompt, "completion_tokens": 4, "total_tokens": prompt + 4}


async def test_stream_through_the_chat_door(relay, http, claude):
    token = await relay.user("a@example.com")
    claude.cache_read = 10
    chunks = await chat_stream(http, relay, token, {"messages": [{"role": "user", "content": "hello you"}],
                                                    "max_tokens": 50})
    assert claude.requests[-1].body["stream"] is True and claude.requests[-1].body["max_tokens"] == 50
    text, finish, usage = joined(chunks)
    assert text == "echo: hello you" and finish == ["stop"]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["model"] == MODEL and c["object"] == "chat.completion.chunk" for c in chunks)
    assert usage == {"prompt_tokens": 3 + 10, "completion_tokens": 4, "total_tokens": 17,
                     "prompt_tokens_details": {"cached_tokens": 10, "cache_creation_tokens": 0}}
    row = await last_row(relay)
    assert (row["channel"], row["status"], row["charged"], row["prompt_tokens"]) == ("claude", 200, True, 13)


@pytest.mark.parametrize("stream", [False, True])
async def test_max_tokens_is_length(relay, http, claude, stream):
    token = await relay.user("a@example.com")
    body = {"messages": [{"role": "user", "content": "a long question"}], "max_tokens": 2}
    if stream:
        text, finish, _ = joined(await chat_stream(http, relay, token, body))
    else:
        status, reply = await chat(http, relay, token, body)
        text, finish = reply["choices"][0]["message"]["content"], [reply["choices"][0]["finish_reason"]]
    assert text == "echo: a " and finish == ["length"]


@pytest.mark.parametrize("stream", [False, True])
async def test_tools_both_ways(relay, http, claude, stream):
    token = await relay.user("a@example.com")
    first = {"messages": [{"role": "user", "content": "weather?"}], "tools": TOOLS, "tool_choice": "required",
             "parallel_tool_calls": False}
    if stream:
        chunks = await chat_stream(http, relay, token, first)
        text, finish, _ = joined(chunks)
        deltas = [d for c in chunks if c["choices"] for d in c["choices"][0]["delta"].get("tool_calls") or ()]
        assert deltas[0] == {"index": 0, "id": "toolu_mock_0", "type": "function",
                             "function": {"name": "weather", "arguments": ""}}
        args = "".join(d["function"]["arguments"] for d in deltas)
        assert text == "Let me check." and finish == ["tool_calls"]
    else:
        status, reply = await chat(http, relay, token, first)
        msg = reply["choices"][0]["message"]
        assert reply["choices"][0]["finish_reason"] == "tool_calls" and msg["content"] == "Let me check."
        (call,) = msg["tool_calls"]
        assert (call["id"], call["type"], call["function"]["name"]) == ("toolu_mock_0", "function", "weather")
        args = call["function"]["arguments"]
    assert orjson.loads(args) == {"q": "weather?"}
    sent = claude.requests[-1].body
    assert sent["tools"] == [{"name": "weather", "description": "the weather in a city",
                              "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}

    second = {"messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_mock_0", "type": "function", "function": {"name": "weather", "arguments": args}}]},
        {"role": "tool", "tool_call_id": "toolu_mock_0", "content": "sunny"},
        {"role": "user", "content": "and so?"}], "tools": TOOLS}
    status, reply = await chat(http, relay, token, second)
    assert status == 200
    assert claude.requests[-1].body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_mock_0", "name": "weather",
                                           "input": {"q": "weather?"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_mock_0", "content": "sunny"},
                                     {"type": "text", "text": "and so?"}]}]
    assert "tool_choice" not in claude.requests[-1].body


async def test_tool_result_answer(relay, http, claude):
    token = await relay.user("a@example.com")
    status, reply = await chat(http, relay, token, {"messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "sunny"}], "tools": TOOLS})
    assert status == 200 and reply["choices"][0]["message"]["content"] == "echo tool: sunny"


async def test_images_become_image_blocks(relay, http, claude):
    token = await relay.user("a@example.com")
    status, _ = await chat(http, relay, token, {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]})
    assert status == 200
    assert claude.requests[-1].body["messages"][0]["content"] == [
        {"type": "text", "text": "what is this"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}]


@pytest.mark.parametrize("stream", [False, True])
async def test_thinking_becomes_reasoning_content(relay, http, claude, stream):
    token = await relay.user("a@example.com")
    claude.mode = "thinking"
    body = {"messages": [{"role": "user", "content": "hi"}]}
    if stream:
        chunks = await chat_stream(http, relay, token, body)
        reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content") or "" for c in chunks if c["choices"])
        text = joined(chunks)[0]
    else:
        msg = (await chat(http, relay, token, body))[1]["choices"][0]["message"]
        reasoning, text = msg["reasoning_content"], msg["content"]
    assert (reasoning, text) == ("hmm, an echo", "echo: hi")


@pytest.mark.parametrize("stream", [False, True])
async def test_light_door(relay, http, claude, stream):
    token = await relay.user("a@example.com")
    status, raw = await call_text(http, relay.url, "light", token, "你好", stream=stream)
    assert status == 200
    if stream:
        head, _, text = raw.partition(b"end852")
        assert head.startswith(b"start852") and text.decode() == "echo: 你好"
    else:
        body = orjson.loads(raw)
        assert body["data"]["completion"]["choices"][0]["message"]["content"] == "echo: 你好"
    assert claude.requests[-1].body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "你好"}]}]


@pytest.mark.parametrize("failure", ["overloaded", "fail-500", "fail-429"])
@pytest.mark.parametrize("stream", [False, True])
async def test_overloaded_5xx_and_429_fail_over(relay, http, failure, stream):
    async with MockAnthropic(failure) as bad, MockUpstream() as good:
        await relay.channel("claude", bad.base_url, MODEL + "=" + CLAUDE, type="anthropic", api_key=KEY, priority=5)
        await relay.channel("good", good.base_url, MODEL, priority=1)
        token = await relay.user("a@example.com")
        status, raw = await call_text(http, relay.url, "openai", token, "hi", stream=stream)
        assert status == 200 and reply_text(raw) == "echo: hi"
        assert len(bad.requests) == 1 and len(good.requests) == 1


async def test_400_is_the_callers(relay, http):
    async with MockAnthropic("fail-400") as bad, MockUpstream() as good:
        await relay.channel("claude", bad.base_url, MODEL + "=" + CLAUDE, type="anthropic", api_key=KEY, priority=5)
        await relay.channel("good", good.base_url, MODEL, priority=1)
        token = await relay.user("a@example.com")
        status, body = await chat(http, relay, token, {"messages": [{"role": "user", "content": "hi"}]})
        assert status == 400 and "prompt is too long" in body["error"]["message"]
        assert len(good.requests) == 0
        assert await relay.lr.relay.quota.used_today(1) == 0


@pytest.mark.parametrize("fault", ["cut", "error-mid"])
@pytest.mark.parametrize("door", ["light", "openai"])
async def test_stream_cut_midway_ends_in_the_doors_error_and_is_refunded(relay, http, door, fault):
    async with MockAnthropic(fault) as up:
        await relay.channel("claude", up.base_url, MODEL + "=" + CLAUDE, type="anthropic", api_key=KEY)
        token = await relay.user("a@example.com")
        status, raw = await call_text(http, relay.url, door, token, "tell me more", include_usage=True)
    assert status == 200
    if door == "light":
        _, _, rest = raw.partition(b"end852")
        text, _, frame = rest.partition(b"start852")
        error = orjson.loads(frame[: -len(b"end852")])["error"]
        assert text and "echo: tell me more".startswith(text.decode())
    else:
        events = [e for e in raw.split(b"\n\n") if e]
        assert events[-1] == b"data: [DONE]"
        error = orjson.loads(events[-2][len(b"data: "):])["error"]
    assert error["type"] == "upstream_error"
    if fault == "error-mid":
        assert "overloaded_error" in error["message"]
    row = await last_row(relay)
    assert (row["status"], row["charged"], row["partial"]) == (502, False, True)
    assert await relay.lr.relay.quota.used_today(row["account_id"]) == 0


async def test_n_above_one_is_refused(relay, http, claude):
    token = await relay.user("a@example.com")
    status, body = await chat(http, relay, token, {"messages": [{"role": "user", "content": "hi"}], "n": 2})
    assert status == 400 and body["error"]["param"] == "n"
