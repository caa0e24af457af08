"""Issue 13 through the real doors and the CLI, on SQLite: redemption codes (appUse), extra calls after
the daily ones, model weights, per-token limits (models, expiry, addresses, RPM, daily limit)."""

from __future__ import annotations

import asyncio
import re
from collections import Counter

import pytest
from sqlalchemy import select, update

from lightrelay.db.models import accounts as accounts_table
from lightrelay.db.models import redeem_codes, tokens
from lightrelay.services import accounts, redeem, weights
from tests.test_cli import cli

MSG = [{"role": "user", "content": "hello there"}]
MODEL = "gpt-3.5-turbo-1106"
CODE_RE = re.compile(r"^[A-Z2-7]{5}-[A-Z2-7]{5}-[A-Z2-7]{5}-[A-Z2-7]{5}$")
APPUSE = "/api/light/exchangeCode/appUse"


async def _post(http, url: str, body: dict, headers: dict | None = None) -> tuple[int, dict, dict]:
    async with http.post(url, json=body, headers=headers) as r:
        return r.status, await r.json(content_type=None), {k.lower(): v for k, v in r.headers.items()}


async def _calls(relay, http, token: str, n: int, model: str = MODEL) -> Counter:
    async def one() -> int:
        status, _, _ = await _post(http, relay.url + "/api/light/chat/createChatCompletion",
                                   {"token": token, "model": model, "messages": MSG})
        return status

    return Counter(await asyncio.gather(*(one() for _ in range(n))))


async def _extra(relay, account_id: int = 1) -> int:
    async with relay.lr.engine.connect() as conn:
        return (await conn.execute(select(accounts_table.c.extra_calls)
                                   .where(accounts_table.c.id == account_id))).scalar_one()


async def test_cli_codes_redeem_and_extra_calls(relay, upstream, http):
    await relay.channel("mock", upstream.base_url, f"{MODEL},gpt-4")
    token = await relay.user("buyer@example.com", limit=2)
    _, out, _ = await cli(relay, "code", "add", "--calls", "3", "--count", "4", "--gpt4", "--note", "promo")
    codes = out.strip().splitlines()
    assert len(codes) == 4 and all(CODE_RE.match(c) for c in codes) and len(set(codes)) == 4
    _, out, _ = await cli(relay, "code", "list", "--unused")
    assert out.count("unused") == 4 and "promo" in out and codes[0] not in out  # masked only

    status, body, _ = await _post(http, relay.url + "/api/light/chat/createChatCompletion",
                                  {"token": token, "model": "gpt-4", "messages": MSG})
    assert status == 403
    status, body, headers = await _post(http, relay.url + APPUSE, {"token": token, "code": codes[0].lower()})
    assert status == 200 and body["code"] == 200 and body["message"] == "成功"
    assert headers["access-control-allow-origin"] == "*"
    info = body["data"]["info"]
    assert info["numOfExtraCallApi"] == 3 and info["isHasGPT4Auth"] is True and info["token"] == token
    assert info["numOfOneDayCanCallApi"] == 2 and info["numOfOneDayAlreadyCallApi"] == 0

    # the daily calls first, then the extra ones; info says how many extra calls are left
    seen = []
    for _ in range(6):
        status, body, _ = await _post(http, relay.url + "/api/light/chat/createChatCompletion",
                                      {"token": token, "model": "gpt-4", "messages": MSG})
        seen.append((status, body["data"]["info"]["numOfOneDayAlreadyCallApi"],
                     body["data"]["info"]["numOfExtraCallApi"]) if status == 200 else (status, body["message"]))
    assert seen[:5] == [(200, 1, 3), (200, 2, 3), (200, 2, 2), (200, 2, 1), (200, 2, 0)]
    assert seen[5][0] == 429 and "额外次数" in seen[5][1]

    # used, unknown, disabled, expired: clear 4xx in the light shape
    status, body, _ = await _post(http, relay.url + APPUSE, {"token": token, "code": codes[0]})
    assert (status, body["code"], body["data"]) == (409, 409, None) and "已被使用" in body["message"]
    status, body, _ = await _post(http, relay.url + APPUSE, {"token": token, "code": "AAAAA-BBBBB-CCCCC-DDDDD"},
                                  {"Accept-Language": "en"})
    assert status == 404 and body["message"] == "no such redemption code"
    await cli(relay, "code", "disable", codes[1])
    status, body, _ = await _post(http, relay.url + APPUSE, {"token": token, "code": codes[1]})
    assert status == 403 and "停用" in body["message"]
    _, out, _ = await cli(relay, "code", "add", "--calls", "1", "--expires", "2020-01-01")
    status, body, _ = await _post(http, relay.url + APPUSE, {"token": token, "code": out.strip()})
    assert status == 410 and "过期" in body["message"]
    status, body, _ = await _post(http, relay.url + APPUSE, {"token": "sk-nope", "code": codes[2]})
    assert status == 401
    async with relay.lr.engine.connect() as conn:
        hashes = [r[0] for r in await conn.execute(select(redeem_codes.c.code_hash))]
    assert all(len(h) == 64 and h not in codes for h in hashes)  # stored hashed


