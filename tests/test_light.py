"""The light door, end to end: a real relay on loopback, a real mock upstream."""

from __future__ import annotations

import orjson
import pytest

from lightrelay.client import LightFrameParser

URL = "/api/light/chat/createChatCompletion"


@pytest.fixture
async def setup(relay, upstream):
    await relay.channel("mock", upstream.base_url, "gpt-3.5-turbo-1106,gpt-3.5-turbo-16k,gpt-4=gpt-4-real")
    return relay, upstream


async def test_non_stream_envelope(setup, http):
    relay, upstream = setup
    token = await relay.user("a@example.com", limit=10)
    status, body = await relay.light(http, {"token": token, "messages": [{"role": "user", "content": "你好"}],
                                            "params": {"n": 1, "stream": False}})
    assert status == 200
    assert body["code"] == 200 and body["message"] == "成功"
    completion = body["data"]["completion"]
    assert completion["object"] == "chat.completion"
    assert completion["model"] == "gpt-3.5-turbo-1106"  # the default model
    assert completion["choices"][0]["message"]["content"] == "echo: 你好"
    assert completion["usage"]["total_tokens"] == completion["usage"]["prompt_tokens"] + completion["usage"]["completion_tokens"]
    info = body["data"]["info"]
    assert info["token"] == token
    assert info["numOfOneDayCanCallApi"] == 10
    assert info["numOfOneDayAlreadyCallApi"] == 1
    assert info["apiDate"] == relay.lr.clock.today()
    assert info["isHasGPT4Auth"] is False
    # what the upstream got
    _, sent = upstream.requests[-1]
    assert sent["model"] == "gpt-3.5-turbo-1106" and sent["messages"] == [{"role": "user", "content": "你好"}]
    assert "token" not in sent


async def test_count_grows_and_prompt_field_and_bearer(setup, http):
    relay, _ = setup
    token = await relay.user("b@example.com", limit=5)
    _, first = await relay.light(http, {"token": token, "prompt": "old style"})
    assert first["data"]["completion"]["choices"][0]["message"]["content"] == "echo: old style"
    _, second = await relay.light(http, {"messages": [{"role": "user", "content": "x"}]},
                                  headers={"Authorization": f"Bearer {token}"})
    assert second["code"] == 200
    assert second["data"]["info"]["numOfOneDayAlreadyCallApi"] == 2


async def test_stream_frames(setup, http):
    relay, upstream = setup
    upstream.chunk_size = 2
    upstream.chunk_delay = 0.02
    token = await relay.user("s@example.com", limit=10)
    body = {"model": "gpt-3.5-turbo-16k", "token": token, "messages": [{"role": "user", "content": "流式 stream"}],
            "params": {"stream": True, "include_usage": True}}
    async with http.post(relay.url + URL, json=body, headers={"Accept": "text/event-stream"}) as r:
        assert r.status == 200
        assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert r.headers["access-control-allow-origin"] == "*"
        raw = b""
        reads = 0
        async for piece in r.content.iter_any():
            raw += piece
            reads += 1
    assert raw.startswith(b"start852{")
    assert b"undefined" not in raw
    parser = LightFrameParser()
    events = parser.feed(raw) + parser.close()
    kinds = [k for k, _ in events]
    assert kinds[0] == "header" and kinds[-1] == "frame"
    header = events[0][1]
    assert header["model"] == "gpt-3.5-turbo-16k" and header["id"] and header["created"]
    assert header["info"]["numOfOneDayAlreadyCallApi"] == 1
    text = "".join(v for k, v in events if k == "text")
    assert text == "echo: 流式 stream"
    final = events[-1][1]
    assert final["finish_reason"] == "stop"
    assert final["usage"]["completion_tokens"] > 0
    assert reads >= 2  # delivered as it came, not in one piece


async def test_stream_without_include_usage_ends_with_text(setup, http):
    relay, _ = setup
    token = await relay.user("t@example.com")
    body = {"token": token, "messages": [{"role": "user", "content": "hi"}], "params": {"stream": True}}
    async with http.post(relay.url + URL, json=body) as r:
        raw = await r.read()
    assert raw.endswith(b"end852echo: hi")


@pytest.mark.parametrize(
    ("payload", "status", "needle"),
    [
        (b"not json", 400, "JSON"),
        (b"", 400, "JSON"),
        (b'{"messages": []}', 400, "messages"),
        (b'{"messages": "hi"}', 400, "messages"),
        (b'{"messages": [{"role": "wizard", "content": "x"}]}', 400, "messages.0.role"),
        (b'{"messages": [{"role": "user", "content": 5}]}', 400, "messages.0.content"),
        (b'{"messages": [{"role": "user", "content": "x"}], "params": {"temperature": "hot"}}', 400, "temperature"),
        (b'{"messages": [{"role": "user", "content": "x"}], "params": {"n": 0}}', 400, "params.n"),
        (b'{"messages": [{"role": "user", "content": "x"}], "params": {"bogus": 1}}', 400, "bogus"),
        (b'[1, 2]', 400, "body"),
    ],
)
async def test_bad_input(setup, http, payload, status, needle):
    relay, _ = setup
    token = await relay.user("bad@example.com")
    if payload.startswith(b"{"):
        payload = payload[:-1] + (b', "token": "%s"}' % token.encode())
    async with http.post(relay.url + URL, data=payload, headers={"Accept-Language": "en",
                                                                 "Content-Type": "application/json"}) as r:
        body = orjson.loads(await r.read())
        assert r.status == status
    assert body["code"] == status and body["data"] is None
    assert needle in body["message"]
    assert await relay.lr.relay.quota.used_today(1) == 0  # nothing charged


