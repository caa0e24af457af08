"""Gemini channels (``--type gemini``): the exact generateContent request the mock received, and what the
caller got, streamed and not, through the chat door and the light door; safety blocks; a cut stream."""

from __future__ import annotations

import orjson
import pytest

from tests.faults.conftest import MODEL, call_text, last_row
from tests.mock_providers import MockGemini
from tests.mock_upstream import MockUpstream
from tests.test_provider_anthropic import TOOLS, chat, chat_stream, joined, reply_text

GEMINI = "gemini-2.5-flash"
KEY = "AIzaSyTestKey-0000000000000000001"


@pytest.fixture
async def gemini(relay):
    async with MockGemini() as up:
        up.keys = {KEY}
        await relay.channel("gem", up.base_url, f"{MODEL}={GEMINI}", type="gemini", api_key=KEY)
        yield up


async def test_request_translation_and_reply(relay, http, gemini):
    token = await relay.user("g@example.com")
    status, body = await chat(http, relay, token, {
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                     {"role": "assistant", "content": "hello"}, {"role": "user", "content": [
                         {"type": "text", "text": "look"},
                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}}]}],
        "temperature": 0.5, "top_p": 0.8, "max_tokens": 100, "stop": ["END"]})
    assert status == 200, body
    rec = gemini.requests[-1]
    assert rec.path == f"/v1beta/models/{GEMINI}:generateContent"
    assert rec.headers["x-goog-api-key"] == KEY and "Authorization" not in rec.headers
    assert rec.body == {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}, {"role": "model", "parts": [{"text": "hello"}]},
                     {"role": "user", "parts": [{"text": "look"},
                                                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}}]}],
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "generationConfig": {"temperature": 0.5, "topP": 0.8, "maxOutputTokens": 100, "stopSequences": ["END"]}}
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "echo: look"}
    assert body["choices"][0]["finish_reason"] == "stop" and body["model"] == MODEL
    assert body["usage"] == {"prompt_tokens": 1 + 2 + 1 + 2, "completion_tokens": 3, "total_tokens": 9}


async def test_n_is_candidate_count(relay, http, gemini):
    token = await relay.user("g@example.com")
    status, body = await chat(http, relay, token, {"messages": [{"role": "user", "content": "hi"}], "n": 2})
    assert gemini.requests[-1].body["generationConfig"] == {"candidateCount": 2}
    assert [c["message"]["content"] for c in body["choices"]] == ["echo: hi", "echo#1: hi"]


async def test_stream(relay, http, gemini):
    token = await relay.user("g@example.com")
    chunks = await chat_stream(http, relay, token, {"messages": [{"role": "user", "content": "hello you"}],
                                                    "max_tokens": 3})
    rec = gemini.requests[-1]
    assert rec.path == f"/v1beta/models/{GEMINI}:streamGenerateContent" and rec.query == {"alt": "sse"}
    text, finish, usage = joined(chunks)
    assert text == "echo: hello " and finish == ["length"]
    assert usage == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    row = await last_row(relay)
    assert (row["channel"], row["status"], row["charged"]) == ("gem", 200, True)


@pytest.mark.parametrize("stream", [False, True])
async def test_function_calls_both_ways(relay, http, gemini, stream):
    token = await relay.user("g@example.com")
    first = {"messages": [{"role": "user", "content": "weather?"}], "tools": TOOLS,
             "tool_choice": {"type": "function", "function": {"name": "weather"}}}
    if stream:
        chunks = await chat_stream(http, relay, token, first)
        _, finish, _ = joined(chunks)
        (call,) = [d for c in chunks if c["choices"] for d in c["choices"][0]["delta"].get("tool_calls") or ()]
        del call["index"]
    else:
        status, reply = await chat(http, relay, token, first)
        (call,) = reply["choices"][0]["message"]["tool_calls"]
        finish = [reply["choices"][0]["finish_reason"]]
    assert finish == ["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "weather" and call["id"].startswith("call_")
    assert orjson.loads(call["function"]["arguments"]) == {"q": "weather?"}
    sent = gemini.requests[-1].body
    assert sent["tools"] == [{"functionDeclarations": [{
        "name": "weather", "description": "the weather in a city",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]}]
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}}

    status, reply = await chat(http, relay, token, {"messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "tool_calls": [{"id": call["id"], "type": "function", "function": call["function"]}]},
        {"role": "tool", "tool_call_id": call["id"], "content": '{"sky": "sunny"}'}], "tools": TOOLS})
    assert status == 200 and reply["choices"][0]["message"]["content"] == 'echo tool: {"sky":"sunny"}'
    assert gemini.requests[-1].body["contents"][1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": "weather", "args": {"q": "weather?"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "weather", "response": {"sky": "sunny"}}}]}]


@pytest.mark.parametrize("mode", ["blocked-prompt", "blocked-reply"])
@pytest.mark.parametrize("stream", [False, True])
async def test_safety_block_is_a_clear_error(relay, http, gemini, mode, stream):
    token = await relay.user("g@example.com")
    gemini.mode = mode
    async with http.post(relay.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {token}"},
                         json={"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": "x"}]}) as r:
        assert r.status == 400
        error = (await r.json())["error"]
    assert error["code"] == "content_filter" and "SAFETY" in error["message"]
    assert await relay.lr.relay.quota.used_today(1) == 0


@pytest.mark.parametrize("stream", [False, True])
async def test_light_door(relay, http, gemini, stream):
    token = await relay.user("g@example.com")
    status, raw = await call_text(http, relay.url, "light", token, "你好", stream=stream)
    assert status == 200
    text = raw.partition(b"end852")[2].decode() if stream else \
        orjson.loads(raw)["data"]["completion"]["choices"][0]["message"]["content"]
    assert text == "echo: 你好"


@pytest.mark.parametrize("failure", ["fail-500", "fail-429"])
async def test_5xx_and_429_fail_over(relay, http, failure):
    async with MockGemini(failure) as bad, MockUpstream() as good:
        await relay.channel("gem", bad.base_url, f"{MODEL}={GEMINI}", type="gemini", api_key=KEY, priority=5)
        await relay.channel("good", good.base_url, MODEL, priority=1)
        token = await relay.user("g@example.com")
        status, raw = await call_text(http, relay.url, "openai", token, "hi", stream=True)
        assert status == 200 and reply_text(raw) == "echo: hi" and len(bad.requests) == 1
        assert relay.lr.router.snapshot()["gem"]["retired_keys"] == []  # a rate limit retires no key


@pytest.mark.parametrize("door", ["light", "openai"])
async def test_stream_cut_midway(relay, http, door):
    async with MockGemini("cut") as up:
        await relay.channel("gem", up.base_url, f"{MODEL}={GEMINI}", type="gemini", api_key=KEY)
        token = await relay.user("g@example.com")
        status, raw = await call_text(http, relay.url, door, token, "tell me more")
    assert status == 200 and b'"error"' in raw and b"echo" in raw
    row = await last_row(relay)
    assert (row["status"], row["charged"], row["partial"]) == (502, False, True)
    assert await relay.lr.relay.quota.used_today(row["account_id"]) == 0
