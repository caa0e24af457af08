"""Real Node clients: the Vercel AI SDK's default OpenAI provider (``ai`` + ``@ai-sdk/openai``, which
calls ``POST /v1/responses``), generateText and streamText. ``scripts/test`` installs them into
``tests/js/node_modules``; without Node the test is skipped."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

JS = Path(__file__).parent / "js"

pytestmark = pytest.mark.skipif(shutil.which("node") is None or not (JS / "node_modules" / "ai").is_dir(),
                                reason="Node or the npm packages of tests/js are not installed (scripts/test)")


async def test_vercel_ai_sdk_default_provider(relay, upstream):
    await relay.channel("mock", upstream.base_url, "gpt-3.5-turbo")
    token = await relay.user("node@example.com", limit=10)
    proc = await asyncio.create_subprocess_exec(
        "node", str(JS / "vercel_ai.mjs"), relay.url + "/v1", token, "gpt-3.5-turbo", cwd=str(JS),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["generate"]["text"] == "echo: hello from node"
    assert result["generate"]["finishReason"] == "stop"
    assert result["generate"]["usage"]["outputTokens"] > 0
    assert result["stream"]["text"] == "echo: stream please" and "streamError" not in result
    assert result["stream"]["finishReason"] == "stop" and result["stream"]["usage"]["inputTokens"] > 0
    assert result["unknown"]["status"] == 404
    sent = [r.body for r in upstream.requests]
    assert sent[1]["messages"][0] == {"role": "system", "content": "be brief"}