async def test_a_failed_call_gives_its_extra_call_back(relay, upstream, http):
    await relay.channel("mock", upstream.base_url, MODEL)
    token = await relay.user("refund@example.com", limit=0)
    _, codes = await redeem.add_codes(relay.lr.engine, calls=2)
    await _post(http, relay.url + APPUSE, {"token": token, "code": codes[0]})
    upstream.mode = "fail-500"
    status, _, _ = await _post(http, relay.url + "/api/light/chat/createChatCompletion",
                               {"token": token, "messages": MSG})
    assert status == 502
    assert await _extra(relay) == 2
    upstream.mode = "ok"
    assert await _calls(relay, http, token, 5) == {200: 2, 429: 3}
    assert await _extra(relay) == 0


async def test_daily_2_plus_5_extra_admits_exactly_7_of_100(relay, upstream, http):
    await relay.channel("mock", upstream.base_url, MODEL)
    upstream.chunk_delay = 0.005
    token = await relay.user("race@example.com", limit=2)
    _, codes = await redeem.add_codes(relay.lr.engine, calls=5)
    await _post(http, relay.url + APPUSE, {"token": token, "code": codes[0]})
    assert await _calls(relay, http, token, 100) == {200: 7, 429: 93}
    assert await _extra(relay) == 0
    assert await relay.lr.relay.quota.used_today(1) == 2


async def test_one_code_raced_by_50_accounts_credits_exactly_once(start_relay, http):
    # 50 tokens no process has seen yet, from one address at once: past the unknown-token limiter's
    # default (each uncached token counts until its read says it is good)
    relay = await start_relay(rate_redeem="1000/60", rate_bad_token="1000/60")
    tokens_ = [await relay.user(f"r{i}@example.com", limit=1) for i in range(50)]
    _, codes = await redeem.add_codes(relay.lr.engine, calls=10)
    results = await asyncio.gather(*(_post(http, relay.url + APPUSE, {"token": t, "code": codes[0]})
                                     for t in tokens_))
    assert Counter(s for s, _, _ in results) == {200: 1, 409: 49}
    async with relay.lr.engine.connect() as conn:
        balances = [r[0] for r in await conn.execute(select(accounts_table.c.extra_calls))]
    assert sorted(balances) == [0] * 49 + [10]


async def test_a_code_submitted_1000_times_is_rate_limited(relay, http):
    token = await relay.user("hammer@example.com")
    _, codes = await redeem.add_codes(relay.lr.engine, calls=1)

    async def one(i: int) -> int:
        s, _, _ = await _post(http, relay.url + APPUSE, {"token": token, "code": codes[0] if i % 2 else "x" * 20})
        return s

    statuses = Counter()
    for start in range(0, 1000, 100):
        statuses.update(await asyncio.gather(*(one(i) for i in range(start, start + 100))))
    assert statuses[429] >= 990 and statuses[200] <= 1 and sum(statuses.values()) == 1000
    assert await _extra(relay) <= 1
    status, body, headers = await _post(http, relay.url + APPUSE, {"token": token, "code": codes[0]})
    assert status == 429 and int(headers["retry-after"]) > 0 and "兑换" in body["message"]


