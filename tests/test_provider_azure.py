"""Azure OpenAI channels (``--type azure``): deployment URL, api-version, api-key header; the chat and light
doors, streamed and not; a cut stream."""

from __future__ import annotations

import orjson
import pytest

from tests.faults.conftest import MODEL, call_text, last_row
from tests.mock_providers import MockAzure
from tests.test_provider_anthropic import TOOLS, chat, chat_stream, joined

KEY = "azure-key-0123456789abcdef"


@pytest.fixture
async def azure(relay):
    async with MockAzure(azure_key=KEY) as up:
        await relay.channel("az", up.base_url, f"{MODEL}=my-gpt4o-deployment", type="azure", api_key=KEY)
        yield up


async def test_deployment_url_version_and_key(relay, http, azure):
    token = await relay.user("z@example.com")
    status, body = await chat(http, relay, token, {"messages": [{"role": "user", "content": "hi"}]})
    assert status == 200 and body["choices"][0]["message"]["content"] == "echo: hi" and body["model"] == MODEL
    (call,) = azure.azure
    assert call == ("my-gpt4o-deployment", "2024-10-21", KEY)
    assert "Authorization" not in azure.requests[-1].headers
    assert azure.requests[-1].body == {"model": "my-gpt4o-deployment", "messages": [{"role": "user", "content": "hi"}]}


async def test_own_api_version(relay, http):
    async with MockAzure(azure_key=KEY) as up:
        await relay.channel("az2", up.base_url, MODEL, type="azure", api_key=KEY, api_version="2025-01-01-preview")
        token = await relay.user("z@example.com")
        await chat(http, relay, token, {"messages": [{"role": "user", "content": "hi"}]})
        assert up.azure[-1].api_version == "2025-01-01-preview"


async def test_stream_with_tools(relay, http, azure):
    token = await relay.user("z@example.com")
    chunks = await chat_stream(http, relay, token, {"messages": [{"role": "user", "content": "weather?"}],
                                                    "tools": TOOLS})
    _, finish, usage = joined(chunks)
    assert finish == ["tool_calls"] and usage["total_tokens"] > 0
    args = "".join(d["function"]["arguments"] for c in chunks if c["choices"]
                   for d in c["choices"][0]["delta"].get("tool_calls") or ())
    assert orjson.loads(args) == {"q": "weather?"}
    assert azure.requests[-1].body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("stream", [False, True])
async def test_light_door(relay, http, azure, stream):
    token = await relay.user("z@example.com")
    status, raw = await call_text(http, relay.url, "light", token, "你好", stream=stream)
    text = raw.partition(b"end852")[2].decode() if stream else \
        orjson.loads(raw)["data"]["completion"]["choices"][0]["message"]["content"]
    assert status == 200 and text == "echo: 你好"


async def test_wrong_key_is_retired_and_reported(relay, http):
    async with MockAzure(azure_key=KEY) as up:
        await relay.channel("az", up.base_url, MODEL, type="azure", api_key="azure-wrong-key-000000")
        token = await relay.user("z@example.com")
        status, body = await chat(http, relay, token, {"messages": [{"role": "user", "content": "hi"}]})
        assert status == 503  # every key of the only channel is retired
        ((n, reason),) = [(k["n"], k["reason"]) for k in relay.lr.router.snapshot()["az"]["retired_keys"]]
        assert n == 1
        assert reason.startswith("rejected by the upstream (401)") and "Access denied" in reason


@pytest.mark.parametrize("door", ["light", "openai"])
async def test_stream_cut_midway(relay, http, door):
    async with MockAzure("cut", azure_key=KEY) as up:
        await relay.channel("az", up.base_url, MODEL, type="azure", api_key=KEY)
        token = await relay.user("z@example.com")
        status, raw = await call_text(http, relay.url, door, token, "tell me more")
    assert status == 200 and b'"error"' in raw
    row = await last_row(relay)
    assert (row["status"], row["charged"], row["partial"]) == (502, False, True)
