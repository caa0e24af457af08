"""Screenshots of the console's main pages into docs/screenshots/ (linked from docs/CONSOLE.md).

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

Runs a relay on loopback with a fresh data dir, the test suite's mock OpenAI upstream as its
channel, two accounts and 14 days of demo usage rows, then drives Debian's headless Chromium
(scripts/install-browser) through the pages.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvicorn
from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lightrelay.db.models import usage  # noqa: E402
from lightrelay.http.app import create_app  # noqa: E402
from lightrelay.security import KeyBox  # noqa: E402
from lightrelay.services import accounts, channels  # noqa: E402
from lightrelay.settings import Settings  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.mock_upstream import MockUpstream  # noqa: E402
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

PASSWORD = "screenshot pass 1"
MODELS = "gpt-3.5-turbo-1106,gpt-3.5-turbo-16k,gpt-4,gpt-4-1106-preview"
QUESTION = "用 Python 写一个 **斐波那契** 函数"


async def seed_usage(state, account_ids: list[int]) -> None:  # noqa: ANN001
    rnd = random.Random(7)
    rows = []
    now = datetime.now(UTC)
    for back in range(14, 0, -1):
        day = now - timedelta(days=back)
        for _ in range(rnd.randint(20, 90)):
            status = 200 if rnd.random() > 0.06 else rnd.choice([429, 502, 504])
            rows.append({"created_at": day, "day": day.astimezone(state.clock.tz).date().isoformat(),
                         "account_id": rnd.choice(account_ids), "token_id": None,
                         "model": rnd.choice(["gpt-3.5-turbo-1106", "gpt-4"]), "channel": "demo-openai",
                         "door": rnd.choice(["light", "openai"]), "stream": rnd.random() > 0.5, "status": status,
                         "prompt_tokens": rnd.randint(20, 400), "completion_tokens": rnd.randint(10, 600),
                         "first_byte_ms": rnd.uniform(150, 600), "total_ms": rnd.uniform(400, 3000),
                         "charged": status == 200, "partial": False,
                         "error": None if status == 200 else "upstream failed (demo)"})
    async with state.engine.begin() as conn:
        await conn.execute(usage.insert(), rows)


async def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        up = MockUpstream()
        await up.start()
        up.chunk_size, up.chunk_delay = 6, 0.01
        settings = Settings(data_dir=Path(tmp) / "data", env="dev", secret_key="screenshots-secret-0123456789",
                            local_model="off", usage_flush_seconds=0.05)
        app = create_app(settings)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        task = asyncio.create_task(server.serve())
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.02)
        base = f"http://127.0.0.1:{port}"
        state = app.state.lr
        try:
            await channels.add_channel(state.engine, KeyBox(settings.secret()), name="demo-openai",
                                       base_url=up.base_url, api_key="sk-demo-upstream-key-0123456789",
                                       models=channels.parse_models(MODELS), priority=10)
            await channels.add_channel(state.engine, KeyBox(settings.secret()), name="backup-vllm",
                                       base_url="http://10.0.0.12:8000/v1", models=channels.parse_models(
                                           "gpt-3.5-turbo-1106=Qwen2.5-7B-Instruct"), enabled=False)
            await state.reload_channels()
            admin_id = await accounts.create_account(state.engine, email="admin@example.com", password=PASSWORD,
                                                     daily_limit=None, gpt4=True, is_admin=True)
            user_id = await accounts.create_account(state.engine, email="alice@example.com", password=PASSWORD,
                                                    daily_limit=10, gpt4=True)
            for name in ("default", "my-script"):
                await accounts.add_token(state.engine, account_id=user_id, name=name)
            await accounts.create_account(state.engine, email="bob@example.com", password=PASSWORD,
                                          daily_limit=10, active=False)
            await seed_usage(state, [admin_id, user_id])
            await shoot(base, out)
        finally:
            server.should_exit = True
            await task
            await up.close()


async def shoot(base: str, out: Path) -> None:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        ctx = await browser.new_context(base_url=base, viewport={"width": 1280, "height": 820}, locale="zh-CN",
                                        device_scale_factor=1)
        page = await ctx.new_page()
        await page.goto("/login")
        await page.screenshot(path=out / "login.png")
        await page.fill("input[name=email]", "alice@example.com")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit].primary")
        await page.wait_for_url("**/me/api")
        await page.fill("input[name=name]", "notebook")
        await page.click("#create-token")
        await page.wait_for_selector("#new-token")
        await page.screenshot(path=out / "me-api.png", full_page=True)

        await page.goto("/playground")
        await page.fill("#prompt", QUESTION)
        await page.click("#send")
        await page.locator(".msg.assistant strong").wait_for()
        await page.locator("#send").wait_for(state="visible")
        await page.fill("#prompt", "代码块也能渲染：\n\n```python\ndef fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n"
                        "        a, b = b, a + b\n    return a\n```\n\n| n | fib |\n|---|---|\n| 10 | 55 |")
        await page.click("#send")
        await page.locator(".msg.assistant").nth(1).wait_for()
        await page.locator("#send").wait_for(state="visible")
        await page.screenshot(path=out / "playground.png")

        await page.goto("/usage")
        await page.wait_for_timeout(300)
        await page.screenshot(path=out / "usage.png", full_page=True)

        admin = await (await browser.new_context(base_url=base, viewport={"width": 1280, "height": 820},
                                                 locale="zh-CN")).new_page()
        await admin.goto("/login")
        await admin.fill("input[name=email]", "admin@example.com")
        await admin.fill("input[name=password]", PASSWORD)
        await admin.click("button[type=submit].primary")
        await admin.wait_for_url("**/me/api")
        await admin.goto("/admin")
        await admin.wait_for_timeout(300)
        await admin.screenshot(path=out / "admin-dashboard.png", full_page=True)
        await admin.goto("/admin/channels")
        await admin.locator("tr[data-channel='demo-openai'] [data-test-channel]").click()
        for _ in range(100):
            if "ms" in await admin.locator("tr[data-channel='demo-openai'] .test-result").inner_text():
                break
            await admin.wait_for_timeout(50)
        await admin.screenshot(path=out / "admin-channels.png", full_page=True)
        await admin.goto("/admin/accounts")
        await admin.screenshot(path=out / "admin-accounts.png", full_page=True)
        await admin.goto("/lang/en?next=/me/api")
        await admin.screenshot(path=out / "me-api-en.png")
        await browser.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(args.out))
