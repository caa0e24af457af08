"""The documented browser client (shared/seeds: a page with a 发送 button that reads
``response.body.getReader()``) works against the relay unchanged, from another origin."""

from __future__ import annotations

import pytest
from aiohttp import web

from tests.conftest import free_port

pytestmark = pytest.mark.slow

# The blog post's page, byte for byte but for the address and the token.
DEMO = """<!DOCTYPE html>
<html lang="en">
  <head><meta charset="UTF-8" /><title>Document</title></head>
  <body>
    <button onclick="handleSend()">发送</button>
    <div id="result"></div>
    <script>
      async function handleSend() {
        let messageHot = ''
        document.getElementById('result').innerHTML = ''
        const response = await fetch(`__URL__/api/light/chat/createChatCompletion`, {
            method: 'post',
            headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
            body: JSON.stringify({
              model: 'gpt-3.5-turbo-1106',
              token: '__TOKEN__',
              messages: [{ role: 'user', content: '你好' }],
              params: { n: 1, stream: true },
            }),
        })
        if (!response.body) return
        const reader = response.body.getReader()
        const decoder = new TextDecoder()
        let count = 0
        reader.read().then(function processText({ done, value }) {
          if (done) {
            messageHot += '【结束】'
            document.getElementById('result').innerHTML = messageHot
            return
          }
          let text = decoder.decode(value)
          if (text) {
            if (text.length > 9 && text.slice(text.length - 9) === 'undefined') {
              text = text.slice(0, text.length - 9)
            }
            let start852Index = text.indexOf('start852')
            let end852Index = text.indexOf('end852')
            if (start852Index >= 0 && end852Index >= 0) {
              let headerData = text.slice(start852Index + 8, end852Index)
              console.log('headerData', headerData)
              text = text.slice(end852Index + 6)
            }
            messageHot += text
            document.getElementById('result').innerHTML = messageHot
            count++
          }
          return reader.read().then(processText)
        })
      }
    </script>
  </body>
</html>"""


async def test_documented_demo_page_streams_from_another_origin(relay, upstream, browser):
    upstream.chunk_size = 1
    upstream.chunk_delay = 0.01
    await relay.channel("mock", upstream.base_url, "gpt-3.5-turbo-1106")
    token = await relay.user("demo@example.com")
    page_html = DEMO.replace("__URL__", relay.url).replace("__TOKEN__", token)

    app = web.Application()
    app.router.add_get("/", lambda _: web.Response(text=page_html, content_type="text/html"))
    app.router.add_get("/favicon.ico", lambda _: web.Response(status=204))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    context = await browser.new_context()
    try:
        page = await context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        await page.goto(f"http://127.0.0.1:{port}/")  # another origin than the relay
        await page.click("text=发送")
        await page.wait_for_function("document.getElementById('result').innerHTML.endsWith('【结束】')",
                                     timeout=15_000)
        result = await page.inner_text("#result")
        assert result == "echo: 你好【结束】"
        assert not errors
    finally:
        await context.close()
        await runner.cleanup()
