"""The provider-side translations as pure functions: edge cases the mock round trips do not reach."""

from __future__ import annotations

import pytest

from lightrelay.providers.keys import Key, KeyRing, retire_reason
from lightrelay.translate.anthropic import ChatChunks, StreamError, to_anthropic_request
from lightrelay.translate.gemini import Blocked, GeminiChunks, to_gemini_request


def test_anthropic_request_edges():
    body = to_anthropic_request([
        {"role": "developer", "content": [{"type": "text", "text": "rule one"}]},
        {"role": "system", "content": "rule two"},
        {"role": "user", "content": ""},  # empty: left out (Anthropic refuses empty text)
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "not json"}}]},
        {"role": "tool", "tool_call_id": "a", "content": [{"type": "text", "text": "r"}]},
    ], {"max_completion_tokens": 7, "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}}}, model="c", default_max_tokens=99)
    assert body == {
        "model": "c", "max_tokens": 7, "system": "rule one\n\nrule two",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "q"}]},
                     {"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "f",
                                                        "input": {"_raw": "not json"}}]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a",
                                                   "content": [{"type": "text", "text": "r"}]}]}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "f"}}


def test_anthropic_stream_two_tools_and_error_event():
    s = ChatChunks(model="m", created=1)
    s.feed({"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 5}}})
    first = s.feed({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "tool_use", "id": "t0", "name": "a", "input": {}}})
    second = s.feed({"type": "content_block_start", "index": 1,
                     "content_block": {"type": "tool_use", "id": "t1", "name": "b", "input": {}}})
    delta = s.feed({"type": "content_block_delta", "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": "{}"}})
    assert first["choices"][0]["delta"]["tool_calls"][0]["index"] == 0
    assert second["choices"][0]["delta"]["tool_calls"][0]["index"] == 1
    assert delta["choices"][0]["delta"] == {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}
    assert delta["id"] == "msg_1"
    done = s.feed({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}})
    assert done["choices"][0]["finish_reason"] == "tool_calls"
    usage = s.feed({"type": "message_stop"})
    assert s.done and usage["choices"] == [] and usage["usage"] == {"prompt_tokens": 5, "completion_tokens": 9,
                                                                    "total_tokens": 14}
    with pytest.raises(StreamError) as err:
        ChatChunks(model="m", created=1).feed({"type": "error", "error": {"type": "overloaded_error",
                                                                          "message": "Overloaded"}})
    assert err.value.kind == "overloaded_error"


def test_gemini_request_edges():
    body = to_gemini_request([{"role": "user", "content": "hi"}], {
        "response_format": {"type": "json_schema", "json_schema": {"schema": {
            "$schema": "x", "type": "object", "additionalProperties": False, "properties": {"a": {"type": "string"}}}}},
        "seed": 3, "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": "none"})
    assert body["generationConfig"] == {"seed": 3, "responseMimeType": "application/json",
                                        "responseSchema": {"type": "object", "properties": {"a": {"type": "string"}}}}
    assert body["tools"] == [{"functionDeclarations": [{"name": "f"}]}]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "NONE"}}


def test_gemini_stream_thoughts_and_late_safety_stop():
    g = GeminiChunks(model="m", created=1)
    c = g.feed({"candidates": [{"content": {"parts": [{"text": "think", "thought": True}, {"text": "hi"}]}}]})
    assert c["choices"][0]["delta"] == {"role": "assistant", "reasoning_content": "think", "content": "hi"}
    c = g.feed({"candidates": [{"content": {"parts": []}, "finishReason": "SAFETY"}],
                "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 1, "thoughtsTokenCount": 4,
                                  "totalTokenCount": 7}})
    assert c["choices"][0]["finish_reason"] == "content_filter" and g.finished  # content came first: no error
    assert g.usage_chunk()["usage"] == {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7,
                                        "completion_tokens_details": {"reasoning_tokens": 4}}
    with pytest.raises(Blocked):
        GeminiChunks(model="m", created=1).feed({"candidates": [{"finishReason": "PROHIBITED_CONTENT"}]})


@pytest.mark.parametrize(("status", "body", "retired"), [
    (401, b"{}", True), (403, b"{}", True), (402, b"{}", True),
    (429, b'{"error": {"code": "insufficient_quota", "message": "You exceeded your current quota"}}', True),
    (429, b'{"error": {"message": "Rate limit reached for requests"}}', False),
    (400, b'{"error": {"message": "API key not valid.", "details": [{"reason": "API_KEY_INVALID"}]}}', True),
    (400, b'{"error": {"message": "messages: field required"}}', False),
    (500, b'{"error": {"message": "billing service down"}}', False),
])
def test_which_answers_retire_a_key(status, body, retired):
    assert (retire_reason(status, body) is not None) is retired


def test_key_ring_round_robin_and_sync():
    ring = KeyRing([Key(0, "a"), Key(1, "b"), Key(2, "c")], channel="x")
    assert [ring.pick().secret for _ in range(4)] == ["a", "b", "c", "a"]
    ring.keys[1].retired = "gone"
    assert [ring.pick().secret for _ in range(3)] == ["c", "a", "c"]
    ring.sync({0: None, 1: None, 2: "spent"})
    assert [k.retired for k in ring.keys] == [None, None, "spent"] and ring.usable
    ring.sync({0: "x", 1: "y", 2: "z"})
    assert not ring.usable
    assert KeyRing([], channel="keyless").pick() is None
