"""Guarantee 5 (fuzzed): schemathesis, driven by the relay's own OpenAPI document (GET /openapi.json),
finds no 5xx, no undocumented status, no response off its schema. Bounded: deterministic generation and
few examples per operation (a couple of thousand calls in all), so the run is repeatable and takes seconds.
The document's example bodies name models a channel on the mock upstream serves, so every door answers
them for real (a usage row with status 200 for each)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from lightrelay.http.openapi import EXAMPLE_MODELS
from lightrelay.services.usage import recent_calls
from tests.mock_upstream import MockUpstream

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
OPERATIONS = {"/api/light/chat/createChatCompletion": "post", "/v1/chat/completions": "post",
              "/v1/responses": "post", "/v1/messages": "post", "/v1/embeddings": "post",
              "/v1/images/generations": "post", "/v1/completions": "post", "/v1/models": "get",
              "/v1/models/{model}": "get", "/api/admin/channels/state": "get", "/healthz": "get"}
DOORS = {"light", "openai", "responses", "messages", "embeddings", "images", "completion"}  # usage.door


async def test_openapi_document_is_served(relay, http):
    async with http.get(relay.url + "/openapi.json") as r:
        doc = await r.json()
    assert doc["openapi"].startswith("3.1")
    assert {path: next(iter(ops)) for path, ops in doc["paths"].items()} == OPERATIONS
    schemas = doc["components"]["schemas"]
    assert {"OpenAIBody", "ResponsesBody", "MessagesBody", "EmbeddingsBody", "ImagesBody", "CompletionsBody",
            "OpenAIError", "AnthropicError"} <= set(schemas)
    assert doc["paths"]["/v1/messages"]["post"]["responses"]["401"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AnthropicError"}


async def test_schemathesis_finds_nothing(start_relay, tmp_path):
    relay = await start_relay(rate_bad_token="100000/60", default_daily_limit=None, default_image_limit=None)
    async with MockUpstream() as up:
        await relay.channel("up", up.base_url, ",".join(sorted({*EXAMPLE_MODELS.values(), "gpt-4"})))
        token = await relay.user("admin@example.com", limit=None, gpt4=True, admin=True)
        report = tmp_path / "report.json"
        proc = await asyncio.create_subprocess_exec(
            str(SCHEMATHESIS), "run", relay.url + "/openapi.json", "--checks", CHECKS, "--max-examples", "30",
            "--generation-deterministic", "--phases", "examples,coverage,fuzzing",
            "--header", f"Authorization: Bearer {token}", "--workers", "1", "--request-timeout", "10",
            "--no-color", "--report", "ndjson", "--report-ndjson-path", str(report),
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 300)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    assert f"Tested: {len(OPERATIONS)}" in text and " 0 failed" not in text.replace("passed", "")
    await relay.lr.recorder.flush()
    answered = {row["door"] for row in await recent_calls(relay.lr.engine, limit=100_000) if row["status"] == 200}
    assert DOORS <= answered, f"never answered for real: {DOORS - answered}"
