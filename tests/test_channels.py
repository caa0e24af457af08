"""Channels: mapping, API keys, priority, failover before the first byte, cooling down."""

from __future__ import annotations

import openai
import pytest

from lightrelay.routing import Router
from tests.mock_upstream import MockUpstream, refused_base_url

MSG = [{"role": "user", "content": "hi"}]


async def test_api_key_and_mapping_sent_upstream(relay, http):
    async with MockUpstream(api_key="sk-upstream-key") as up:
        await relay.channel("keyed", up.base_url, "gpt-3.5-turbo-1106=their-model", api_key="sk-upstream-key")
        token = await relay.user("k@example.com")
        status, body = await relay.light(http, {"token": token, "messages": MSG})
        assert status == 200
        assert body["data"]["completion"]["model"] == "gpt-3.5-turbo-1106"
        headers, sent = up.requests[-1]
        assert headers["Authorization"] == "Bearer sk-upstream-key"
        assert sent["model"] == "their-model"


async def test_key_is_encrypted_at_rest(relay):
    await relay.channel("secret", "http://127.0.0.1:9/v1", "m1", api_key="sk-very-secret-upstream-key")
    from sqlalchemy import select

    from lightrelay.db.models import channels

    async with relay.lr.engine.connect() as conn:
        stored = (await conn.execute(select(channels.c.api_key_enc))).scalar_one()
    assert "sk-very-secret" not in stored
    assert relay.lr.keybox.open(stored) == "sk-very-secret-upstream-key"


@pytest.mark.parametrize("failure", ["refused", "fail-500", "fail-503", "fail-429", "stall", "drop", "malformed"])
@pytest.mark.parametrize("stream", [False, True])
async def test_failover_before_first_byte(start_relay, upstream, http, failure, stream):
    relay = await start_relay(upstream_first_byte_timeout=0.5)
    bad_url = refused_base_url() if failure == "refused" else upstream.base_url
    bad_model = "gpt-3.5-turbo-1106" if failure == "refused" else failure
    async with MockUpstream() as good:
        await relay.channel("bad", bad_url, f"gpt-3.5-turbo-1106={bad_model}", priority=10)
        await relay.channel("good", good.base_url, "gpt-3.5-turbo-1106", priority=1)
        token = await relay.user("fo@example.com")
        client = openai.AsyncOpenAI(base_url=relay.url + "/v1", api_key=token, max_retries=0)
        try:
            if stream:
                chunks = [c async for c in await client.chat.completions.create(
                    model="gpt-3.5-turbo-1106", messages=MSG, stream=True)]
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            else:
                text = (await client.chat.completions.create(model="gpt-3.5-turbo-1106", messages=MSG)
                        ).choices[0].message.content
        finally:
            await client.close()
        assert text == "echo: hi"
        assert len(good.requests) == 1
        if failure != "refused":
            assert len(upstream.requests) == 1  # the bad one was tried first
    await relay.lr.recorder.flush()
    from lightrelay.services.usage import recent_calls

    (row,) = await recent_calls(relay.lr.engine)
    assert row["channel"] == "good" and row["status"] == 200 and row["charged"]


async def test_all_channels_fail_gives_one_clean_error(relay, http):
    await relay.channel("a", refused_base_url(), "gpt-3.5-turbo-1106")
    await relay.channel("b", refused_base_url(), "gpt-3.5-turbo-1106")
    token = await relay.user("all@example.com")
    status, body = await relay.light(http, {"token": token, "messages": MSG})
    assert (status, body["code"]) == (502, 502)
    assert body["message"]
    assert await relay.lr.relay.quota.used_today(1) == 0


async def test_upstream_timeout_is_504(start_relay, upstream, http):
    relay = await start_relay(upstream_first_byte_timeout=0.3)
    await relay.channel("slow", upstream.base_url, "gpt-3.5-turbo-1106=stall")
    token = await relay.user("slow@example.com")
    status, body = await relay.light(http, {"token": token, "messages": MSG})
    assert (status, body["code"]) == (504, 504)


async def test_priority_order_and_disabled_channels(relay, http):
    async with MockUpstream() as low, MockUpstream() as high:
        await relay.channel("low", low.base_url, "gpt-3.5-turbo-1106", priority=1)
        await relay.channel("high", high.base_url, "gpt-3.5-turbo-1106", priority=5)
        token = await relay.user("prio@example.com")
        for _ in range(3):
            await relay.light(http, {"token": token, "messages": MSG})
        assert (len(high.requests), len(low.requests)) == (3, 0)
        from lightrelay.services.channels import update_channel

        await update_channel(relay.lr.engine, relay.lr.keybox, name="high", enabled=False)
        await relay.lr.reload_channels()
        await relay.light(http, {"token": token, "messages": MSG})
        assert (len(high.requests), len(low.requests)) == (3, 1)


async def test_weights_spread_calls(relay, http):
    async with MockUpstream() as a, MockUpstream() as b:
        await relay.channel("a", a.base_url, "gpt-3.5-turbo-1106", weight=1)
        await relay.channel("b", b.base_url, "gpt-3.5-turbo-1106", weight=1)
        token = await relay.user("w@example.com", limit=None)
        for _ in range(40):
            await relay.light(http, {"token": token, "messages": MSG})
        assert len(a.requests) > 5 and len(b.requests) > 5


