"""Tests of lightrelay.client: the incremental light-stream parser and chat() against a tiny light server."""

from __future__ import annotations

import io
import random

import orjson
import pytest
from aiohttp import web

from lightrelay.client import CHAT_PATH, LightError, LightFrameParser, chat

HEADER = {
    "id": "chatcmpl-1",
    "model": "gpt-3.5-turbo-1106",
    "created": 1699603392,
    "info": {"token": "sk-x", "numOfOneDayCanCallApi": 10, "numOfOneDayAlreadyCallApi": 3,
             "apiDate": "2023-11-10", "isHasGPT4Auth": False, "note": "braces } and }end852 in a string"},
}
TEXT = "你好!有什么可以帮助你的吗?😀🎉 Say start or end852, s st sta — ok ✅"
USAGE = {"usage": {"prompt_tokens": 9, "completion_tokens": 17, "total_tokens": 26}, "finish_reason": "stop"}


def frame(obj: dict) -> bytes:
    return b"start852" + orjson.dumps(obj) + b"end852"


BODY = frame(HEADER) + TEXT.encode() + frame(USAGE)


def run(chunks: list[bytes]) -> tuple[dict | None, str, list[dict]]:
    """Feed chunks to a fresh parser; return (header, joined text, later frames)."""
    parser = LightFrameParser()
    events = [ev for chunk in chunks for ev in parser.feed(chunk)] + parser.close()
    headers = [v for k, v in events if k == "header"]
    assert len(headers) <= 1
    assert all(v for k, v in events if k == "text"), "no empty text events"
    text = "".join(v for k, v in events if k == "text")
    return (headers[0] if headers else None), text, [v for k, v in events if k == "frame"]


EXPECTED = (HEADER, TEXT, [USAGE])


def test_whole_body():
    assert run([BODY]) == EXPECTED


def test_every_single_split_position():
    for i in range(len(BODY) + 1):
        assert run([BODY[:i], BODY[i:]]) == EXPECTED, f"split at {i}"


def test_one_byte_reads():
    assert run([BODY[i : i + 1] for i in range(len(BODY))]) == EXPECTED


def test_every_pair_of_split_positions_around_the_text():
    lo, hi = len(frame(HEADER)) - 12, len(frame(HEADER)) + len(TEXT.encode()) + 12
    for i in range(lo, hi):
        for j in range(i, hi):
            assert run([BODY[:i], BODY[i:j], BODY[j:]]) == EXPECTED, f"split at {i}, {j}"


def test_random_chunkings():
    rng = random.Random(852)
    for _ in range(500):
        cuts = sorted(rng.sample(range(1, len(BODY)), rng.randint(1, 12)))
        bounds = [0, *cuts, len(BODY)]
        assert run([BODY[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]) == EXPECTED


def test_text_is_emitted_as_soon_as_it_cannot_be_a_marker():
    parser = LightFrameParser()
    head = frame(HEADER)
    assert parser.feed(head) == [("header", HEADER)]
    assert parser.feed(b"abc st") == [("text", "abc ")]  # "st" might start "start852"
    assert parser.feed(b"art85") == []
    assert parser.feed(b"!") == [("text", "start85!")]
    assert parser.feed("你".encode()[:2]) == []  # half a character waits for the rest
    assert parser.feed("你".encode()[2:]) == [("text", "你")]
    assert parser.close() == []


def test_error_frame_and_text_only_body():
    err = {"error": {"message": "upstream failed", "type": "upstream_error"}}
    assert run([frame(HEADER) + b"partial" + frame(err)]) == (HEADER, "partial", [err])
    assert run([b"just text, no frames"]) == (None, "just text, no frames", [])
    assert run([b"ends with sta"]) == (None, "ends with sta", [])


def test_unterminated_frame_raises():
    parser = LightFrameParser()
    parser.feed(b'start852{"id": 1')
    with pytest.raises(ValueError):
        parser.close()


# ---- chat() against a tiny light-protocol server ------------------------------------------------

COMPLETION = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-3.5-turbo-1106",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "你好!"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
}


SEEN = web.AppKey("seen", list)


async def light_handler(request: web.Request) -> web.StreamResponse:
    """Speaks just enough of the light protocol; the prompt picks the behaviour."""
    body = await request.json()
    request.app[SEEN].append(body)
    prompt = body["messages"][0]["content"]
    if prompt == "quota":
        env = {"code": 429, "data": None, "message": "今日调用次数已用完"}
        return web.json_response(env, status=429, headers={"Retry-After": "60"})
    if not body["params"]["stream"]:
        return web.json_response({"code": 200, "data": {"completion": COMPLETION, "info": HEADER["info"]},
                                  "message": "成功"})
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
    await resp.prepare(request)
    await resp.write(frame(HEADER))
    data = TEXT.encode()
    for i in range(0, len(data), 5):  # splits characters across writes on purpose
        await resp.write(data[i : i + 5])
    if prompt == "break":
        await resp.write(frame({"error": {"message": "upstream failed", "type": "upstream_error"}}))
    elif body["params"].get("include_usage"):
        await resp.write(frame(USAGE))
    await resp.write_eof()
    return resp


@pytest.fixture
async def light_server():
    app = web.Application()
    app[SEEN] = []
    app.router.add_post(CHAT_PATH, light_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/", app[SEEN]
    await runner.cleanup()


async def test_chat_non_stream(light_server):
    url, seen = light_server
    out = io.StringIO()
    env = await chat(url, "sk-x", "你好", model="gpt-4", out=out)
    assert env["code"] == 200 and env["data"]["completion"]["usage"]["total_tokens"] == 12
    assert out.getvalue() == "你好!\n"
    assert seen[-1] == {"model": "gpt-4", "token": "sk-x", "messages": [{"role": "user", "content": "你好"}],
                        "params": {"stream": False}}


async def test_chat_stream_with_usage(light_server):
    url, seen = light_server
    out = io.StringIO()
    result = await chat(url, "sk-x", "hi", stream=True, include_usage=True, out=out)
    assert result == {"header": HEADER, "text": TEXT, "frames": [USAGE]}
    assert out.getvalue() == TEXT
    assert "model" not in seen[-1] and seen[-1]["params"] == {"stream": True, "include_usage": True}


async def test_chat_stream_error_frame(light_server):
    url, _ = light_server
    out = io.StringIO()
    with pytest.raises(LightError) as err:
        await chat(url, "sk-x", "break", stream=True, out=out)
    assert err.value.code == 502 and err.value.message == "upstream failed"
    assert err.value.partial["text"] == TEXT and out.getvalue() == TEXT


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_error_envelope(light_server, stream):
    url, _ = light_server
    with pytest.raises(LightError) as err:
        await chat(url, "sk-x", "quota", stream=stream, out=io.StringIO())
    assert err.value.code == 429 and err.value.message == "今日调用次数已用完"
