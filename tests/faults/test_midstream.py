"""Guarantee 2: after the first byte, an upstream failure (connection cut, malformed event, idle timeout)
ends the stream cleanly in the door's own shape — never a hung connection, never a silent truncation —
and the call is refunded (recorded partial, not charged)."""

from __future__ import annotations

import time

import orjson
import pytest

from tests.faults.conftest import MODEL, call_text, last_row
from tests.mock_upstream import MockUpstream

FAULTS = {"cut": 502, "malformed-mid": 502, "idle": 504}


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("door", ["light", "openai"])
async def test_failure_after_first_byte_ends_with_error_frame(start_relay, http, door, fault):
    relay = await start_relay(upstream_idle_timeout=0.3)
    async with MockUpstream() as up:
        if fault == "idle":
            up.chunk_delay = 3.0  # the first event comes at once, then silence
        await relay.channel("up", up.base_url, MODEL if fault == "idle" else f"{MODEL}={fault}")
        token = await relay.user("m@example.com")
        started = time.monotonic()
        status, raw = await call_text(http, relay.url, door, token, "tell me more", include_usage=True)
        assert time.monotonic() - started < 2.5  # ended by the relay, not by the client's patience
    assert status == 200
    if door == "light":
        head, _, rest = raw.partition(b"end852")
        assert head.startswith(b"start852")
        assert rest.endswith(b"end852") and rest.count(b"start852") == 1
        text, _, frame = rest.partition(b"start852")
        error = orjson.loads(frame[: -len(b"end852")])["error"]
        assert "echo: tell me more".startswith(text.decode())  # what came is a clean prefix
    else:
        events = [e for e in raw.split(b"\n\n") if e]
        assert events[-1] == b"data: [DONE]"
        error = orjson.loads(events[-2][len(b"data: "):])["error"]
        assert all(b'"choices"' in e for e in events[:-2])
    assert error["message"] and error["type"] in ("upstream_error", "timeout")
    row = await last_row(relay)
    assert (row["status"], row["charged"], row["partial"]) == (FAULTS[fault], False, True)
    assert await relay.lr.relay.quota.used_today(row["account_id"]) == 0


async def test_stream_failure_with_no_text_yet_is_not_charged_either(start_relay, http):
    """A cut right after the role chunk (no text yet) still ends with an error frame, refunded."""
    relay = await start_relay()
    async with MockUpstream() as up:
        up.chunk_size = 1000  # role chunk, one content chunk, finish chunk: cut at the 4th event
        await relay.channel("up", up.base_url, f"{MODEL}=cut")
        token = await relay.user("m@example.com")
        status, raw = await call_text(http, relay.url, "openai", token)
    assert status == 200 and raw.endswith(b"data: [DONE]\n\n") and b'"error"' in raw
    assert (await last_row(relay))["charged"] is False