def test_breaker_cools_and_probes(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("lightrelay.routing.time.monotonic", lambda: now[0])
    router = Router(make_provider=lambda row: object(), default_models=(), local_auto=False,
                    failures_to_cool=3, cooldown=30)
    router.load([{"name": n, "type": "openai", "base_url": "x", "api_key_enc": None, "models": {"m": "m"},
                  "priority": p, "weight": 1, "enabled": True, "timeout": None} for n, p in (("a", 2), ("b", 1))])
    assert [r.channel for r in router.routes("m")] == ["a", "b"]
    for _ in range(3):
        router.failed("a")
    assert router.states()["a"]["state"] == "open"
    assert [r.channel for r in router.routes("m")] == ["b"]
    now[0] += 31
    assert router.states()["a"]["state"] == "half-open"
    # routes that are never tried (the quota refused, or "b" would have answered first) claim nothing
    for _ in range(3):
        assert [r.channel for r in router.routes("m")] == ["a", "b"]
    assert router.claim("a")  # the call that tries it is the one probe
    assert [r.channel for r in router.routes("m")] == ["b"]  # only one at a time
    assert not router.claim("a")  # a call admitted before the probe began skips it
    router.failed("a")  # the probe failed: open again
    assert router.states()["a"]["state"] == "open"
    now[0] += 31
    assert router.claim("a")
    router.released("a")  # the probe's caller left: neither verdict, the next call probes
    assert router.claim("a")
    router.succeeded("a")
    assert router.states()["a"] == {"state": "closed", "failures": 0, "enabled": True, "models": ["m"]}


async def test_quota_refusal_while_half_open_does_not_wedge_the_channel(start_relay, http):
    """A call refused by its quota after routing never probes; the channel recovers with the next call."""
    relay = await start_relay()
    async with MockUpstream() as up:
        await relay.channel("only", up.base_url, "gpt-3.5-turbo-1106")
        spent = await relay.user("spent@example.com", limit=1)
        fine = await relay.user("fine@example.com", limit=100)
        body = {"model": "gpt-3.5-turbo-1106", "messages": MSG}
        async with http.post(relay.url + "/v1/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {spent}"}) as r:
            assert r.status == 200
        router = relay.lr.router
        for _ in range(3):
            router.failed("only")
        breaker = router._breakers["only"]
        breaker.open_until = 1.0  # the cooldown is over: half-open
        for _ in range(3):  # refused by the quota while half-open
            async with http.post(relay.url + "/v1/chat/completions", json=body,
                                 headers={"Authorization": f"Bearer {spent}"}) as r:
                assert r.status == 429
        async with http.post(relay.url + "/v1/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {fine}"}) as r:
            assert r.status == 200  # this call is the probe, and it closes the breaker
        assert router.states()["only"]["state"] == "closed"


async def test_local_is_default_only_without_channels(start_relay):
    relay = await start_relay(local_model="auto")
    assert relay.lr.router.models() == sorted(relay.settings.default_models)
    assert {r.channel for r in relay.lr.router.routes("gpt-4")} == {"builtin-local"}
    await relay.channel("up", "http://127.0.0.1:9/v1", "other-model")
    assert relay.lr.router.models() == ["other-model"]


async def test_per_channel_first_byte_timeout_fails_over_fast(start_relay, upstream, http):
    import time

    relay = await start_relay(upstream_first_byte_timeout=60)  # the relay default is long
    async with MockUpstream() as good:
        await relay.channel("stalls", upstream.base_url, "gpt-3.5-turbo-1106=stall", priority=5,
                            first_byte_timeout=0.3)
        await relay.channel("good", good.base_url, "gpt-3.5-turbo-1106", priority=1)
        token = await relay.user("pct@example.com")
        started = time.perf_counter()
        status, body = await relay.light(http, {"token": token, "messages": MSG})
        assert status == 200 and body["data"]["completion"]["choices"][0]["message"]["content"] == "echo: hi"
        assert time.perf_counter() - started < 10  # the channel's 0.3 s, not the relay's 60 s
        assert len(upstream.requests) == 1 and len(good.requests) == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_cookies_are_not_kept(relay, http, stream):
    """An upstream's Set-Cookie (a CDN's, say) set during one caller's call is not sent on the next."""
    async with MockUpstream() as up:
        up.set_cookie = "__cf_bm=caller-a; Path=/"
        # by name: aiohttp's default cookie jar ignores cookies from bare IP addresses
        await relay.channel("cookies", up.base_url.replace("127.0.0.1", "localhost"), "gpt-3.5-turbo-1106")
        tokens = [await relay.user("a@example.com"), await relay.user("b@example.com")]
        for token in tokens:
            async with http.post(relay.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {token}"},
                                 json={"model": "gpt-3.5-turbo-1106", "stream": stream, "messages": MSG}) as r:
                assert r.status == 200
                await r.read()
        assert len(up.requests) == 2
        assert all("Cookie" not in rec.headers for rec in up.requests)
