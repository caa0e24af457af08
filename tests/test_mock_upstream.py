"""Quick checks of the mock upstream itself (tests/mock_upstream.py)."""

from __future__ import annotations

import asyncio
import urllib.request

import aiohttp
import orjson
import pytest

from tests.mock_upstream import MockUpstream, refused_base_url

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello 你好"}]


async def post(up: MockUpstream, timeout: float = 5, **body) -> tuple[int, dict, bytes]:
    """POST a chat request; returns (status, headers, raw body)."""
    body = {"model": "mock-model", "messages": MESSAGES, **body}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s,
        s.post(f"{up.base_url}/chat/completions", json=body, headers={"Authorization": "Bearer sk-up"}) as r,
    ):
        return r.status, dict(r.headers), await r.read()


def sse_events(raw: bytes) -> list:
    """The data payloads of an SSE body, JSON-decoded except the final [DONE]."""
    out = []
    for event in raw.decode().split("\n\n"):
        if event.startswith("data: "):
            data = event[6:]
            out.append(data if data == "[DONE]" else orjson.loads(data))
    return out


async def test_non_stream_echo_usage_and_recording():
    async with MockUpstream() as up:
        assert up.base_url.startswith("http://127.0.0.1:") and up.base_url.endswith("/v1")
        status, _, raw = await post(up, n=2)
        reply = orjson.loads(raw)
        assert status == 200
        assert [c["message"]["content"] for c in reply["choices"]] == ["echo: hello 你好", "echo#1: hello 你好"]
        assert reply["usage"]["completion_tokens"] == 4 + 4
        assert reply["usage"]["total_tokens"] == reply["usage"]["prompt_tokens"] + 8
        headers, body = up.requests[-1]
        assert headers["authorization"] == "Bearer sk-up"
        assert body["model"] == "mock-model" and body["n"] == 2


async def test_stream_with_usage_and_n():
    async with MockUpstream() as up:
        up.chunk_delay = 0.001
        status, headers, raw = await post(up, stream=True, n=2, stream_options={"include_usage": True})
        assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
        events = sse_events(raw)
        assert events[-1] == "[DONE]"
        usage = events[-2]
        assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 8
        texts = {0: "", 1: ""}
        for ev in events[:-2]:
            for c in ev["choices"]:
                texts[c["index"]] += c["delta"].get("content", "")
        assert texts == {0: "echo: hello 你好", 1: "echo#1: hello 你好"}


async def test_no_usage_and_max_tokens():
    async with MockUpstream(mode="no-usage") as up:
        _, _, raw = await post(up, stream=True, stream_options={"include_usage": True}, max_tokens=1)
        events = sse_events(raw)
        assert all("usage" not in ev for ev in events[:-1])
        assert events[-2]["choices"][0]["finish_reason"] == "length"
        assert "".join(c["delta"].get("content", "") for ev in events[:-1] for c in ev["choices"]) == "echo"


@pytest.mark.parametrize("mode,status", [("fail-429", 429), ("fail-500", 500), ("fail-503", 503)])
async def test_error_statuses(mode, status):
    async with MockUpstream(mode=mode) as up:
        got, headers, raw = await post(up)
        assert got == status and "error" in orjson.loads(raw)
        assert (headers.get("Retry-After") == "1") == (status == 429)


async def test_mode_by_model_name_and_queue():
    async with MockUpstream() as up:
        assert (await post(up, model="fail-500"))[0] == 500
        up.queued_modes = ["fail-503"]
        assert (await post(up))[0] == 503
        assert (await post(up))[0] == 200


async def test_malformed():
    async with MockUpstream(mode="malformed") as up:
        status, _, raw = await post(up)
        assert status == 200
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(raw)
        _, _, raw = await post(up, stream=True)
        with pytest.raises(orjson.JSONDecodeError):
            sse_events(raw)


async def test_cut_and_drop():
    async with MockUpstream(mode="cut") as up:
        with pytest.raises(aiohttp.ClientPayloadError):
            await post(up, stream=True)
        with pytest.raises(aiohttp.ClientPayloadError):
            await post(up)
        up.mode = "drop"
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await post(up)


async def test_stall_and_trickle():
    async with MockUpstream(mode="stall") as up:
        with pytest.raises(asyncio.TimeoutError):
            await post(up, timeout=0.3)
        up.mode, up.trickle_delay = "trickle", 0.0005
        _, _, raw = await post(up, stream=True)
        assert sse_events(raw)[-1] == "[DONE]"


async def test_refused():
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ClientConnectorError):
            await s.get(f"{refused_base_url()}/models")


def test_in_thread_with_sync_client():
    up = MockUpstream(api_key="sk-up").start_in_thread()
    try:
        req = urllib.request.Request(f"{up.base_url}/models", headers={"Authorization": "Bearer sk-up"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert "mock-model" in [m["id"] for m in orjson.loads(r.read())["data"]]
        req = urllib.request.Request(
            f"{up.base_url}/chat/completions",
            data=orjson.dumps({"model": "m", "messages": MESSAGES}),
            headers={"Content-Type": "application/json", "Authorization": "Bearer wrong"},
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code == 401
        err.value.close()
    finally:
        up.stop()
