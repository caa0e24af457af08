"""`lightrelay channel test` and `lightrelay channel models [--apply]` for every upstream type, as real
subprocesses against real mock upstreams."""

from __future__ import annotations

import pytest

from lightrelay.services.channels import get_channel
from tests.mock_providers import MockAnthropic, MockAzure, MockGemini
from tests.mock_upstream import MODES, MockUpstream
from tests.test_cli import cli

LISTED = {
    "anthropic": ["claude-haiku-4-5", "claude-sonnet-4-5"],
    "gemini": ["gemini-2.5-flash", "gemini-2.5-pro"],  # only models that can generateContent
    "azure": ["gpt-4o", "gpt-4o-mini"],
}
MOCKS = {"anthropic": MockAnthropic, "gemini": MockGemini, "azure": MockAzure, "openai": MockUpstream}


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini", "azure"])
async def test_channel_test_and_models(relay, kind):
    async with MOCKS[kind]() as up:
        await cli(relay, "channel", "add", "up", "--type", kind, "--base-url", up.base_url, "--api-key",
                  "key-0123456789abcdef", "--models", "m1=gpt-4o" if kind == "azure" else "m1")
        _, out, _ = await cli(relay, "channel", "test", "up")
        assert out.startswith("ok: up answered in") and "echo: Say hi." in out

        _, out, _ = await cli(relay, "channel", "models", "up")
        expected = LISTED.get(kind) or sorted(["mock-model", *MODES])
        assert out.split() == expected
        assert (await get_channel(relay.lr.engine, name="up"))["models"] == {"m1": "gpt-4o" if kind == "azure"
                                                                              else "m1"}
        _, out, _ = await cli(relay, "channel", "models", "up", "--apply")
        assert out.splitlines()[-1] == f"channel up now serves {len(expected)} models"
        assert (await get_channel(relay.lr.engine, name="up"))["models"] == {m: m for m in expected}


async def test_channel_models_names_a_refusing_upstream(relay):
    async with MockAnthropic() as up:
        up.revoked = {"key-0123456789abcdef"}
        await cli(relay, "channel", "add", "up", "--type", "anthropic", "--base-url", up.base_url, "--api-key",
                  "key-0123456789abcdef", "--models", "m1")
        code, _, err = await cli(relay, "channel", "models", "up", ok=False)
        assert code != 0 and "retired" in err
