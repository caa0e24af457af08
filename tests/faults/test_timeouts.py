"""Guarantee 4: every wait on an upstream is bounded — connect, first byte, idle between chunks (in
test_midstream.py), total (the channel's ``timeout`` column, else the global default) — with sane
defaults. A trickling upstream is not idle, but the total limit still ends it."""

from __future__ import annotations

import socket
import time

import pytest

from lightrelay.settings import Settings
from tests.faults.conftest import MODEL, call_text, last_row
from tests.mock_upstream import MockUpstream


def test_defaults_are_sane():
    s = Settings()
    assert (s.upstream_connect_timeout, s.upstream_first_byte_timeout, s.upstream_idle_timeout,
            s.upstream_total_timeout) == (5.0, 60.0, 60.0, 600.0)


@pytest.fixture
def blackhole():
    """A port whose accept queue is full: new connections hang in the SYN stage (no RST, no answer)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(c)
    time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/v1"
    for c in fillers:
        c.close()
    server.close()


async def test_connect_timeout(start_relay, http, blackhole):
    relay = await start_relay(upstream_connect_timeout=0.3)
    await relay.channel("hole", blackhole, MODEL)
    token = await relay.user("t@example.com")
    started = time.monotonic()
    status, _ = await call_text(http, relay.url, "openai", token, stream=False)
    assert status == 504 and time.monotonic() - started < 2


@pytest.mark.parametrize("door", ["light", "openai"])
async def test_first_byte_timeout_on_a_stream(start_relay, http, door):
    relay = await start_relay(upstream_first_byte_timeout=0.3)
    async with MockUpstream("stall") as up:
        await relay.channel("up", up.base_url, MODEL)
        token = await relay.user("t@example.com")
        started = time.monotonic()
        status, _ = await call_text(http, relay.url, door, token, stream=True)
        assert status == 504 and time.monotonic() - started < 1.5


async def test_trickle_is_not_idle(start_relay, http):
    """Bytes every 10 ms keep a stream alive under a 0.3 s idle limit: the reply arrives whole."""
    relay = await start_relay(upstream_idle_timeout=0.3)
    async with MockUpstream("trickle") as up:
        up.trickle_delay = 0.001
        await relay.channel("up", up.base_url, MODEL)
        token = await relay.user("t@example.com")
        status, raw = await call_text(http, relay.url, "light", token, "ab", stream=True)
    assert status == 200 and raw.endswith(b"echo: ab")


@pytest.mark.parametrize("stream", [False, True])
async def test_total_timeout_per_channel_ends_a_trickle(start_relay, http, stream):
    relay = await start_relay()
    async with MockUpstream("trickle") as up:
        up.trickle_delay = 0.002  # the first stream event (~190 bytes) comes within the limit, the rest cannot
        await relay.channel("up", up.base_url, MODEL, timeout=0.8)  # the channel's total limit
        token = await relay.user("t@example.com")
        started = time.monotonic()
        status, raw = await call_text(http, relay.url, "openai", token, "x" * 300, stream=stream)
        elapsed = time.monotonic() - started
    assert 0.7 < elapsed < 2
    if stream:  # the first event came in time; the stream then ends with an error event
        assert status == 200 and raw.endswith(b"data: [DONE]\n\n") and b'"timeout"' in raw
    else:
        assert status == 504
    row = await last_row(relay)
    assert (row["status"], row["charged"]) == (504, False)
