"""Guarantee 3 for the built-in local model: a client that leaves mid-stream stops the generation within
a second (the worker's queue empties), and the partial reply is recorded (499, charged)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.conftest import last_row
from tests.faults.test_disconnect import read_some_then_leave

pytestmark = pytest.mark.localmodel


async def test_client_gone_stops_local_generation(start_relay):
    relay = await start_relay(local_model="auto", local_max_tokens=2000)
    token = await relay.user("local@example.com")
    left = await read_some_then_leave(relay.url, "openai", token, "Write a very long story about a dragon.",
                                     until=rb'"content":"[^"]')
    provider = relay.lr.local
    for _ in range(150):  # poll the worker's queue
        if not provider.queue_depth:
            break
        await asyncio.sleep(0.02)
    assert provider.queue_depth == 0 and time.monotonic() - left < 1.0  # a 2000-token story takes far longer
    row = await last_row(relay)
    assert (row["status"], row["partial"], row["charged"], row["channel"]) == (499, True, True, "builtin-local")
    assert row["completion_tokens"] > 0
