"""The console in a real headless Chromium: sign up, activate, copy the token, chat, see usage;
an admin changes the limit and the user sees it; the stream readers across chunk boundaries."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from lightrelay.services import accounts
from tests.conftest import free_port
from tests.web.conftest import outbox_codes

pytestmark = pytest.mark.slow
PASSWORD = "browser pass 123"
MODEL = "gpt-3.5-turbo-1106"


async def new_page(browser: Any, relay: Any) -> tuple[Any, Any]:
    context = await browser.new_context(base_url=relay.url, locale="zh-CN", viewport={"width": 1280, "height": 860})
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=relay.url)
    page = await context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
    page.js_errors = errors
    return context, page


async def wait_text(locator: Any, predicate: Any, timeout: float = 10.0) -> str:
    """Poll a locator's text until ``predicate(text)`` (the CSP forbids wait_for_function's eval)."""
    for _ in range(int(timeout / 0.05)):
        text = await locator.inner_text() if await locator.count() else ""
        if predicate(text):
            return text
        await asyncio.sleep(0.05)
    raise AssertionError(f"text never matched: {text!r}")


async def login(page: Any, email: str, password: str) -> None:
    await page.goto("/login")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit].primary")
    await page.wait_for_url("**/me/api")


async def test_sign_up_copy_token_chat_and_see_usage(start_relay, upstream, browser, http) -> None:
    relay = await start_relay(default_daily_limit=5)
    await relay.channel("mock", upstream.base_url, f"{MODEL},gpt-4")
    upstream.chunk_size, upstream.chunk_delay = 3, 0.01
    context, page = await new_page(browser, relay)

    # sign up → the code goes to the outbox, and the page says so
    await page.goto("/register")
    await page.fill("input[name=email]", "ivy@example.com")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit].primary")
    await page.wait_for_url("**/verify?**")
    assert "outbox" in await page.inner_text("#where-codes")
    [code] = outbox_codes(relay.settings.outbox_dir)
    await page.fill("input[name=code]", code)
    await page.click("button[type=submit].primary")

    # activated: the first token, shown once, copied with the button
    token = (await page.inner_text("#new-token")).strip()
    assert token.startswith("sk-") and len(token) == 39
    await page.click("#copy-token")
    assert await page.evaluate("navigator.clipboard.readText()") == token
    assert token in await page.inner_text("#s-python")  # the samples carry the new token
    status, body = await relay.light(http, {"token": token, "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200 and body["data"]["info"]["numOfOneDayAlreadyCallApi"] == 1
    await page.reload()
    assert token not in await page.content()
    assert await page.inner_text("#today-used") == "1"

    # the playground streams a reply, renders markdown, keeps the chat in the browser
    await page.click("text=调试台")
    await page.wait_for_url("**/playground")
    await page.select_option("#model", MODEL)
    await page.fill("#prompt", "你好 **粗体** `code`")
    await page.click("#send")
    reply = page.locator(".msg.assistant .body").last
    await reply.locator("strong").wait_for()
    assert await reply.locator("strong").inner_text() == "粗体"
    assert "echo: 你好" in await reply.inner_text()
    await page.locator("#send").wait_for(state="visible")
    assert await page.inner_text("#today-used") == "2"
    await page.reload()
    assert "echo: 你好" in await page.locator(".msg.assistant").last.inner_text()

    # a model the account may not use: the error is shown plainly
    await page.select_option("#model", "gpt-4")
    await page.fill("#prompt", "hello")
    await page.click("#send")
    await page.locator("#error").wait_for(state="visible")
    assert "GPT-4" in await page.inner_text("#error")

    # usage shows the console call
    await page.click("text=用量")
    await page.wait_for_url("**/usage")
    rows = page.locator("#calls tbody tr")
    assert "console" in await rows.first.inner_text()
    assert await page.locator("canvas[data-chart]").count() == 1
    assert page.js_errors == []
    await context.close()


async def test_admin_changes_a_limit_and_the_user_sees_it(start_relay, upstream, browser) -> None:
    relay = await start_relay()
    await relay.channel("mock", upstream.base_url, MODEL)
    await relay.user("root@example.com", admin=True, password=PASSWORD)
    await relay.user("joe@example.com", password=PASSWORD)
    admin_ctx, admin = await new_page(browser, relay)
    user_ctx, user = await new_page(browser, relay)
    await login(user, "joe@example.com", PASSWORD)
    assert await user.inner_text("#today-limit") == "10"

    await login(admin, "root@example.com", PASSWORD)
    await admin.goto("/admin/accounts")
    await admin.fill("input[name=q]", "joe")
    await admin.click("form.search button")
    row = admin.locator("tr[data-email='joe@example.com']")
    await row.locator("input[name=daily_limit]").fill("1")
    await row.locator("input[name=gpt4]").check()
    await row.locator("button[type=submit]").click()
    await admin.wait_for_url("**/admin/accounts?q=joe")
    joe = await accounts.get_account(relay.lr.engine, email="joe@example.com")
    assert joe["daily_limit"] == 1 and joe["gpt4"]

    await user.reload()
    assert await user.inner_text("#today-limit") == "1"
    await user.goto("/playground")
    await user.fill("#prompt", "one")
    await user.click("#send")
    await user.locator(".msg.assistant .body").last.wait_for()
    await user.locator("#send").wait_for(state="visible")
    await user.fill("#prompt", "two")
    await user.click("#send")
    await user.locator("#error").wait_for(state="visible")
    assert "今日调用次数已用完" in await user.inner_text("#error")

    # unlimited
    await admin.locator("tr[data-email='joe@example.com'] input[name=daily_limit]").fill("unlimited")
    await admin.locator("tr[data-email='joe@example.com'] button[type=submit]").click()
    await admin.wait_for_url("**/admin/accounts?q=joe")
    await user.goto("/me/api")
    assert await user.inner_text("#today-limit") == "不限"

    # the user is refused on admin pages
    response = await user.goto("/admin/channels")
    assert response.status == 403
    assert admin.js_errors == [] and user.js_errors == []
    await admin_ctx.close()
    await user_ctx.close()


async def test_admin_adds_tests_and_disables_a_channel(start_relay, upstream, browser) -> None:
    relay = await start_relay()
    await relay.user("root@example.com", admin=True, password=PASSWORD)
    context, page = await new_page(browser, relay)
    await login(page, "root@example.com", PASSWORD)
    await page.goto("/admin/channels")
    await page.fill("#channel-form input[name=name]", "mock")
    await page.fill("#channel-form input[name=base_url]", upstream.base_url)
    await page.fill("#channel-form input[name=api_key]", "sk-upstream-secret-key-123456")
    await page.fill("#channel-form input[name=models]", f"{MODEL},fast=gpt-4o-mini")
    await page.click("#channel-form button[type=submit]")
    await page.wait_for_url("**/admin/channels")
    row = page.locator("tr[data-channel='mock']")
    assert "sk-upstream-secret-key-123456" not in await page.content()
    assert "…" in await row.inner_text()
    assert relay.lr.router.models() == ["fast", MODEL]

    await row.locator("[data-test-channel]").click()
    result = row.locator(".test-result")
    assert (await wait_text(result, lambda t: "ms" in t or "✗" in t)).startswith("✓")

    await row.locator("form button").click()  # disable
    await page.wait_for_url("**/admin/channels")
    assert "已禁用" in await page.locator("tr[data-channel='mock']").inner_text()
    assert relay.lr.router.models() == []

    await page.goto("/admin/models")
    assert "fast" in await page.inner_text("#models")
    await page.goto("/admin")
    assert await page.locator("canvas[data-chart]").count() == 3
    assert page.js_errors == []
    await context.close()


async def test_stop_button_aborts_the_stream(start_relay, upstream, browser) -> None:
    relay = await start_relay()
    await relay.channel("mock", upstream.base_url, MODEL)
    await relay.user("kim@example.com", password=PASSWORD)
    upstream.chunk_size, upstream.chunk_delay = 1, 0.2
    context, page = await new_page(browser, relay)
    await login(page, "kim@example.com", PASSWORD)
    await page.goto("/playground")
    await page.fill("#prompt", "a long question that streams slowly")
    await page.click("#send")
    await wait_text(page.locator(".msg.assistant .body").last, lambda t: len(t) > 3)
    await page.click("#stop")
    await page.locator("#send").wait_for(state="visible")
    text = await page.locator(".msg.assistant .body").last.inner_text()
    assert "已停止" in text and "slowly" not in text
    await context.close()


CASES = [
    'start852{"id":"x","info":{"numOfOneDayAlreadyCallApi":1}}end852你好，世界 😀 end852 textstart852{"usage":{"total_tokens":3},"finish_reason":"stop"}end852',
    'start852{"id":"y","note":"a }end852 inside a string"}end852starts with start85 but is not a frame',
]


async def test_the_page_stream_reader_handles_every_chunk_boundary(start_relay, browser) -> None:
    relay = await start_relay()
    await relay.user("lee@example.com", password=PASSWORD)
    context, page = await new_page(browser, relay)
    await login(page, "lee@example.com", PASSWORD)
    await page.goto("/playground")
    result = await page.evaluate("""(cases) => {
        const enc = new TextEncoder();
        const out = [];
        for (const text of cases) {
          const bytes = enc.encode(text);
          const seen = new Set();
          for (let i = 0; i <= bytes.length; i++) {
            for (const j of [i, Math.min(bytes.length, i + 1), Math.min(bytes.length, i + 7)]) {
              const p = new window.lightrelay.LightParser();
              const events = [...p.feed(bytes.slice(0, i), false), ...p.feed(bytes.slice(i, j), false),
                              ...p.feed(bytes.slice(j), true)];
              const textOut = events.filter(e => e.type === "text").map(e => e.value).join("");
              const frames = events.filter(e => e.type !== "text").map(e => e.type + JSON.stringify(e.value));
              seen.add(JSON.stringify([textOut, frames]));
            }
          }
          out.push([...seen]);
        }
        return out;
    }""", CASES)
    first, second = result
    assert len(first) == 1 and len(second) == 1, result
    text, frames = json.loads(first[0])
    assert text == "你好，世界 😀 end852 text" and len(frames) == 2 and frames[0].startswith("header")
    text, frames = json.loads(second[0])
    assert text == "starts with start85 but is not a frame" and "inside a string" in frames[0]
    await context.close()


async def test_the_fetch_sample_runs_as_pasted_from_another_origin(start_relay, upstream, browser) -> None:
    relay = await start_relay()
    await relay.channel("mock", upstream.base_url, MODEL)
    upstream.chunk_size = 1
    await relay.user("max@example.com", password=PASSWORD)
    context, page = await new_page(browser, relay)
    await login(page, "max@example.com", PASSWORD)
    await page.fill("input[name=name]", "sample")
    await page.click("#create-token")
    snippet = await page.inner_text("#s-fetch")
    body = snippet.rsplit("\n\nlightChat(", 1)[0]
    other = web.Application()
    other.router.add_get("/", lambda request: web.Response(text="<html><body>another site</body></html>",
                                                              content_type="text/html"))
    runner = web.AppRunner(other, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    blank = await context.new_page()
    await blank.goto(f"http://127.0.0.1:{port}/")  # another origin: the sample relies on open CORS
    text, frames = await blank.evaluate("""async (src) => {
        const lightChat = new Function(src + "\\nreturn lightChat;")();
        let text = "";
        const frames = await lightChat("你好 😀 chunked", (t) => { text += t; });
        return [text, frames];
    }""", body)
    assert text == "echo: 你好 😀 chunked"
    assert frames[0]["info"]["numOfOneDayAlreadyCallApi"] == 1 and frames[-1]["usage"]["total_tokens"] > 0
    await context.close()
    await runner.cleanup()


def test_screenshots_folder_is_linked_from_the_docs() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs"
    text = (docs / "CONSOLE.md").read_text()
    for name in ("login", "me-api", "playground", "usage", "admin-dashboard", "admin-channels"):
        assert f"screenshots/{name}.png" in text and (docs / "screenshots" / f"{name}.png").exists()
