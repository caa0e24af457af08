"""The OpenAI door: ``POST /v1/chat/completions`` and ``GET /v1/models``, Bearer tokens, SSE streams."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from lightrelay.errors import NotFound, RelayError
from lightrelay.http.guard import guard_of
from lightrelay.http.io import LiveStream, dumps, read_json, unless_gone
from lightrelay.http.light import bearer
from lightrelay.http.render import CORS, JSON, internal, lang_of, openai_error, openai_error_body
from lightrelay.http.schemas import OpenAIBody, check_count, check_messages, validate
from lightrelay.relay import ChatRequest, RelayStream, Ticket

DONE = b"data: [DONE]\n\n"


def _reset_text(seconds: int) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return (f"{h}h" if h else "") + (f"{m}m" if h or m else "") + f"{s}s"


def rate_headers(ticket: Ticket, request_id: str, clock) -> dict[str, str]:  # noqa: ANN001
    headers = {**CORS, "x-request-id": request_id}
    limit = ticket.principal.daily_limit
    if limit is not None:
        headers["x-ratelimit-limit-requests"] = str(limit)
        headers["x-ratelimit-remaining-requests"] = str(max(0, limit - ticket.charge.count))
        headers["x-ratelimit-reset-requests"] = _reset_text(clock.seconds_to_midnight())
    return headers


async def chat_completions(request: Request) -> Response:
    state = request.app.state.lr
    lang = lang_of(request)
    request_id = state.request_ids.next()
    try:
        data = check_count(await read_json(request, state.settings.max_body_bytes), state.settings.max_messages)
        body = validate(OpenAIBody, data)
        req = ChatRequest(
            door="openai", token=bearer(request), model=body.model,
            messages=check_messages(body.messages, state.settings.max_messages), params=body.upstream(),
            stream=body.stream, include_usage=body.wants_usage,
        )
        ticket = await guard_of(request).admit(request, state.relay, req)
        headers = rate_headers(ticket, request_id, state.clock)
        if not req.stream:
            return JSON(await unless_gone(request, state.relay.complete(ticket)), headers=headers)
        stream = await unless_gone(request, state.relay.open_stream(ticket))
    except RelayError as exc:
        return openai_error(exc, lang, {"x-request-id": request_id})
    except Exception as exc:
        return openai_error(internal(exc), lang, {"x-request-id": request_id})
    headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})
    abort = b"data: " + dumps(openai_error_body(RelayStream.SHUTTING_DOWN, lang)) + b"\n\n" + DONE
    return LiveStream(_sse_body(stream, lang), media_type="text/event-stream; charset=utf-8", headers=headers,
                      stream=stream, abort=abort)


async def _sse_body(stream: RelayStream, lang: str) -> AsyncIterator[bytes]:
    want_usage = stream.ticket.request.include_usage
    sent_usage = False
    try:
        async with contextlib.aclosing(stream.chunks()) as chunks:
            async for chunk in chunks:
                if not chunk.get("choices") and chunk.get("usage") is not None:
                    if not want_usage:
                        continue
                    sent_usage = True
                elif not want_usage and "usage" in chunk:
                    chunk.pop("usage")
                yield b"data: " + dumps(chunk) + b"\n\n"
    except RelayError as exc:
        yield b"data: " + dumps(openai_error_body(exc, lang)) + b"\n\n" + DONE
        return
    if want_usage and not sent_usage:
        yield b"data: " + dumps({"id": stream.id, "object": "chat.completion.chunk", "created": stream.created,
                                 "model": stream.ticket.request.model, "choices": [],
                                 "usage": stream.totals()}) + b"\n\n"
    yield DONE


async def list_models(request: Request) -> Response:
    state = request.app.state.lr
    try:
        await guard_of(request).principal(request, state.relay, bearer(request))
    except RelayError as exc:
        return openai_error(exc, lang_of(request))
    now = int(time.time())
    data: list[dict[str, Any]] = [{"id": m, "object": "model", "created": now, "owned_by": "lightrelay"}
                                  for m in state.router.models()]
    return JSON({"object": "list", "data": data}, headers=CORS)


async def retrieve_model(request: Request) -> Response:
    """``GET /v1/models/{id}``: one model the relay serves, or 404 ``model_not_found``."""
    state = request.app.state.lr
    lang = lang_of(request)
    model = request.path_params["model"]
    try:
        await guard_of(request).principal(request, state.relay, bearer(request))
        if model not in state.router.models():
            raise NotFound(f"未知模型: {model}", f"The model '{model}' does not exist", param="model")
    except RelayError as exc:
        return openai_error(exc, lang)
    return JSON({"id": model, "object": "model", "created": int(time.time()), "owned_by": "lightrelay"},
                headers=CORS)
