"""Guarantee 5 (fuzzed): schemathesis, driven by the relay's own OpenAPI document (GET /openapi.json),
finds no 5xx, no undocumented status, no response off its schema. Bounded: deterministic generation and
few examples per operation (about 700 calls in all), so the run is repeatable and takes seconds."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.faults.conftest import MODEL
from tests.mock_upstream import MockUpstream

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


async def test_openapi_document_is_served(relay, http):
    async with http.get(relay.url + "/openapi.json") as r:
        doc = await r.json()
    assert doc["openapi"].startswith("3.1")
    assert {"/api/light/chat/createChatCompletion", "/v1/chat/completions", "/v1/models",
            "/api/admin/channels/state"} <= set(doc["paths"])
    assert "OpenAIBody" in doc["components"]["schemas"]


async def test_schemathesis_finds_nothing(start_relay, tmp_path):
    relay = await start_relay(rate_bad_token="100000/60", default_daily_limit=None)
    async with MockUpstream() as up:
        await relay.channel("up", up.base_url, f"{MODEL},gpt-4")
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
    assert "Tested: 5" in text and " 0 failed" not in text.replace("passed", "")
