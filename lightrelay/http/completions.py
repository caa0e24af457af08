"""The legacy completions door: ``POST /v1/completions`` (stream and not), translated to a chat call."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from lightrelay.errors import RelayError
from lightrelay.http.guard import guard_of
from lightrelay.http.io import LiveStream, dumps, read_json, unless_gone
from lightrelay.http.light import bearer
from lightrelay.http.openai import DONE, rate_headers
from lightrelay.http.render import JSON, internal, lang_of, openai_error, openai_error_body
from lightrelay.relay import ChatRequest, RelayStream
from lightrelay.translate.completions import (
    chunk_from_chat,
    completion_from_chat,
    completion_id,
    request_to_chat,
)


async def create_completion(request: Request) -> Response:
    state = request.app.state.lr
    lang = lang_of(request)
    request_id = state.request_ids.next()
    try:
        body = await read_json(request, state.settings.max_body_bytes)
        model, messages, params, stream, include_usage = request_to_chat(body)
        req = ChatRequest(door="completion", token=bearer(request), model=model, messages=messages, params=params,
                          stream=stream, include_usage=include_usage)
        ticket = await guard_of(request).admit(request, state.relay, req)
        headers = rate_headers(ticket, request_id, state.clock)
        if not stream:
            completion = await unless_gone(request, state.relay.complete(ticket))
            return JSON(completion_from_chat(completion, model), headers=headers)
        relay_stream = await unless_gone(request, state.relay.open_stream(ticket))
    except RelayError as exc:
        return openai_error(exc, lang, {"x-request-id": request_id})
    except Exception as exc:
        return openai_error(internal(exc), lang, {"x-request-id": request_id})
    headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})
    abort = b"data: " + dumps(openai_error_body(RelayStream.SHUTTING_DOWN, lang)) + b"\n\n" + DONE
    return LiveStream(_sse(relay_stream, model, lang), media_type="text/event-stream; charset=utf-8",
                      headers=headers, stream=relay_stream, abort=abort)


async def _sse(stream: RelayStream, model: str, lang: str) -> AsyncIterator[bytes]:
    cmpl_id, created = completion_id(stream.id), stream.created
    try:
        async with contextlib.aclosing(stream.chunks()) as chunks:
            async for chunk in chunks:
                out = chunk_from_chat(chunk, cmpl_id, created, model)
                if out is not None:
                    yield b"data: " + dumps(out) + b"\n\n"
    except RelayError as exc:
        yield b"data: " + dumps(openai_error_body(exc, lang)) + b"\n\n" + DONE
        return
    if stream.ticket.request.include_usage:
        yield b"data: " + dumps({"id": cmpl_id, "object": "text_completion", "created": created, "model": model,
                                 "choices": [], "usage": stream.totals()}) + b"\n\n"
    yield DONE
