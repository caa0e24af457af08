"""The light door: ``POST /api/light/chat/createChatCompletion``.

Token in the body (or ``Authorization: Bearer``), ``{code, data, message}``
envelope; streams are raw text after a ``start852{…}end852`` header frame.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from lightrelay.errors import RelayError
from lightrelay.http.guard import guard_of
from lightrelay.http.io import LiveStream, dumps, read_json, unless_gone
from lightrelay.http.render import CORS, JSON, internal, lang_of, light_error
from lightrelay.http.schemas import LightBody, check_count, check_messages, validate
from lightrelay.relay import ChatRequest, RelayStream, Ticket

FRAME_START, FRAME_END = b"start852", b"end852"
OK = "成功"


def frame(obj: dict[str, Any]) -> bytes:
    return FRAME_START + dumps(obj) + FRAME_END


def error_object(exc: RelayError, lang: str) -> dict[str, Any]:
    return {"message": exc.message_for(lang), "type": exc.type, "code": exc.code}


def info(ticket: Ticket) -> dict[str, Any]:
    """The quota ``info`` object; ``token`` only when the caller sent one (not for console sessions)."""
    p, c = ticket.principal, ticket.charge
    out = {"token": ticket.request.token} if ticket.request.token is not None else {}
    out.update(numOfOneDayCanCallApi=p.daily_limit, numOfOneDayAlreadyCallApi=c.count, apiDate=c.day,
               isHasGPT4Auth=p.gpt4)
    return out


def bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else None


async def create_chat_completion(request: Request) -> Response:
    state = request.app.state.lr
    lang = lang_of(request)
    try:
        data = check_count(await read_json(request, state.settings.max_body_bytes), state.settings.max_messages)
        body = validate(LightBody, data)
        messages = body.messages
        if messages is None and body.prompt is not None:
            messages = [{"role": "user", "content": body.prompt}]
            messages = validate(LightBody, {"messages": messages}).messages
        req = ChatRequest(
            door="light", token=body.token or bearer(request), model=body.model or state.settings.default_model,
            messages=check_messages(messages, state.settings.max_messages), params=body.params.upstream(),
            stream=body.params.stream, include_usage=body.params.wants_usage,
        )
        ticket = await guard_of(request).admit(request, state.relay, req)
        if not req.stream:
            completion = await unless_gone(request, state.relay.complete(ticket))
            envelope = {"code": 200, "data": {"completion": completion, "info": info(ticket)}, "message": OK}
            return JSON(envelope, headers=CORS)
        stream = await unless_gone(request, state.relay.open_stream(ticket))
    except RelayError as exc:
        return light_error(exc, lang)
    except Exception as exc:
        return light_error(internal(exc), lang)
    headers = {**CORS, "cache-control": "no-cache", "x-accel-buffering": "no"}
    abort = frame({"error": error_object(RelayStream.SHUTTING_DOWN, lang)})
    return LiveStream(light_stream_body(stream, lang), media_type="text/event-stream; charset=utf-8", headers=headers,
                      stream=stream, abort=abort)


async def light_stream_body(stream: RelayStream, lang: str) -> AsyncIterator[bytes]:
    ticket = stream.ticket
    yield frame({"id": stream.id, "object": "chat.completion.chunk", "model": ticket.request.model,
                 "created": stream.created, "info": info(ticket)})
    try:
        async with contextlib.aclosing(stream.chunks()) as chunks:
            async for chunk in chunks:
                for choice in chunk.get("choices") or ():
                    if choice.get("index", 0) == 0:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            yield text.encode()
    except RelayError as exc:
        yield frame({"error": error_object(exc, lang)})
        return
    if ticket.request.include_usage:
        yield frame({"usage": stream.totals(), "finish_reason": stream.finish_reason or "stop"})