async def test_auth_errors(setup, http):
    relay, _ = setup
    msgs = [{"role": "user", "content": "x"}]
    status, body = await relay.light(http, {"messages": msgs})
    assert (status, body["code"]) == (401, 401)
    assert "令牌" in body["message"]  # Chinese by default
    status, body = await relay.light(http, {"token": "sk-00000000-0000-4000-8000-000000000000", "messages": msgs})
    assert status == 401
    token = await relay.user("revoked@example.com")
    from lightrelay.services.accounts import revoke_token, update_account

    await revoke_token(relay.lr.engine, token=token)
    relay.lr.relay.auth.invalidate()
    status, _ = await relay.light(http, {"token": token, "messages": msgs})
    assert status == 401
    token2 = await relay.user("disabled@example.com")
    await update_account(relay.lr.engine, email="disabled@example.com", disabled=True)
    relay.lr.relay.auth.invalidate()
    status, body = await relay.light(http, {"token": token2, "messages": msgs})
    assert status == 403 and body["code"] == 403


async def test_model_errors(setup, http):
    relay, upstream = setup
    token = await relay.user("m@example.com", gpt4=False)
    msgs = [{"role": "user", "content": "x"}]
    status, body = await relay.light(http, {"token": token, "model": "no-such-model", "messages": msgs})
    assert (status, body["code"]) == (404, 404)
    status, body = await relay.light(http, {"token": token, "model": "gpt-4", "messages": msgs})
    assert (status, body["code"]) == (403, 403)
    assert "GPT-4" in body["message"]
    gpt4_token = await relay.user("g@example.com", gpt4=True)
    status, body = await relay.light(http, {"token": gpt4_token, "model": "gpt-4", "messages": msgs})
    assert status == 200 and body["data"]["info"]["isHasGPT4Auth"] is True
    assert upstream.requests[-1].body["model"] == "gpt-4-real"  # mapped to the channel's own name


async def test_oversize_body(start_relay, upstream, http):
    relay = await start_relay(max_body_bytes=1000)
    await relay.channel("mock", upstream.base_url, "gpt-3.5-turbo-1106")
    token = await relay.user("big@example.com")
    status, body = await relay.light(http, {"token": token, "messages": [{"role": "user", "content": "x" * 5000}]})
    assert (status, body["code"]) == (413, 413)
    assert await relay.lr.relay.quota.used_today(1) == 0


async def test_quota_429_and_reset_next_day(setup, http):
    relay, _ = setup
    token = await relay.user("q@example.com", limit=2)
    msgs = [{"role": "user", "content": "x"}]
    for _ in range(2):
        status, _ = await relay.light(http, {"token": token, "messages": msgs})
        assert status == 200
    async with http.post(relay.url + URL, json={"token": token, "messages": msgs}) as r:
        body = await r.json()
        assert r.status == 429 and body["code"] == 429
        assert int(r.headers["retry-after"]) == pytest.approx(relay.lr.clock.seconds_to_midnight(), abs=5)
    assert "2/2" in body["message"] and "重置" in body["message"]
    # the next day in the relay's time zone starts again at 0
    clock = relay.lr.relay.quota.clock
    real_today = clock.today
    clock.today = lambda: "2099-01-01"  # type: ignore[method-assign]
    try:
        status, body = await relay.light(http, {"token": token, "messages": msgs})
        assert status == 200
        assert body["data"]["info"]["apiDate"] == "2099-01-01"
        assert body["data"]["info"]["numOfOneDayAlreadyCallApi"] == 1
    finally:
        clock.today = real_today  # type: ignore[method-assign]


async def test_zero_and_unlimited_limits(setup, http):
    relay, _ = setup
    msgs = [{"role": "user", "content": "x"}]
    zero = await relay.user("zero@example.com", limit=0)
    status, _ = await relay.light(http, {"token": zero, "messages": msgs})
    assert status == 429
    unlimited = await relay.user("unl@example.com", limit=None)
    for _ in range(12):
        status, body = await relay.light(http, {"token": unlimited, "messages": msgs})
        assert status == 200
    assert body["data"]["info"]["numOfOneDayCanCallApi"] is None
    assert body["data"]["info"]["numOfOneDayAlreadyCallApi"] == 12


async def test_cors_preflight(setup, http):
    relay, _ = setup
    async with http.options(relay.url + URL, headers={"Origin": "http://other.example",
                                                      "Access-Control-Request-Method": "POST",
                                                      "Access-Control-Request-Headers": "content-type"}) as r:
        assert r.status == 204
        assert r.headers["access-control-allow-origin"] == "*"
        assert "POST" in r.headers["access-control-allow-methods"]
        assert r.headers["access-control-allow-headers"] == "content-type"
