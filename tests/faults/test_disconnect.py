"""Guarantee 3: a client that goes away mid-stream cancels the upstream request within a second; the
tokens produced so far are recorded (status 499, partial) and, text having been sent, the call is
charged (relay.py: a caller who went away after receiving text is charged)."""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import pytest

from tests.faults.conftest import MODEL, body_for, last_row
from tests.mock_upstream import MockUpstream


async def read_some_then_leave(url: str, door: str, token: str, text: str, until: bytes = b"echo") -> float:
    """Read until some reply text arrived, then drop the connection; returns when it was dropped."""
    path, json, headers = body_for(door, token, text)
    async with aiohttp.ClientSession() as http:
        resp = await http.post(url + path, json=json, headers=headers)
        assert resp.status == 200
        got = b""
        while not re.search(until, got):
            got += await asyncio.wait_for(resp.content.readany(), 5)
        resp.close()  # closes the TCP connection
        return time.monotonic()


# "guarded": the protocol `lightrelay serve` runs, which tells the handler itself that its client went
# away; "httptools": uvicorn's own, where a task per request listens for http.disconnect.
PROTOCOLS = ["guarded", "httptools"]


async def relay_on(start_relay, protocol: str):  # noqa: ANN001, ANN201
    return await (start_relay() if protocol == "guarded" else start_relay(http="httptools"))


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("door", ["light", "openai"])
async def test_client_gone_cancels_upstream_and_records_partial(start_relay, door, protocol):
    relay = await relay_on(start_relay, protocol)
    async with MockUpstream() as up:
        up.chunk_delay = 0.05  # 200 characters, 4 per chunk: ~2.5 s of stream
        await relay.channel("up", up.base_url, MODEL)
        token = await relay.user("d@example.com")
        left = await read_some_then_leave(relay.url, door, token, "x" * 200)
        how, when = await up.wait_end(0, timeout=3)
    assert how == "gone" and when - left < 1.0  # the upstream saw its connection close
    row = await last_row(relay)
    assert (row["status"], row["partial"], row["charged"]) == (499, True, True)
    assert row["error"] == "client went away"
    assert 0 < row["completion_tokens"] < 55  # counted from the text relayed so far, not the full reply
    assert row["prompt_tokens"] > 0
    assert await relay.lr.relay.quota.used_today(row["account_id"]) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_client_gone_before_first_byte_is_not_charged_as_failure(start_relay, protocol):
    """A caller that leaves while the upstream has not answered yet: the upstream call is cancelled too."""
    relay = await relay_on(start_relay, protocol)
    async with MockUpstream("stall") as up:
        await relay.channel("up", up.base_url, MODEL)
        token = await relay.user("d@example.com")
        path, json, headers = body_for("openai", token)
        async with aiohttp.ClientSession() as http:
            with pytest.raises(asyncio.TimeoutError):
                await http.post(relay.url + path, json=json, headers=headers,
                                timeout=aiohttp.ClientTimeout(total=0.5))
        left = time.monotonic()
        how, when = await up.wait_end(0, timeout=3)
    assert how == "gone" and when - left < 1.0
    row = await last_row(relay)
    assert (row["status"], row["charged"]) == (499, False)
    assert await relay.lr.relay.quota.used_today(row["account_id"]) == 0
