"""Issue 13's console flows in a real headless Chromium: an admin makes a batch of codes and sets a
model weight; a user redeems a code in the 兑换码 box and makes a limited token, which the relay
then enforces; the admin's CSV export; a console session redeems through appUse with its CSRF token."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from lightrelay.services import redeem
from tests.web.test_browser import PASSWORD, login, new_page

pytestmark = pytest.mark.slow
MODEL = "gpt-3.5-turbo-1106"
MSG = [{"role": "user", "content": "hi"}]


async def test_admin_makes_a_batch_and_a_user_redeems_one(start_relay, upstream, browser, http) -> None:
    relay = await start_relay()
    await relay.channel("mock", upstream.base_url, f"{MODEL},gpt-4")
    await relay.user("boss@example.com", admin=True, password=PASSWORD)
    await relay.user("amy@example.com", password=PASSWORD, limit=1)
    admin_ctx, admin = await new_page(browser, relay)
    user_ctx, user = await new_page(browser, relay)

    await login(admin, "boss@example.com", PASSWORD)
    await admin.goto("/admin")
    await admin.click("nav.sub a[href='/admin/codes']")
    await admin.fill("#codes-form input[name=calls]", "3")
    await admin.fill("#codes-form input[name=count]", "5")
    await admin.fill("#codes-form input[name=note]", "launch")
    await admin.check("#codes-form input[name=gpt4]")
    await admin.click("#make-codes")
    codes = (await admin.input_value("#made-codes")).split("\n")
    assert len(codes) == 5 and all(re.fullmatch(r"[A-Z2-7]{5}(-[A-Z2-7]{5}){3}", c) for c in codes)
    assert await admin.locator("#codes tr[data-state=unused]").count() == 5
    async with admin.expect_download() as download_info:
        await admin.click("#codes-csv")
    path = await (await download_info.value).path()
    csv_text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    assert csv_text.count("launch") == 5 and codes[0] not in csv_text  # masked: codes are stored hashed

    # the user redeems one in the 兑换码 box
    await login(user, "amy@example.com", PASSWORD)
    assert await user.inner_text("#extra-calls") == "0"
    await user.fill("#redeem-form input[name=code]", codes[0])
    await user.click("#redeem")
    assert "3" in await user.inner_text("#notice")
    assert await user.inner_text("#extra-calls") == "3"
    await user.fill("#redeem-form input[name=code]", codes[0])
    await user.click("#redeem")
    assert "已被使用" in await user.inner_text("#form-error")
    await admin.reload()
    row = admin.locator("#codes tr[data-state=used]")
    assert await row.count() == 1 and "amy@example.com" in await row.inner_text()

    # the admin disables another
    await admin.locator("#codes tr[data-state=unused] button").first.click()
    assert await admin.locator("#codes tr[data-state=disabled]").count() == 1

    # the admin sets gpt-4's weight; it shows on the models page
    await admin.goto("/admin/models")
    form = admin.locator("form[data-model='gpt-4']")
    await form.locator("input[name=weight]").fill("2")
    await form.locator("button").click()
    await admin.wait_for_url("**/admin/models")
    assert await admin.locator("form[data-model='gpt-4'] input[name=weight]").input_value() == "2"
    assert relay.lr.relay.weights == {"gpt-4": 2}
    await user.reload()  # the 我的 page says what a gpt-4 call counts
    assert "gpt-4×2" in (await user.inner_text("#token-form ~ p")).replace(" ", "")

    # the user's extra calls (and GPT-4 access) work through the API: 1 daily call + 3 extra units
    token = await relay.user("amy2@example.com", limit=0)  # (another account, to show codes are per account)
    async with http.post(relay.url + "/api/light/exchangeCode/appUse", json={"token": token, "code": codes[2]}) as r:
        assert r.status == 200 and (await r.json())["data"]["info"]["numOfExtraCallApi"] == 3
    assert admin.js_errors == [] and user.js_errors == []
    await admin_ctx.close()
    await user_ctx.close()


async def test_user_makes_a_limited_token_on_the_me_page(start_relay, upstream, browser, http) -> None:
    relay = await start_relay()
    await relay.channel("mock", upstream.base_url, f"{MODEL},gpt-4")
    await relay.user("lim@example.com", password=PASSWORD, gpt4=True)
    context, page = await new_page(browser, relay)
    await login(page, "lim@example.com", PASSWORD)

    await page.fill("#token-form input[name=name]", "bot")
    await page.click("#token-form summary")
    await page.fill("#token-form input[name=models]", MODEL)
    await page.fill("#token-form input[name=rpm]", "2")
    await page.fill("#token-form input[name=ips]", "127.0.0.1")
    await page.click("#create-token")
    token = await page.inner_text("#new-token")
    assert token.startswith("sk-")
    limits = await page.locator("#tokens tbody tr").first.inner_text()
    assert MODEL in limits and "2/min" in limits and "127.0.0.1/32" in limits

    async def call(model: str) -> tuple[int, Any]:
        async with http.post(relay.url + "/v1/chat/completions", json={"model": model, "messages": MSG},
                             headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status, await r.json()

    status, body = await call("gpt-4")
    assert status == 403 and body["error"]["code"] == "model_not_allowed"
    assert [(await call(MODEL))[0] for _ in range(3)] == [200, 200, 429]

    # a malformed address list is refused with the reason, and no token is made
    await page.click("#token-form summary")
    await page.fill("#token-form input[name=ips]", "300.1.1.1/8")
    await page.click("#create-token")
    assert "300.1.1.1/8" in await page.inner_text("#form-error")
    assert await page.locator("#tokens tbody tr").count() == 2  # the account's first token and "bot", no more
    assert page.js_errors == []
    await context.close()


async def test_appuse_with_a_console_session(start_relay, visitor) -> None:
    relay = await start_relay()
    await relay.user("sess@example.com", password=PASSWORD)
    _, codes = await redeem.add_codes(relay.lr.engine, calls=4)
    page = await visitor(relay)
    await page.login("sess@example.com", PASSWORD)
    await page.get("/me/api")
    url = relay.url + "/api/light/exchangeCode/appUse"
    async with page.session.post(url, json={"code": codes[0]}) as r:  # no CSRF token: refused
        assert r.status == 403
    async with page.session.post(url, json={"code": codes[0]}, headers={"X-CSRF-Token": page.csrf}) as r:
        body = await r.json()
        assert r.status == 200 and body["data"]["info"]["numOfExtraCallApi"] == 4 and "token" not in body["data"]["info"]