async def test_hostile_code_input(relay, http):
    token = await relay.user("hostile@example.com")
    for body in ({"token": token}, {"token": token, "code": 5}, {"token": token, "code": "x" * 5000},
                 {"token": token, "code": ""}, {"token": ["a"], "code": "x"}):
        status, answer, _ = await _post(http, relay.url + APPUSE, body)
        assert status in (400, 401, 404) and answer["code"] == status, (body, answer)
    async with http.post(relay.url + APPUSE, data=b"{not json") as r:
        assert r.status == 400
    code, _, err = await cli(relay, "code", "add", "--calls", "1", "--count", "1000000", ok=False)
    assert code != 0 and "count" in err
    code, _, err = await cli(relay, "code", "add", "--calls", "1", "--expires", "2030-13-45", ok=False)
    assert code != 0 and "YYYY-MM-DD" in err
    code, _, err = await cli(relay, "code", "add", "--calls", "-5", ok=False)
    assert code != 0


async def test_model_weights(relay, upstream, http):
    await relay.channel("mock", upstream.base_url, f"{MODEL},gpt-4")
    token = await relay.user("weights@example.com", limit=10, gpt4=True)
    _, out, _ = await cli(relay, "model", "set", "gpt-4", "--weight", "5")
    assert "weight 5" in out
    await relay.lr.reload_channels()
    _, body, _ = await _post(http, relay.url + "/api/light/chat/createChatCompletion",
                             {"token": token, "model": MODEL, "messages": MSG})
    assert body["data"]["info"]["numOfOneDayAlreadyCallApi"] == 1
    _, body, _ = await _post(http, relay.url + "/api/light/chat/createChatCompletion",
                             {"token": token, "model": "gpt-4", "messages": MSG})
    assert body["data"]["info"]["numOfOneDayAlreadyCallApi"] == 6
    # 4 left: a gpt-4 call (5) no longer fits, a weight-1 call still does
    status, body, _ = await _post(http, relay.url + "/api/light/chat/createChatCompletion",
                                  {"token": token, "model": "gpt-4", "messages": MSG})
    assert status == 429 and "5" in body["message"]
    # extra calls pay for gpt-4 in the same units
    _, codes = await redeem.add_codes(relay.lr.engine, calls=7)
    await _post(http, relay.url + APPUSE, {"token": token, "code": codes[0]})
    status, body, _ = await _post(http, relay.url + "/api/light/chat/createChatCompletion",
                                  {"token": token, "model": "gpt-4", "messages": MSG})
    assert status == 200 and body["data"]["info"]["numOfExtraCallApi"] == 2
    assert await _calls(relay, http, token, 10) == {200: 6, 429: 4}  # the 4 daily units left, then 2 extra
    await weights.set_weight(relay.lr.engine, model="gpt-4", weight=1)
    await relay.lr.reload_channels()
    assert relay.lr.relay.weights == {}


async def test_per_token_limits(start_relay, upstream, http):
    relay = await start_relay(trusted_proxies="127.0.0.1/32")
    await relay.channel("mock", upstream.base_url, f"{MODEL},gpt-4")
    await relay.user("limits@example.com", limit=100, gpt4=True)
    url = relay.url + "/v1/chat/completions"

    async def openai_call(token: str, model: str = MODEL, xff: str | None = None) -> tuple[int, dict, dict]:
        headers = {"Authorization": f"Bearer {token}"}
        if xff:
            headers["X-Forwarded-For"] = xff
        return await _post(http, url, {"model": model, "messages": MSG}, headers)

    _, out, _ = await cli(relay, "token", "add", "limits@example.com", "--models", MODEL)
    only35 = out.strip().splitlines()[-1]
    assert (await openai_call(only35))[0] == 200
    status, body, _ = await openai_call(only35, "gpt-4")
    assert status == 403 and body["error"]["code"] == "model_not_allowed"

    _, out, _ = await cli(relay, "token", "add", "limits@example.com", "--expires", "2020-01-01")
    status, body, _ = await openai_call(out.strip().splitlines()[-1])
    assert status == 401 and body["error"]["code"] == "token_expired"
    _, out, _ = await cli(relay, "token", "add", "limits@example.com", "--expires", "2999-01-01")
    assert (await openai_call(out.strip().splitlines()[-1]))[0] == 200

    _, out, _ = await cli(relay, "token", "add", "limits@example.com", "--ips", "10.1.0.0/16, 192.168.9.9")
    ipt = out.strip().splitlines()[-1]
    status, body, _ = await openai_call(ipt)  # 127.0.0.1 is a trusted proxy; no X-Forwarded-For: itself
    assert status == 403 and body["error"]["code"] == "ip_not_allowed"
    assert (await openai_call(ipt, xff="10.1.2.3"))[0] == 200
    assert (await openai_call(ipt, xff="10.1.2.3, 192.168.9.9"))[0] == 200  # the last untrusted hop counts
    assert (await openai_call(ipt, xff="192.168.9.9, 8.8.8.8"))[0] == 403  # a made-up first hop does not

    _, out, _ = await cli(relay, "token", "add", "limits@example.com", "--rpm", "3")
    rpm = out.strip().splitlines()[-1]
    results = await asyncio.gather(*(openai_call(rpm) for _ in range(10)))
    assert Counter(s for s, _, _ in results) == {200: 3, 429: 7}
    _, body, headers = next(r for r in results if r[0] == 429)
    assert body["error"]["code"] == "rpm_limit_reached" and int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-limit-requests"] == "3" and headers["x-ratelimit-remaining-requests"] == "0"

    _, out, _ = await cli(relay, "token", "add", "limits@example.com", "--daily-limit", "4")
    daily = out.strip().splitlines()[-1]
    results = await asyncio.gather(*(openai_call(daily) for _ in range(20)))
    assert Counter(s for s, _, _ in results) == {200: 4, 429: 16}
    status, body, _ = await openai_call(daily)  # (refusals while calls ran may say "calls in flight")
    assert status == 429 and body["error"]["code"] == "token_daily_limit_reached"
    # it counts inside the account's: 1 + 1 + 2 + 3 + 4 calls so far today
    assert await relay.lr.relay.quota.used_today(1) == 11

    for bad in (["--ips", "10.0.0.0/99"], ["--ips", "hello"], ["--expires", "tomorrow"], ["--rpm", "0"],
                ["--daily-limit", "-1"], ["--models", " , "]):
        code, _, err = await cli(relay, "token", "add", "limits@example.com", *bad, ok=False)
        assert code != 0 and "Traceback" not in err, (bad, err)


async def test_token_checks_ride_on_the_cache(start_relay, upstream, http):
    """Per-token checks use the cached principal: a change in the database shows only after invalidation."""
    relay = await start_relay(auth_cache_ttl=600)
    await relay.channel("mock", upstream.base_url, MODEL)
    token = await relay.user("cache@example.com")
    assert (await _calls(relay, http, token, 1)) == {200: 1}
    async with relay.lr.engine.begin() as conn:
        await conn.execute(update(tokens).values(models=["other"]))
    assert (await _calls(relay, http, token, 1)) == {200: 1}  # still the cached answer (ttl 3 s)
    relay.lr.relay.auth.invalidate()
    assert (await _calls(relay, http, token, 1)) == {403: 1}


def test_token_limits_parse():
    limits = accounts.TokenLimits.parse(models="b, a,a", ips="10.0.0.1,::1/128", rpm="60", daily_limit="0",
                                        expires="2030-01-31")
    assert limits.models == ["a", "b"] and limits.ips == "10.0.0.1/32,::1/128"
    assert limits.rpm == 60 and limits.daily_limit == 0 and limits.expires_at is not None
    with pytest.raises(accounts.AccountError):
        accounts.TokenLimits.parse(ips=",".join(["10.0.0.1"] * 101))


async def test_image_calls_from_a_code_after_the_daily_image_limit(start_relay, upstream, http):
    relay = await start_relay(default_image_limit=2)
    await relay.channel("mock", upstream.base_url, "dall-e-3")
    token = await relay.user("painter@example.com")
    _, out, _ = await cli(relay, "code", "add", "--calls", "0", "--image-calls", "3")
    status, _, _ = await _post(http, relay.url + APPUSE, {"token": token, "code": out.strip()})
    assert status == 200

    async def image() -> int:
        status, _, _ = await _post(http, relay.url + "/v1/images/generations", {"model": "dall-e-3", "prompt": "x"},
                                   {"Authorization": f"Bearer {token}"})
        return status

    assert Counter(await asyncio.gather(*(image() for _ in range(20)))) == {200: 5, 429: 15}
    async with relay.lr.engine.connect() as conn:
        assert (await conn.execute(select(accounts_table.c.extra_image_calls))).scalar_one() == 0
    # a failed image call gives its extra image back
    _, out, _ = await cli(relay, "code", "add", "--calls", "0", "--image-calls", "1")
    await _post(http, relay.url + APPUSE, {"token": token, "code": out.strip()})
    upstream.mode = "fail-500"
    assert await image() == 502
    async with relay.lr.engine.connect() as conn:
        assert (await conn.execute(select(accounts_table.c.extra_image_calls))).scalar_one() == 1
